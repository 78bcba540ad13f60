//! FHIR Bulk Data export through a real client written to the specification: `bulk_client.py`
//! (`tests/external/`, the Python standard library only: kick-off with `Prefer: respond-async`,
//! polling the `Content-Location` honouring `Retry-After`, the manifest, the files fetched with
//! the token, `DELETE` to cancel), against a secured `continuum serve` of the test clinic
//! (Rosie and Barry, Synthea). The backend service's token comes from `smart_client.py`
//! (SMART Backend Services, `client_credentials` with a signed assertion: the pinned PyPI
//! packages of the SMART test).
//!
//! Checked: system, Patient and Group level; `_type`, `_since`; cancel; a refused kick-off;
//! per type, the exported count equals `_summary=count`; an export while 1,000 writes go on
//! holds exactly the versions current at its `transactionTime`; a physician who sees only
//! Rosie exports only Rosie's record.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a failed check panics, like assert!")]

use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use test_support::clinic::{add_user, clinic, fhir_post};
use test_support::process::continuum;

fn python_packages() -> PathBuf {
    test_support::python::packages(
        Path::new(env!("CARGO_TARGET_TMPDIR")),
        "python-smart-clients",
        test_support::python::SMART_CLIENT_PINS,
    )
}

/// Runs a client script of `tests/external` and returns its output lines split into words.
fn run_client(script: &str, args: &[&str]) -> Vec<Vec<String>> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/external").join(script);
    let output = Command::new("python3")
        .arg("-s")
        .arg(&path)
        .args(args)
        .env("PYTHONPATH", python_packages())
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{script} {} failed:\n{stdout}\n{}",
        args[0],
        String::from_utf8_lossy(&output.stderr)
    );
    stdout.lines().map(|l| l.split(' ').map(str::to_string).collect()).collect()
}

/// The `key=value` words of the first line starting with `words`.
fn line(lines: &[Vec<String>], words: &[&str]) -> BTreeMap<String, String> {
    let found = lines
        .iter()
        .find(|l| l.len() >= words.len() && l.iter().zip(words).all(|(a, b)| a == b))
        .unwrap_or_else(|| panic!("no line {words:?} in {lines:?}"));
    found[words.len()..].iter().filter_map(|w| w.split_once('=')).map(|(k, v)| (k.into(), v.into())).collect()
}

/// What one export gave: the manifest's `transactionTime`, the count per type, the resources.
struct Exported {
    transaction_time: String,
    counts: BTreeMap<String, u64>,
    resources: Vec<Value>,
}

fn export(base: &str, token: &str, path: &str, dir: &Path) -> Exported {
    let out = dir.join(format!("export-{}.ndjson", fastrand_name()));
    let lines = run_client("bulk_client.py", &["export", base, token, path, out.to_str().unwrap()]);
    let manifest = line(&lines, &["manifest"]);
    assert_eq!(manifest["requiresAccessToken"], "True");
    let counts = lines
        .iter()
        .filter(|l| l[0] == "type")
        .map(|l| (l[1].clone(), l[2].trim_start_matches("count=").parse().unwrap()))
        .collect();
    assert_eq!(line(&lines, &["deleted"])["status"], "202", "the client deletes the files when done");
    let text = std::fs::read_to_string(&out).unwrap();
    let resources = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    Exported { transaction_time: manifest["transactionTime"].clone(), counts, resources }
}

fn fastrand_name() -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed).to_string()
}

fn get(base: &str, token: &str, path: &str) -> Value {
    let response = reqwest::blocking::Client::new().get(format!("{base}/{path}")).bearer_auth(token).send().unwrap();
    assert!(response.status().is_success(), "GET {path}: {}", response.status());
    response.json().unwrap()
}

fn summary_count(base: &str, token: &str, resource_type: &str) -> u64 {
    get(base, token, &format!("{resource_type}?_summary=count"))["total"].as_u64().unwrap()
}

