//! No lost updates under concurrency: 32 clients do read-modify-write with `If-Match` on the
//! same few resources for 30 seconds (`CONTINUUM_CONCURRENCY_SECONDS` to change it), against
//! the real server on the embedded store and on PostgreSQL. Each write increments a counter
//! kept in the resource; every conflict must be a `412`, and at the end each resource's
//! version and counter must account for exactly the writes that were answered `200`, with
//! every version in its history one step after the one before.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a failed check panics, like assert!")]

use serde_json::{Value, json};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use test_support::process::start;
use test_support::scratch;

const CLIENTS: usize = 32;
/// Few resources, so that most attempts collide.
const RESOURCES: usize = 4;

fn seconds() -> u64 {
    std::env::var("CONTINUUM_CONCURRENCY_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(30)
}

/// The counter a version carries (`multipleBirthInteger`, set by the test only).
fn counter(patient: &Value) -> u64 {
    patient["multipleBirthInteger"].as_u64().expect("the counter")
}

fn version(patient: &Value) -> u64 {
    patient["meta"]["versionId"].as_str().expect("versionId").parse().expect("numeric versionId")
}

/// What one client saw.
#[derive(Default)]
struct Tally {
    /// Successful writes per resource.
    successes: [u64; RESOURCES],
    conflicts: u64,
    /// Answers that were neither 200 nor 412 (must stay empty).
    unexpected: Vec<String>,
}

fn client_loop(base: &str, ids: &[String], worker: usize, stop: &AtomicBool) -> Tally {
    let http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let mut tally = Tally::default();
    let mut turn = worker;
    while !stop.load(Ordering::Relaxed) {
        turn += 1;
        let which = turn % RESOURCES;
        let url = format!("{base}/Patient/{}", ids[which]);
        let read = match http.get(&url).send() {
            Ok(r) if r.status().as_u16() == 200 => r,
            Ok(r) => {
                tally.unexpected.push(format!("read answered {}", r.status()));
                continue;
            }
            Err(e) => {
                tally.unexpected.push(format!("read failed: {e}"));
                continue;
            }
        };
        let etag = read.headers().get("etag").map(|v| v.to_str().unwrap().to_string());
        let mut patient: Value = read.json().unwrap();
        let seen = version(&patient);
        assert_eq!(etag.as_deref(), Some(format!("W/\"{seen}\"").as_str()), "ETag of a read");
        patient["multipleBirthInteger"] = json!(counter(&patient) + 1);
        let written = http
            .put(&url)
            .header("content-type", "application/fhir+json")
            .header("if-match", format!("W/\"{seen}\""))
            .body(patient.to_string())
            .send();
        match written {
            Ok(r) if r.status().as_u16() == 200 => {
                let body: Value = r.json().unwrap();
                if version(&body) != seen + 1 {
                    tally.unexpected.push(format!("write on version {seen} made version {}", version(&body)));
                }
                tally.successes[which] += 1;
            }
            Ok(r) if r.status().as_u16() == 412 => {
                let body: Value = r.json().unwrap_or(Value::Null);
                if body["resourceType"] != "OperationOutcome" {
                    tally.unexpected.push("a 412 without an OperationOutcome".into());
                }
                tally.conflicts += 1;
            }
            Ok(r) => tally.unexpected.push(format!("write answered {}", r.status())),
            Err(e) => tally.unexpected.push(format!("write failed: {e}")),
        }
    }
    tally
}

fn no_lost_updates(backend: &str, data: &Path, extra: &[&str]) {
    let mut args = vec!["--rate-limit", "0"];
    args.extend_from_slice(extra);
    let server = start(data, &args);
    let http = reqwest::blocking::Client::new();
    let ids: Vec<String> = (0..RESOURCES)
        .map(|i| {
            let created: Value = http
                .post(format!("{}/Patient", server.base))
                .header("content-type", "application/fhir+json")
                .body(
                    json!({"resourceType": "Patient", "name": [{"family": "Contended", "given": [format!("r{i}")]}],
                        "multipleBirthInteger": 0})
                    .to_string(),
                )
                .send()
                .unwrap()
                .json()
                .unwrap();
            created["id"].as_str().unwrap().to_string()
        })
        .collect();

    let stop = Arc::new(AtomicBool::new(false));
    let start = Arc::new(Barrier::new(CLIENTS + 1));
    let workers: Vec<_> = (0..CLIENTS)
        .map(|worker| {
            let (base, ids, stop, start) = (server.base.clone(), ids.clone(), stop.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                client_loop(&base, &ids, worker, &stop)
            })
        })
        .collect();
    start.wait();
    std::thread::sleep(Duration::from_secs(seconds()));
    stop.store(true, Ordering::Relaxed);
    let tallies: Vec<Tally> = workers.into_iter().map(|w| w.join().expect("a client panicked")).collect();

    let unexpected: Vec<&String> = tallies.iter().flat_map(|t| &t.unexpected).collect();
    assert!(unexpected.is_empty(), "answers other than 200 and 412: {unexpected:?}");
    let conflicts: u64 = tallies.iter().map(|t| t.conflicts).sum();
    let mut total = 0;
    for (which, id) in ids.iter().enumerate() {
        let successes: u64 = tallies.iter().map(|t| t.successes[which]).sum();
        total += successes;
        let current: Value = http.get(format!("{}/Patient/{id}", server.base)).send().unwrap().json().unwrap();
        assert_eq!(version(&current), successes + 1, "Patient/{id}: versions == 1 + successful writes");
        assert_eq!(counter(&current), successes, "Patient/{id}: the counter lost an update");
        // Every version is exactly one increment after the one before it.
        let mut versions: Vec<(u64, u64)> = Vec::new();
        let mut page = Some(format!("{}/Patient/{id}/_history?_count=1000", server.base));
        while let Some(url) = page {
            let bundle: Value = http.get(&url).send().unwrap().json().unwrap();
            let entries = bundle["entry"].as_array().map(Vec::as_slice).unwrap_or_default();
            versions.extend(entries.iter().map(|e| (version(&e["resource"]), counter(&e["resource"]))));
            page = bundle["link"]
                .as_array()
                .and_then(|links| links.iter().find(|l| l["relation"] == "next"))
                .map(|l| l["url"].as_str().unwrap().to_string());
        }
        versions.sort_unstable();
        let expected: Vec<(u64, u64)> = (1..=successes + 1).map(|v| (v, v - 1)).collect();
        assert!(versions == expected, "Patient/{id}: history is not one step per version");
    }
    eprintln!(
        "{backend}: {CLIENTS} clients, {} s: {total} writes succeeded, {conflicts} conflicts answered 412",
        seconds()
    );
    assert!(total > 0 && conflicts > 0, "the test made no contended writes ({total} ok, {conflicts} conflicts)");
}

#[test]
fn if_match_loses_no_update_on_sqlite() {
    let data = tempfile::tempdir().unwrap();
    no_lost_updates("SQLite", data.path(), &[]);
}

#[test]
fn if_match_loses_no_update_on_postgres() {
    let data = tempfile::tempdir().unwrap();
    let database = scratch::Database::create();
    no_lost_updates("PostgreSQL", data.path(), &["--database", &database.url]);
}
