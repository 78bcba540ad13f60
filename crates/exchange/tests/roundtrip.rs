//! The round trip through two stores: every shared Synthea patient loaded into a store, a CCD
//! exported from it through the service (checked against the CDA schema with SDTC by
//! `xmllint`), imported into a fresh store through the service, and the coded problems,
//! medications, allergies, immunizations, results and vital signs compared with the original
//! patient's: the same codes on the same days, as multisets. (The `ccda` crate's own round trip
//! compares values, units and statuses too, without a store.)
//!
//! Compared per item: every code of a known terminology (LOINC, SNOMED CT, RxNorm, CVX; a
//! medication's through its Medication when referenced), and the day it is dated (a problem's
//! onset, a medication's authoring or start, an immunization's occurrence, an observation's
//! effective time, at day precision in UTC). A blood pressure is compared as its components.
//! Imported items wait for reconciliation, stored as resources of the patient: they count.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a failed check panics, like assert!")]

use access::{Door, Who};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use store::Records;

const KNOWN: [&str; 4] = [
    "http://loinc.org",
    "http://snomed.info/sct",
    "http://www.nlm.nih.gov/research/umls/rxnorm",
    "http://hl7.org/fhir/sid/cvx",
];

fn fresh() -> (tempfile::TempDir, Records) {
    let dir = tempfile::tempdir().unwrap();
    let backend = store_sqlite::SqliteBackend::open(dir.path()).unwrap();
    (dir, Records::new(Arc::new(backend)))
}

fn all(records: &Records, resource_type: &str) -> Vec<Value> {
    let query = search::query::SearchQuery::parse(Some(resource_type), &[], false).unwrap();
    let page = records.search(&query, 100_000).unwrap();
    page.matches.iter().map(|v| serde_json::from_str(v.body.as_deref().unwrap()).unwrap()).collect()
}

fn codes(concept: Option<&Value>) -> Vec<String> {
    let mut codes: Vec<String> = concept
        .and_then(|c| c.get("coding"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|c| KNOWN.contains(&c["system"].as_str().unwrap_or_default()))
        .map(|c| format!("{}|{}", c["system"].as_str().unwrap(), c["code"].as_str().unwrap_or_default()))
        .collect();
    codes.sort();
    codes.dedup();
    codes
}

/// The UTC day of a FHIR date or dateTime.
fn day(value: Option<&Value>) -> String {
    let Some(text) = value.and_then(Value::as_str) else { return "-".into() };
    match time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339) {
        Ok(at) => at.to_offset(time::UtcOffset::UTC).date().to_string(),
        Err(_) => text.chars().take(10).collect(),
    }
}

fn is_category(resource: &Value, code: &str) -> bool {
    resource["category"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["coding"].as_array().into_iter().flatten().any(|k| k["code"] == code))
}

type Items = BTreeMap<(&'static str, String, String), usize>;

fn add(items: &mut Items, kind: &'static str, codes: Vec<String>, day: String) {
    if !codes.is_empty() {
        *items.entry((kind, codes.join(" "), day)).or_default() += 1;
    }
}

/// The compared items of the patient's record in `records`.
fn items(records: &Records) -> Items {
    let mut items = Items::new();
    for condition in all(records, "Condition") {
        let is_problem = condition["category"].as_array().is_none()
            || is_category(&condition, "problem-list-item")
            || is_category(&condition, "encounter-diagnosis");
        if is_problem {
            add(&mut items, "problem", codes(condition.get("code")), day(condition.get("onsetDateTime")));
        }
    }
    let medications: BTreeMap<String, Value> =
        all(records, "Medication").into_iter().map(|m| (m["id"].as_str().unwrap().to_string(), m)).collect();
    for resource_type in ["MedicationRequest", "MedicationStatement"] {
        for medication in all(records, resource_type) {
            if medication["intent"] == "plan" {
                continue; // planned ones come back from the plan of treatment
            }
            let concept = medication.get("medicationCodeableConcept").cloned().or_else(|| {
                let reference = medication["medicationReference"]["reference"].as_str()?;
                medications.get(reference.trim_start_matches("Medication/"))?.get("code").cloned()
            });
            let when = medication
                .get("authoredOn")
                .or_else(|| medication.pointer("/effectivePeriod/start"))
                .or_else(|| medication.get("effectiveDateTime"));
            add(&mut items, "medication", codes(concept.as_ref()), day(when));
        }
    }
    for allergy in all(records, "AllergyIntolerance") {
        add(&mut items, "allergy", codes(allergy.get("code")), String::new());
    }
    for immunization in all(records, "Immunization") {
        add(
            &mut items,
            "immunization",
            codes(immunization.get("vaccineCode")),
            day(immunization.get("occurrenceDateTime")),
        );
    }
    for observation in all(records, "Observation") {
        let kind = if is_category(&observation, "laboratory") {
            "result"
        } else if is_category(&observation, "vital-signs") {
            "vital"
        } else {
            continue;
        };
        let when = day(observation.get("effectiveDateTime"));
        let has_value =
            ["valueQuantity", "valueCodeableConcept", "valueString"].iter().any(|v| observation.get(*v).is_some());
        match observation["component"].as_array() {
            Some(components) if !has_value => {
                for component in components {
                    add(&mut items, kind, codes(component.get("code")), when.clone());
                }
            }
            _ => add(&mut items, kind, codes(observation.get("code")), when),
        }
    }
    items
}

fn synthea(parts: &[&str]) -> PathBuf {
    let mut path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "..", "..", "testdata", "synthea"].iter().collect();
    path.extend(parts);
    path
}

