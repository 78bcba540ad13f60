//! C-CDA: read any bytes as a document. Never a panic; a document read names its patient among
//! its resources, and every reference between its resources names one of them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn references<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("reference", Value::String(s)) => out.push(s),
                    _ => references(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| references(v, out)),
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(document) = ccda::read(data) else { return };
    let urls: Vec<&str> = document.resources.iter().map(|m| m.full_url.as_str()).collect();
    assert!(urls.contains(&document.patient_url.as_str()), "the patient is among the resources");
    for mapped in &document.resources {
        let mut refs = Vec::new();
        references(&mapped.resource, &mut refs);
        for r in refs {
            assert!(urls.contains(&r), "a reference to a resource not made");
        }
    }
});
