//! `continuum import` from the command line: Bundles, single resources and NDJSON.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a failed check panics, like assert!")]

use serde_json::json;
use std::path::Path;
use std::process::Command;
use store::Backend;

const BINARY: &str = env!("CARGO_BIN_EXE_continuum");

fn import(data: &Path, paths: &[&Path]) -> (bool, String) {
    let output = Command::new(BINARY).arg("import").arg("--data").arg(data).args(paths).output().unwrap();
    (output.status.success(), String::from_utf8_lossy(&output.stdout).into_owned())
}

#[test]
fn imports_ndjson_single_resources_and_bundles_and_reports_the_rate() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let input = dir.path().join("input");
    std::fs::create_dir_all(&input).unwrap();
    let patients: Vec<String> = (0..25)
        .map(|i| json!({"resourceType": "Patient", "id": format!("p{i}"), "gender": "female"}).to_string())
        .collect();
    std::fs::write(input.join("Patient.ndjson"), patients.join("\n") + "\n").unwrap();
    let observation = json!({
        "resourceType": "Observation", "id": "o1", "status": "final",
        "code": {"text": "weight"}, "subject": {"reference": "Patient/p3"}
    });
    std::fs::write(input.join("observation.json"), observation.to_string()).unwrap();
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:0b0c3bb8-7ab0-4d5b-9f0e-2b0f7f7c2a11",
         "resource": {"resourceType": "Patient", "gender": "male"},
         "request": {"method": "POST", "url": "Patient"}}
    ]});
    std::fs::write(input.join("bundle.json"), bundle.to_string()).unwrap();

    let (ok, stdout) = import(&data, &[&input]);
    assert!(ok, "{stdout}");
    let last = stdout.lines().last().unwrap();
    assert!(last.starts_with("Imported 27 resources from 3 files"), "{last}");
    assert!(last.ends_with("resources/s)"), "{last}");

    let backend = store_sqlite::SqliteBackend::open(&data).unwrap();
    let counts = backend.count_by_type().unwrap();
    assert!(counts.contains(&("Patient".to_string(), 26)), "{counts:?}");
    assert!(counts.contains(&("Observation".to_string(), 1)), "{counts:?}");
}

#[test]
fn a_bad_file_fails_the_import_and_says_which() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{\"resourceType\": \"Patient\", \"birthDate\": \"tomorrow\"}").unwrap();
    let output = Command::new(BINARY).arg("import").arg("--data").arg(&data).arg(&bad).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bad.json"), "{stderr}");
    let backend = store_sqlite::SqliteBackend::open(&data).unwrap();
    assert!(backend.count_by_type().unwrap().is_empty());
}