fn bundles(folder: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(folder).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files
}

#[test]
fn every_synthea_patient_comes_back_through_a_ccd_and_a_fresh_store() {
    let shared: Vec<PathBuf> = ["hospitalInformation.json", "practitionerInformation.json"]
        .iter()
        .map(|f| synthea(&["synthea-v3", f]))
        .collect();
    let mut patients = bundles(&synthea(&["smart-2019"]));
    patients.extend(bundles(&synthea(&["synthea-v3"])).into_iter().filter(|p| !shared.contains(p)));
    assert_eq!(patients.len(), 25);
    let out = tempfile::tempdir().unwrap();
    let mut documents = Vec::new();
    let custodian = serde_json::json!({"resourceType": "Organization", "id": "continuum", "name": "Continuum EHR"});
    for (n, path) in patients.iter().enumerate() {
        let (_a, original) = fresh();
        for file in shared.iter().chain([path]) {
            let bundle: Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
            original.process_bundle(bundle).unwrap();
        }
        let source = Door::open(original.clone()).enter(Who::Anyone);
        let patient = all(&original, "Patient")[0]["id"].as_str().unwrap().to_string();
        let document =
            exchange::documents::export_ccda(&source, &patient, ccda::DocumentType::Ccd, (None, None), &custodian)
                .unwrap();
        let file = out.path().join(format!("ccd-{n}.xml"));
        std::fs::write(&file, &document.xml).unwrap();
        documents.push(file);

        let (_b, copy) = fresh();
        let target = Door::open(copy.clone()).enter(Who::Anyone);
        let report = exchange::documents::import_ccda(&target, document.xml.as_bytes(), None).unwrap();
        assert!(report.patient_created);
        let (want, got) = (items(&original), items(&copy));
        let missing: Vec<_> = want.iter().filter(|(k, n)| got.get(*k) != Some(n)).collect();
        let extra: Vec<_> = got.iter().filter(|(k, n)| want.get(*k) != Some(n)).collect();
        let count =
            |items: &Items, kind: &str| items.iter().filter(|((k, _, _), _)| *k == kind).map(|(_, n)| n).sum::<usize>();
        eprintln!(
            "{}: problems {} medications {} allergies {} immunizations {} results {} vitals {}",
            path.file_name().unwrap().to_string_lossy(),
            count(&got, "problem"),
            count(&got, "medication"),
            count(&got, "allergy"),
            count(&got, "immunization"),
            count(&got, "result"),
            count(&got, "vital")
        );
        assert!(missing.is_empty() && extra.is_empty(), "{}: missing {missing:?}, extra {extra:?}", path.display());
    }
    // Every exported CCD validates against the CDA schema with SDTC.
    let schema: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "..",
        "..",
        "testdata",
        "ccda",
        "cda-schema-sdtc",
        "infrastructure",
        "cda",
        "CDA_SDTC.xsd",
    ]
    .iter()
    .collect();
    let output = std::process::Command::new("xmllint")
        .args(["--noout", "--nonet", "--schema"])
        .arg(&schema)
        .args(&documents)
        .output()
        .expect("xmllint runs (install the Debian package libxml2-utils)");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}
