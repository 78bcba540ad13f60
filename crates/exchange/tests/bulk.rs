//! Bulk Data jobs through the exchange service, over the embedded store: what survives a
//! restart (a finished job's manifest and files; an interrupted job run again or failed),
//! `_typeFilter`, and imports (a body checked line by line, refused lines reported with their
//! numbers, files named by `Parameters` only from the import folder).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a failed check panics, like assert!")]

use access::{Door, Who};
use exchange::bulk::{Bulk, BulkConfig, ExportRequest, JobStatus, Level};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use store::{JobStore, Records, StoredJob};

struct Fixture {
    _dir: tempfile::TempDir,
    records: Records,
    jobs: Arc<dyn JobStore>,
    config: BulkConfig,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let backend = Arc::new(store_sqlite::SqliteBackend::open(dir.path()).unwrap());
    let jobs: Arc<dyn JobStore> = Arc::new(backend.job_store().unwrap());
    let records = Records::new(backend);
    let config = BulkConfig::in_data_dir(dir.path());
    Fixture { _dir: dir, records, jobs, config }
}

impl Fixture {
    fn bulk(&self) -> Bulk {
        Bulk::open(Door::open(self.records.clone()), self.jobs.clone(), self.config.clone()).unwrap()
    }

    fn access(&self) -> access::Access {
        Door::open(self.records.clone()).enter(Who::Anyone)
    }

    fn patient(&self, family: &str) -> String {
        let patient = json!({"resourceType": "Patient", "name": [{"family": family}], "gender": "female"});
        self.records.create(patient, None).unwrap().version.unwrap().id
    }
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn finished(bulk: &Bulk, access: &access::Access, id: &str) -> Value {
    assert!(bulk.wait(id, Duration::from_secs(30)).unwrap(), "the job ends");
    match bulk.status(access, id, "http://files").unwrap() {
        JobStatus::Complete(manifest) => manifest,
        other => panic!("not complete: {other:?}"),
    }
}

fn lines(bulk: &Bulk, access: &access::Access, id: &str, manifest: &Value, kind: &str) -> Vec<Value> {
    let mut found = Vec::new();
    for output in manifest["output"].as_array().unwrap().iter().filter(|o| o["type"] == kind) {
        let name = output["url"].as_str().unwrap().rsplit('/').next().unwrap();
        let text = std::fs::read_to_string(bulk.file(access, id, name).unwrap()).unwrap();
        found.extend(text.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()));
    }
    found
}

#[test]
fn a_finished_export_survives_a_restart_and_type_filters_select() {
    let fixture = fixture();
    let (alice, _bob) = (fixture.patient("Alpha"), fixture.patient("Beta"));
    let access = fixture.access();
    let id = {
        let bulk = fixture.bulk();
        let request = ExportRequest::parse(
            Level::System,
            &pairs(&[("_type", "Patient"), ("_typeFilter", "Patient?family=Alpha")]),
        )
        .unwrap();
        let id = bulk.kick_off_export(&access, request, "http://x/$export").unwrap();
        let manifest = finished(&bulk, &access, &id);
        let exported = lines(&bulk, &access, &id, &manifest, "Patient");
        assert_eq!(exported.iter().map(|p| p["id"].as_str().unwrap()).collect::<Vec<_>>(), [alice.as_str()]);
        id
    };
    // Another server over the same store and folder: the job, its manifest and its files.
    let reopened = fixture.bulk();
    let manifest = finished(&reopened, &access, &id);
    assert_eq!(manifest["output"][0]["count"], 1);
    assert_eq!(lines(&reopened, &access, &id, &manifest, "Patient").len(), 1);
}

#[test]
fn an_interrupted_job_is_run_again_or_failed_with_the_reason() {
    let fixture = fixture();
    fixture.patient("Alpha");
    let cut = fixture.records.backend().latest_sequence().unwrap();
    let state = |owner: &str| {
        json!({
            "operation": {"operation": "export", "level": "system", "types": ["Patient"], "since": null, "type_filters": []},
            "owner": owner, "request": "http://x/$export", "phase": "in-progress",
            "transaction_time": "2026-01-01T00:00:00.000000Z", "cut": cut, "progress": "1 of 3 types written",
            "output": [], "error": [], "failure": null, "expires_at": null
        })
        .to_string()
    };
    let long_ago = time::OffsetDateTime::now_utc() - time::Duration::minutes(10);
    for (id, owner) in [("open-job", "anyone"), ("users-job", "user:someone")] {
        fixture
            .jobs
            .save_job(&StoredJob { id: id.into(), kind: "bulk".into(), state: state(owner), updated_at: long_ago })
            .unwrap();
    }
    // A job still saving its state is left alone.
    fixture
        .jobs
        .save_job(&StoredJob {
            id: "live-job".into(),
            kind: "bulk".into(),
            state: state("anyone"),
            updated_at: time::OffsetDateTime::now_utc(),
        })
        .unwrap();
    let bulk = fixture.bulk();
    let access = fixture.access();
    let manifest = finished(&bulk, &access, "open-job");
    assert_eq!(manifest["output"][0]["count"], 1, "run again from its start");
    let stored: Value = serde_json::from_str(&fixture.jobs.job("users-job").unwrap().unwrap().state).unwrap();
    assert_eq!(stored["phase"], "failed");
    assert!(stored["failure"].as_str().unwrap().contains("interrupted"));
    let live: Value = serde_json::from_str(&fixture.jobs.job("live-job").unwrap().unwrap().state).unwrap();
    assert_eq!(live["phase"], "in-progress");
}

