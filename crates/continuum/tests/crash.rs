//! Crash safety: the real binary is killed with SIGKILL in the middle of a stream of writes
//! (and of an import), restarted, and checked: every acknowledged write is there with its
//! acknowledged version, no transaction is half-applied, the search indexes match the
//! resources, and the store opens cleanly. The write stream runs on the embedded SQLite store
//! and on PostgreSQL (`CONTINUUM_TEST_POSTGRES`), `CONTINUUM_CRASH_ROUNDS` rounds each (3 by
//! default; `reliability/crash.sh` runs 20).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a failed check panics, like assert!")]

use serde_json::{Value, json};

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use test_support::process::{Server, binary, start};
use test_support::scratch;

/// Where the server keeps its records.
enum Target {
    Sqlite,
    Postgres(scratch::Database),
}

impl Target {
    /// Starts the server on this store, with no per-client rate limit: every writer and the
    /// checks share one address.
    fn start(&self, data: &Path) -> Server {
        match self {
            Target::Sqlite => start(data, &["--rate-limit", "0"]),
            Target::Postgres(db) => start(data, &["--rate-limit", "0", "--database", &db.url]),
        }
    }

    /// The store opens after the kill without repair and the database is consistent.
    fn check_opens(&self, data: &Path) {
        match self {
            Target::Sqlite => {
                let backend = store_sqlite::SqliteBackend::open(data).expect("store reopens after SIGKILL");
                backend.check_integrity().expect("database integrity");
            }
            Target::Postgres(db) => {
                let backend = store_postgres::PostgresBackend::connect(&db.url).expect("store reopens after SIGKILL");
                assert_eq!(backend.schema_version().unwrap(), store_postgres::PostgresBackend::latest_schema_version());
            }
        }
    }
}

/// Rounds of start, write, SIGKILL, restart and check.
fn rounds() -> usize {
    std::env::var("CONTINUUM_CRASH_ROUNDS").ok().and_then(|n| n.parse().ok()).unwrap_or(3)
}

/// A pseudo-random number from the clock, enough to vary the moment of the kill.
fn jitter(max: u64) -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    u64::from(nanos) % max
}

#[derive(Default)]
struct Acknowledged {
    /// (path, version) of every acknowledged single write.
    writes: Vec<(String, u64)>,
    /// Ids of each transaction attempted, and whether it was acknowledged.
    transactions: Vec<(Vec<String>, bool)>,
}

fn patient(given: &str) -> Value {
    json!({"resourceType": "Patient", "name": [{"family": "Crash", "given": [given]}], "gender": "unknown"})
}

fn writer(base: String, worker: usize, stop: Arc<AtomicBool>, acked: Arc<Mutex<Acknowledged>>) {
    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let created = client
            .post(format!("{base}/Patient"))
            .header("content-type", "application/fhir+json")
            .body(patient(&format!("w{worker}n{i}")).to_string())
            .send();
        let Ok(created) = created else { return };
        if created.status().as_u16() != 201 {
            return;
        }
        let Ok(body) = created.json::<Value>() else { return };
        let id = body["id"].as_str().unwrap().to_string();
        acked.lock().unwrap().writes.push((format!("Patient/{id}"), 1));
        let mut changed = body.clone();
        changed["gender"] = json!("other");
        let updated = client
            .put(format!("{base}/Patient/{id}"))
            .header("content-type", "application/fhir+json")
            .body(changed.to_string())
            .send();
        match updated {
            Ok(r) if r.status().as_u16() == 200 => acked.lock().unwrap().writes.push((format!("Patient/{id}"), 2)),
            _ => return,
        }
    }
}

fn transactor(base: String, worker: usize, stop: Arc<AtomicBool>, acked: Arc<Mutex<Acknowledged>>) {
    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let counter = AtomicUsize::new(0);
    while !stop.load(Ordering::Relaxed) {
        let n = counter.fetch_add(1, Ordering::Relaxed);
        let ids: Vec<String> = (0..10).map(|k| format!("tx{worker}-{}-{n}-{k}", jitter(1_000_000_000))).collect();
        let entries: Vec<Value> = ids
            .iter()
            .map(|id| {
                let mut resource = patient(id);
                resource["id"] = json!(id);
                json!({"resource": resource, "request": {"method": "PUT", "url": format!("Patient/{id}")}})
            })
            .collect();
        let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
        let index = {
            let mut acked = acked.lock().unwrap();
            acked.transactions.push((ids.iter().map(|id| format!("Patient/{id}")).collect(), false));
            acked.transactions.len() - 1
        };
        let response = client
            .post(format!("{base}/"))
            .header("content-type", "application/fhir+json")
            .body(bundle.to_string())
            .send();
        match response {
            Ok(r) if r.status().as_u16() == 200 => acked.lock().unwrap().transactions[index].1 = true,
            _ => return,
        }
    }
}

/// The `total` of a `_summary=count` search.
fn total(client: &reqwest::blocking::Client, url: &str) -> u64 {
    let response = client.get(url).send().unwrap();
    assert_eq!(response.status().as_u16(), 200, "{url}");
    response.json::<Value>().unwrap()["total"].as_u64().expect("a total")
}