fn ids_of(resources: &[Value], resource_type: &str) -> Vec<String> {
    let mut ids: Vec<String> = resources
        .iter()
        .filter(|r| r["resourceType"] == resource_type)
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

fn observation(patient: &str, value: u32) -> Value {
    json!({
        "resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "effectiveDateTime": "2026-12-01T10:00:00Z",
        "valueQuantity": {"value": value, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}
    })
}

#[test]
fn a_bulk_data_client_exports_what_the_spec_and_the_policy_say() {
    let clinic = clinic();
    let base = clinic.server.base.as_str();
    let dir = tempfile::tempdir().unwrap();

    // A backend service with system/*.read, registered with its public keys.
    let keys = dir.path().join("keys");
    run_client("smart_client.py", &["keygen", keys.to_str().unwrap()]);
    continuum(
        &clinic.data,
        &[
            "client",
            "add",
            "--id",
            "bulk-service",
            "--name",
            "Bulk Data client",
            "--jwks",
            keys.join("jwks.json").to_str().unwrap(),
            "--scope",
            "system/*.read",
        ],
        None,
    );
    let minted = run_client(
        "smart_client.py",
        &["service-token", base, "bulk-service", keys.to_str().unwrap(), "system/*.read"],
    );
    let service = minted.iter().find(|l| l[0] == "service-token").unwrap()[1].clone();

    // System level: every type, each count as `_summary=count` says.
    let everything = export(base, &service, "$export", dir.path());
    assert!(everything.counts.len() >= 10, "types exported: {:?}", everything.counts);
    for (resource_type, count) in &everything.counts {
        assert_eq!(*count, summary_count(base, &service, resource_type), "{resource_type}");
    }
    assert_eq!(everything.counts.values().sum::<u64>() as usize, everything.resources.len());
    assert_eq!(everything.counts["Patient"], 2);

    // `_type`.
    let some = export(base, &service, "$export?_type=Patient,Condition", dir.path());
    assert_eq!(some.counts.keys().collect::<Vec<_>>(), ["Condition", "Patient"]);
    assert_eq!(some.counts["Condition"], everything.counts["Condition"]);

    // `_since`: only what changed after it.
    let since = everything.transaction_time.clone();
    let new = fhir_post(base, &clinic.doc, &observation(&clinic.barry, 61));
    let changed = export(base, &service, &format!("$export?_type=Observation,Patient&_since={since}"), dir.path());
    assert_eq!(ids_of(&changed.resources, "Observation"), [new["id"].as_str().unwrap().to_string()]);
    assert_eq!(ids_of(&changed.resources, "Patient"), Vec::<String>::new());

    // Patient level: the compartments of every patient.
    let patients = export(base, &service, "Patient/$export?_type=Patient,Observation", dir.path());
    let mut both = vec![clinic.rosie.clone(), clinic.barry.clone()];
    both.sort();
    assert_eq!(ids_of(&patients.resources, "Patient"), both);
    assert_eq!(patients.counts["Observation"], summary_count(base, &service, "Observation"));

    // Group level: Barry's record only.
    let group = fhir_post(
        base,
        &clinic.doc,
        &json!({"resourceType": "Group", "type": "person", "actual": true,
                "member": [{"entity": {"reference": format!("Patient/{}", clinic.barry)}}]}),
    );
    let group_id = group["id"].as_str().unwrap();
    let barry = export(base, &service, &format!("Group/{group_id}/$export"), dir.path());
    assert_eq!(ids_of(&barry.resources, "Patient"), std::slice::from_ref(&clinic.barry));
    let barrys_observations =
        get(base, &service, &format!("Observation?subject=Patient/{}&_summary=count", clinic.barry));
    assert_eq!(barry.counts["Observation"], barrys_observations["total"].as_u64().unwrap());
    assert!(barry.resources.iter().all(|r| !r.to_string().contains(&format!("Patient/{}", clinic.rosie))));

    // Cancel: the status URL is gone afterwards.
    let cancelled = run_client("bulk_client.py", &["cancel", base, &service, "$export"]);
    assert_eq!(line(&cancelled, &["cancel"])["status"], "202");
    assert_eq!(line(&cancelled, &["after"])["status"], "404");

    // Refused at kick-off, with an OperationOutcome.
    for path in ["$export?_type=NotAType", "$export?_outputFormat=text/csv", "$export?_since=yesterday"] {
        let refused = run_client("bulk_client.py", &["refused", base, &service, path]);
        assert_eq!(
            line(&refused, &["refused"]),
            BTreeMap::from([
                ("status".to_string(), "400".to_string()),
                ("resourceType".to_string(), "OperationOutcome".to_string())
            ]),
            "{path}"
        );
    }

    // A physician of Rosie's organization only: Rosie's record, nothing of Barry's.
    add_user(&clinic.data, "rosie-doc", "physician", &[&clinic.rosie_org]);
    let rosie_doc = String::from_utf8(
        continuum(&clinic.data, &["token", "--user", "rosie-doc", "--scope", "user/*.rs"], None).stdout,
    )
    .unwrap()
    .trim()
    .to_string();
    // Someone else's job is, for them, no job at all.
    let client = reqwest::blocking::Client::new();
    let kicked = client
        .get(format!("{base}/$export?_type=Patient"))
        .bearer_auth(&service)
        .header("prefer", "respond-async")
        .send()
        .unwrap();
    assert_eq!(kicked.status().as_u16(), 202);
    let status_url = kicked.headers()["content-location"].to_str().unwrap().to_string();
    let peek = client.get(&status_url).bearer_auth(&rosie_doc).send().unwrap();
    assert_eq!(peek.status().as_u16(), 404, "another caller's job status");
    let restricted = export(base, &rosie_doc, "Patient/$export", dir.path());
    assert_eq!(ids_of(&restricted.resources, "Patient"), std::slice::from_ref(&clinic.rosie));
    for resource in &restricted.resources {
        let text = resource.to_string();
        assert!(!text.contains(&clinic.barry), "a resource of Barry's went to Rosie's physician");
    }
    for resource_type in ["Observation", "Condition", "Encounter"] {
        assert_eq!(
            restricted.counts.get(resource_type).copied().unwrap_or(0),
            summary_count(base, &rosie_doc, resource_type),
            "{resource_type} as Rosie's physician sees it"
        );
    }

    // 1,000 writes while an export runs: it holds exactly the versions current at its
    // transactionTime.
    let existing = ids_of(&everything.resources, "Observation");
    let by_id: HashMap<String, Value> = everything
        .resources
        .iter()
        .filter(|r| r["resourceType"] == "Observation")
        .map(|r| (r["id"].as_str().unwrap().to_string(), r.clone()))
        .collect();
    // Updated: 50 of them that carry a quantity.
    let targets: Vec<String> =
        existing.iter().filter(|id| by_id[*id]["valueQuantity"]["value"].is_number()).take(50).cloned().collect();
    assert_eq!(targets.len(), 50);
    let writer = {
        let (base, doc, barry, targets, by_id) =
            (base.to_string(), clinic.doc.clone(), clinic.barry.clone(), targets.clone(), by_id.clone());
        std::thread::spawn(move || {
            let client = reqwest::blocking::Client::new();
            let mut written: Vec<(String, u64, String)> = Vec::new();
            for i in 0..1000u32 {
                let (request, body) = if i % 2 == 0 {
                    (client.post(format!("{base}/Observation")), observation(&barry, i))
                } else {
                    let id = &targets[(i as usize / 2) % targets.len()];
                    let mut resource = by_id[id].clone();
                    resource["valueQuantity"]["value"] = json!(i);
                    resource.as_object_mut().unwrap().remove("meta");
                    (client.put(format!("{base}/Observation/{id}")), resource)
                };
                let response = request
                    .bearer_auth(&doc)
                    .header("content-type", "application/fhir+json")
                    .body(body.to_string())
                    .send()
                    .unwrap();
                let status = response.status();
                assert!(status.is_success(), "write {i}: {status} {}", response.text().unwrap_or_default());
                let stored: Value = response.json().unwrap();
                written.push((
                    stored["id"].as_str().unwrap().to_string(),
                    stored["meta"]["versionId"].as_str().unwrap().parse().unwrap(),
                    stored["meta"]["lastUpdated"].as_str().unwrap().to_string(),
                ));
            }
            written
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(300));
    let during = export(base, &service, "$export?_type=Observation", dir.path());
    let written = writer.join().unwrap();
    let at = &during.transaction_time;
    assert!(
        written.iter().any(|(_, _, t)| t <= at) && written.iter().any(|(_, _, t)| t > at),
        "the writes straddle the export"
    );
    let exported: HashMap<String, u64> = during
        .resources
        .iter()
        .map(|r| (r["id"].as_str().unwrap().to_string(), r["meta"]["versionId"].as_str().unwrap().parse().unwrap()))
        .collect();
    // Per resource written: the latest version at or before transactionTime, or none.
    let mut expected: HashMap<String, Option<u64>> = HashMap::new();
    for (id, version, updated) in &written {
        let entry = expected.entry(id.clone()).or_insert_with(|| (*version > 1).then_some(version - 1));
        if updated <= at {
            *entry = Some(entry.map_or(*version, |v| v.max(*version)));
        }
    }
    for (id, version) in &expected {
        assert_eq!(exported.get(id).copied(), *version, "Observation/{id} as at {at}");
    }
    let created_before = written.iter().filter(|(_, v, t)| *v == 1 && t <= at).count();
    assert_eq!(exported.len(), existing.len() + 1 + created_before, "every Observation of the cut, once");
}
