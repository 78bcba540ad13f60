//! Synthea patient bundles (two generations of the generator) validate without errors.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a failed check panics, like assert!")]

use std::path::{Path, PathBuf};

fn json_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            json_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "json") {
            out.push(path);
        }
    }
}

#[test]
fn synthea_bundles_validate() {
    let mut files = Vec::new();
    json_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/synthea"), &mut files);
    files.sort();
    assert_eq!(files.len(), 27, "the Synthea test set changed");
    let mut resources = 0;
    let mut failures = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path).unwrap();
        let bundle: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(bundle["resourceType"], "Bundle");
        resources += bundle["entry"].as_array().map_or(0, Vec::len);
        let errors: Vec<String> = fhir::validate(&bundle)
            .into_iter()
            .filter(fhir::Issue::is_error)
            .map(|i| format!("{} [{}] {}", i.expression.unwrap_or_default(), i.code.code(), i.diagnostics))
            .collect();
        if !errors.is_empty() {
            failures.push(format!("{}:\n    {}", path.display(), errors.join("\n    ")));
        }
    }
    println!("Synthea: {} bundles, {resources} resources validated", files.len());
    assert!(resources > 5000, "{resources}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