fn check(base: &str, acked: &Acknowledged) {
    let client = reqwest::blocking::Client::new();
    // Every patient written has the family name Crash: the string index must hold exactly the
    // live patients, no more (index rows of a rolled-back write) and no fewer.
    let all = total(&client, &format!("{base}/Patient?_summary=count"));
    let indexed = total(&client, &format!("{base}/Patient?family=Crash&_summary=count"));
    assert_eq!(all, indexed, "the name index does not match the stored patients");
    let updated = acked.writes.iter().filter(|(_, version)| *version == 2).count() as u64;
    let other = total(&client, &format!("{base}/Patient?gender=other&_summary=count"));
    assert!(other >= updated, "{other} patients indexed as updated, {updated} updates acknowledged");
    for (path, version) in &acked.writes {
        let response = client.get(format!("{base}/{path}/_history/{version}")).send().unwrap();
        assert_eq!(response.status().as_u16(), 200, "acknowledged {path} version {version} lost");
    }
    for (paths, was_acked) in &acked.transactions {
        let statuses: Vec<u16> =
            paths.iter().map(|p| client.get(format!("{base}/{p}")).send().unwrap().status().as_u16()).collect();
        assert!(statuses.iter().all(|s| *s == 200 || *s == 404), "reads after the restart failed: {statuses:?}");
        let present = statuses.iter().filter(|s| **s == 200).count();
        let given = paths[0].trim_start_matches("Patient/");
        let found = total(&client, &format!("{base}/Patient?given:exact={given}&_summary=count"));
        assert_eq!(found, u64::from(present > 0), "index of transaction entry {given} does not match its resource");
        if *was_acked {
            assert_eq!(present, paths.len(), "acknowledged transaction lost entries");
        } else {
            assert!(present == 0 || present == paths.len(), "transaction half-applied: {present}/{}", paths.len());
        }
    }
}

fn acknowledged_writes_survive_sigkill(target: Target) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let acked = Arc::new(Mutex::new(Acknowledged::default()));
    for round in 0..rounds() {
        let mut server = target.start(&data);
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for worker in 0..4 {
            let (base, stop, acked) = (server.base.clone(), stop.clone(), acked.clone());
            threads.push(std::thread::spawn(move || writer(base, worker, stop, acked)));
        }
        for worker in 0..2 {
            let (base, stop, acked) = (server.base.clone(), stop.clone(), acked.clone());
            threads.push(std::thread::spawn(move || transactor(base, worker, stop, acked)));
        }
        std::thread::sleep(Duration::from_millis(300 + jitter(700)));
        server.child.kill().unwrap(); // SIGKILL
        server.child.wait().unwrap();
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            t.join().unwrap();
        }
        target.check_opens(&data);
        let mut server = target.start(&data);
        check(&server.base, &acked.lock().unwrap());
        server.child.kill().unwrap();
        server.child.wait().unwrap();
        let acked = acked.lock().unwrap();
        let committed = acked.transactions.iter().filter(|(_, ok)| *ok).count();
        eprintln!(
            "round {round}: {} acknowledged writes, {committed}/{} transactions acknowledged, all present",
            acked.writes.len(),
            acked.transactions.len()
        );
        assert!(!acked.writes.is_empty(), "round {round}: no write was acknowledged before the kill");
    }
}

#[test]
fn acknowledged_writes_survive_sigkill_on_sqlite() {
    acknowledged_writes_survive_sigkill(Target::Sqlite);
}

#[test]
fn acknowledged_writes_survive_sigkill_on_postgres() {
    acknowledged_writes_survive_sigkill(Target::Postgres(scratch::Database::create()));
}

fn synthea_bundles() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/synthea/smart-2019");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files
}

/// The Synthea identifier of the bundle's patient and the number of entries in it.
fn bundle_patient(path: &Path) -> (String, usize) {
    let bundle: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let entries = bundle["entry"].as_array().unwrap();
    let patient = entries.iter().find(|e| e["resource"]["resourceType"] == "Patient").unwrap();
    let identifier = patient["resource"]["identifier"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["system"] == "https://github.com/synthetichealth/synthea")
        .unwrap();
    (identifier["value"].as_str().unwrap().to_string(), entries.len())
}

#[test]
fn import_killed_midway_leaves_whole_bundles_only() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let bundles = synthea_bundles();
    let mut child = Command::new(binary())
        .arg("import")
        .arg("--data")
        .arg(&data)
        .args(&bundles)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(400 + jitter(800)));
    child.kill().unwrap();
    child.wait().unwrap();

    let backend = store_sqlite::SqliteBackend::open(&data).expect("store reopens after SIGKILL");
    backend.check_integrity().expect("database integrity");
    use store::Backend;
    let stored: u64 = backend.count_by_type().unwrap().iter().map(|(_, n)| n).sum();
    let mut expected = 0;
    for path in &bundles {
        let (identifier, size) = bundle_patient(path);
        let found =
            backend.find_by_identifier("Patient", Some("https://github.com/synthetichealth/synthea"), &identifier);
        if !found.unwrap().is_empty() {
            expected += size as u64;
        }
    }
    eprintln!("import killed midway: {stored} resources stored, all from whole bundles");
    assert_eq!(stored, expected, "stored resources are not exactly the whole bundles whose patient is present");
}
