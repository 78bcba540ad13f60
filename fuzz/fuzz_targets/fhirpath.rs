//! FHIRPath: compile any text as an expression and evaluate it against official R4 examples
//! (a Patient, two Observations and a Bundle, copied into `testdata/`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use std::sync::LazyLock;

const EXAMPLES: [&str; 4] = [
    include_str!("../../testdata/fhir-examples/r4-spec/Patient-example.json"),
    include_str!("../../testdata/fhir-examples/r4-spec/Observation-bmi.json"),
    include_str!("../../testdata/fhir-examples/r4-spec/Observation-example-genetics-1.json"),
    include_str!("../../testdata/fhir-examples/r4-spec/Bundle-bundle-example.json"),
];

static RESOURCES: LazyLock<Vec<Value>> =
    LazyLock::new(|| EXAMPLES.iter().map(|text| serde_json::from_str(text).expect("example parses")).collect());

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else { return };
    let Ok(expression) = fhirpath::Expression::compile(source) else { return };
    for resource in RESOURCES.iter() {
        let _ = expression.evaluate(resource);
    }
});
