//! FHIR JSON: parse any bytes as JSON and validate the value against the R4 definitions.
//! Properties beyond "no panic": a valid resource stays valid after a serialise/parse round
//! trip (the text is kept losslessly, so validation must not depend on formatting).
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<Value>(data) else { return };
    let issues = fhir::validate(&value);
    let text = serde_json::to_string(&value).expect("a parsed value serialises");
    let again: Value = serde_json::from_str(&text).expect("serialised JSON parses");
    assert_eq!(issues.len(), fhir::validate(&again).len(), "validation changed across a round trip");
});
