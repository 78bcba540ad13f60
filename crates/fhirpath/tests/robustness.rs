//! No input makes the engine panic: every expression of the official suite, every prefix of
//! each (mostly invalid), evaluated against every suite input, plus hostile inputs.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a failed check panics, like assert!")]

use fhirpath::{Environment, Expression};
use std::path::Path;

fn suite_expressions() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let text = std::fs::read_to_string(dir.join("tests-fhir-r4.xml")).expect("suite present");
    let doc = roxmltree::Document::parse(&text).expect("suite is XML");
    doc.descendants().filter(|n| n.has_tag_name("expression")).filter_map(|n| n.text().map(str::to_owned)).collect()
}

fn inputs() -> Vec<serde_json::Value> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/input");
    let mut out: Vec<serde_json::Value> = std::fs::read_dir(dir)
        .expect("inputs")
        .flatten()
        .map(|e| serde_json::from_str(&std::fs::read_to_string(e.path()).expect("readable")).expect("JSON"))
        .collect();
    out.push(serde_json::json!({}));
    out.push(
        serde_json::json!({"resourceType": "Patient", "name": "not an array", "birthDate": 12, "_birthDate": [1]}),
    );
    out.push(serde_json::json!({"resourceType": "Observation", "valueQuantity": {"value": "x", "code": "1e9999999"}}));
    out
}

fn run(src: &str, inputs: &[serde_json::Value]) {
    if let Ok(expr) = Expression::compile(src) {
        for input in inputs {
            let _ = expr.evaluate(input);
        }
        let _ = expr.evaluate_with(&Environment::empty());
    }
}

#[test]
fn no_panics_on_suite_expressions_and_their_prefixes() {
    let inputs = inputs();
    let mut panics = Vec::new();
    for src in suite_expressions() {
        let cuts: Vec<usize> = src.char_indices().map(|(i, _)| i).chain([src.len()]).collect();
        for &cut in &cuts {
            let part = &src[..cut];
            if std::panic::catch_unwind(|| run(part, &inputs)).is_err() {
                panics.push(part.to_owned());
            }
        }
    }
    assert!(panics.is_empty(), "panics on: {panics:#?}");
}

#[test]
fn no_panics_on_hostile_expressions() {
    let inputs = inputs();
    let hostile = [
        "0e999999999 'mg' = 1 'mg'",
        "0.0000000000000000000000000001 / 0.0000000000000000000000000003",
        "2147483647 * 2147483647 * 2147483647 * 2147483647",
        "-(2147483647 * 2147483647 * 2147483647 * -2)",
        "(2147483647 * 2147483647 * 2147483647 * 2147483647) div -1",
        "@9999-12-31 + 1 day",
        "@0001-01-01 - 1 year",
        "@T23:59 + 9223372036854775807 'ms'",
        "99999999999999999999999999999999999.9 * 10",
        "1 '10*99999999' = 1 'g'",
        "1 'm-128' = 1 'm'",
        "'x'.substring(-5, 9223372036854775807)",
        "'é'.indexOf('')",
        "'\\u00e9'.toChars()",
        "'abc'.matches('a{99999999}')",
        "1.lowBoundary(28) | 1.highBoundary(0) | (1.0).power(99999)",
        "descendants().descendants().count()",
        "repeat(children()).count()",
        "%`x",
        "`",
        "@",
        "é",
    ];
    for src in hostile {
        assert!(std::panic::catch_unwind(|| run(src, &inputs)).is_ok(), "panic on {src}");
    }
}