#[test]
fn imports_check_bodies_and_report_refused_lines() {
    let fixture = fixture();
    let bulk = fixture.bulk();
    let access = fixture.access();
    let count = |t: &str| {
        fixture.records.backend().count_by_type().unwrap().into_iter().find(|(k, _)| k == t).map_or(0, |(_, n)| n)
    };
    // A line of another type than declared: refused whole, nothing stored.
    let body = "{\"resourceType\":\"Patient\",\"id\":\"p1\"}\n{\"resourceType\":\"Observation\",\"id\":\"o1\"}\n";
    let refused = bulk.kick_off_import_body(&access, body.as_bytes(), Some("Patient"), "http://x/$import").unwrap_err();
    assert!(refused.to_string().contains("line 2"), "{refused}");
    assert_eq!(count("Patient"), 0);
    assert!(bulk.kick_off_import_body(&access, b"not json\n", None, "http://x/$import").is_err());
    assert_eq!(count("Patient"), 0);

    // A valid body with one resource FHIR refuses: the others are written, the line reported.
    let body = [
        json!({"resourceType": "Patient", "id": "p1", "name": [{"family": "One"}]}),
        json!({"resourceType": "Patient", "id": "p2", "gender": "not-a-gender"}),
        json!({"resourceType": "Patient", "name": [{"family": "NoId"}]}),
    ]
    .iter()
    .map(Value::to_string)
    .collect::<Vec<_>>()
    .join("\n");
    let id = bulk.kick_off_import_body(&access, body.as_bytes(), Some("Patient"), "http://x/$import").unwrap();
    let manifest = finished(&bulk, &access, &id);
    assert_eq!(manifest["output"], json!([{"type": "Patient", "count": 2}]));
    assert_eq!(manifest["error"][0]["count"], 1);
    let errors = std::fs::read_to_string(bulk.file(&access, &id, "errors.ndjson").unwrap()).unwrap();
    assert!(errors.contains("body line 2") && errors.contains("gender"), "{errors}");
    assert_eq!(count("Patient"), 2);

    // Files named by Parameters: only plain names of the import folder.
    std::fs::write(fixture.config.import_dir.join("more.ndjson"), "{\"resourceType\":\"Patient\",\"id\":\"p3\"}\n")
        .unwrap();
    let parameters = |url: &str| {
        json!({"resourceType": "Parameters", "parameter": [{"name": "input", "part": [
            {"name": "type", "valueCode": "Patient"}, {"name": "url", "valueUri": url}]}]})
    };
    let id = bulk.kick_off_import_files(&access, &parameters("more.ndjson"), "http://x/$import").unwrap();
    finished(&bulk, &access, &id);
    assert_eq!(count("Patient"), 3);
    for escape in ["../auth.db", "/etc/passwd", ".hidden", "missing.ndjson"] {
        assert!(bulk.kick_off_import_files(&access, &parameters(escape), "http://x/$import").is_err(), "{escape}");
    }
}

#[test]
fn a_cancelled_export_leaves_nothing() {
    let fixture = fixture();
    for i in 0..50 {
        fixture.patient(&format!("P{i}"));
    }
    let bulk = fixture.bulk();
    let access = fixture.access();
    let id = bulk
        .kick_off_export(&access, ExportRequest::parse(Level::Patient, &[]).unwrap(), "http://x/Patient/$export")
        .unwrap();
    bulk.cancel(&access, &id).unwrap();
    bulk.wait(&id, Duration::from_secs(10)).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert!(bulk.status(&access, &id, "http://files").is_err(), "gone");
    assert!(fixture.jobs.job(&id).unwrap().is_none());
    assert!(!bulk.job_dir(&id).exists(), "its files too");
}
