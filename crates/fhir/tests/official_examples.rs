//! Every official R4 example resource validates without errors, except a short list of
//! examples that really break a rule of the specification.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a failed check panics, like assert!")]

use std::path::{Path, PathBuf};

/// Examples of the R4 spec that are invalid, with the rule each one breaks.
const KNOWN_INVALID: &[(&str, &str)] = &[(
    "Questionnaire-qs1.json",
    "Questionnaire.item.linkId is 1..1, but the nested display items under item[0] \
     (e.g. item[0].item[0]) have no linkId",
)];

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/fhir-examples/r4-spec")
}

#[test]
fn official_r4_examples_validate() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(examples_dir())
        .expect("testdata/fhir-examples/r4-spec exists")
        .map(|e| e.expect("readable directory").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 776, "the R4 example set changed");

    let (mut checked, mut passed) = (0, 0);
    let mut unexpected = Vec::new();
    let mut still_invalid = Vec::new();
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(path).unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        if value.get("resourceType").is_none() {
            continue; // the package manifest
        }
        checked += 1;
        let errors: Vec<String> = fhir::validate(&value)
            .into_iter()
            .filter(fhir::Issue::is_error)
            .map(|i| format!("{} [{}] {}", i.expression.unwrap_or_default(), i.code.code(), i.diagnostics))
            .collect();
        let known = KNOWN_INVALID.iter().any(|(n, _)| *n == name);
        match (known, errors.is_empty()) {
            (false, true) => passed += 1,
            (false, false) => unexpected.push(format!("{name}:\n    {}", errors.join("\n    "))),
            (true, false) => still_invalid.push(name),
            (true, true) => {}
        }
    }
    println!("official R4 examples: {passed}/{checked} resources pass, {} known invalid", still_invalid.len());
    assert_eq!(checked, 775, "every file but the package manifest is a resource");
    assert!(unexpected.is_empty(), "examples with errors:\n{}", unexpected.join("\n"));
    for (name, reason) in KNOWN_INVALID {
        assert!(still_invalid.iter().any(|n| n == name), "{name} is listed as invalid ({reason}) but now passes");
    }
    assert_eq!(passed + still_invalid.len(), checked);
}
