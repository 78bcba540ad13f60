//! Imports the Synthea sample data through `Records::process_bundle`: the 2019 SMART
//! transaction bundles, then Synthea v3's batches of organizations, locations and
//! practitioners (POST with If-None-Exist) and its patient transactions (with conditional
//! references to those). Every entry must succeed, the stored counts must match the bundles,
//! and every stored reference must resolve.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a failed check panics, like assert!")]

use serde_json::Value;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use store::{HistoryQuery, Records};
use store_sqlite::SqliteBackend;

fn testdata(folder: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/synthea").join(folder)
}

fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
}

/// The bundles in load order: SMART 2019, then v3's shared resources, then v3's patients.
fn bundles_in_order() -> Vec<PathBuf> {
    let v3 = testdata("synthea-v3");
    let shared = [v3.join("hospitalInformation.json"), v3.join("practitionerInformation.json")];
    let mut files = json_files(&testdata("smart-2019"));
    files.extend(shared.iter().cloned());
    files.extend(json_files(&v3).into_iter().filter(|p| !shared.contains(p)));
    files
}

/// What the store should hold: counts per type and the identifiers stored so far.
#[derive(Default)]
struct Expected {
    counts: BTreeMap<String, u64>,
    identifiers: HashSet<(String, String, String)>,
}

impl Expected {
    /// Accounts for one entry (all entries here are POSTs). An entry with If-None-Exist
    /// (`identifier=system|value`) adds a resource only if no resource stored before it
    /// carries that identifier; any other POST always adds one. Each added resource's
    /// identifiers become matchable for later entries.
    fn add(&mut self, entry: &Value) {
        let resource = &entry["resource"];
        let resource_type = resource["resourceType"].as_str().unwrap().to_string();
        assert_eq!(entry["request"]["method"], "POST", "the sample data only POSTs");
        if let Some(criteria) = entry["request"]["ifNoneExist"].as_str() {
            let (system, value) = criteria.strip_prefix("identifier=").unwrap().split_once('|').unwrap();
            if self.identifiers.contains(&(resource_type.clone(), system.to_string(), value.to_string())) {
                return;
            }
        }
        for identifier in resource["identifier"].as_array().into_iter().flatten() {
            if let (Some(system), Some(value)) = (identifier["system"].as_str(), identifier["value"].as_str()) {
                self.identifiers.insert((resource_type.clone(), system.to_string(), value.to_string()));
            }
        }
        *self.counts.entry(resource_type).or_default() += 1;
    }
}

/// Every `reference` string anywhere in `value`.
fn references<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                match (key.as_str(), child) {
                    ("reference", Value::String(r)) => out.push(r),
                    _ => references(child, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| references(item, out)),
        _ => {}
    }
}

/// Checks that every `Type/id` reference of every stored resource resolves; returns how many
/// were checked.
fn check_references(records: &Records) -> usize {
    let everything = HistoryQuery { count: usize::MAX >> 1, ..Default::default() };
    let mut checked = 0;
    for version in records.history(&everything).unwrap() {
        let body: Value = serde_json::from_str(version.body.as_deref().unwrap()).unwrap();
        let mut found = Vec::new();
        references(&body, &mut found);
        for reference in found {
            if reference.starts_with('#') {
                continue;
            }
            let (resource_type, id) = reference.split_once('/').unwrap_or_else(|| {
                panic!("{}/{}: unresolved reference {reference}", version.resource_type, version.id)
            });
            assert!(
                records.read(resource_type, id).is_ok(),
                "{}/{} refers to {reference}, which is not stored",
                version.resource_type,
                version.id
            );
            checked += 1;
        }
    }
    checked
}

#[test]
fn imports_synthea_bundles() {
    let dir = tempfile::tempdir().unwrap();
    let records = Records::new(Arc::new(SqliteBackend::open(dir.path()).unwrap()));
    let mut expected = Expected::default();
    let (mut entries, mut busy) = (0usize, std::time::Duration::ZERO);
    for path in bundles_in_order() {
        let bundle: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        for entry in bundle["entry"].as_array().unwrap() {
            expected.add(entry);
        }
        let n = bundle["entry"].as_array().unwrap().len();
        let start = Instant::now();
        let response = records.process_bundle(bundle).unwrap_or_else(|e| panic!("{name}: {e}"));
        busy += start.elapsed();
        entries += n;
        let responses = response["entry"].as_array().unwrap();
        assert_eq!(responses.len(), n, "{name}");
        for (i, r) in responses.iter().enumerate() {
            let status = r["response"]["status"].as_str().unwrap();
            assert!(status.starts_with('2'), "{name} entry {i}: {status} {}", r["response"]["outcome"]);
        }
    }
    println!(
        "imported {entries} entries in {:.2}s: {:.0} resources/s",
        busy.as_secs_f64(),
        entries as f64 / busy.as_secs_f64()
    );

    let stored: BTreeMap<String, u64> = records.backend().count_by_type().unwrap().into_iter().collect();
    assert_eq!(stored, expected.counts);
    assert!(expected.counts["Practitioner"] > 0 && expected.counts["Location"] > 0);
    let checked = check_references(&records);
    assert!(checked > 20_000, "only {checked} references checked");
}
