//! Store-level throughput, without HTTP: `cargo run --release -p store-sqlite --example
//! store_bench -- [threads] [seconds]`. Each thread alternates creating an Observation and
//! updating its own Patient (what `continuum-bench` does over HTTP), then reads by id.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "example run by hand: a failure stops it with its message")]

use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use store::Records;
use store_sqlite::SqliteBackend;

fn main() {
    let mut args = std::env::args().skip(1);
    let threads: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(32);
    let seconds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let dir = tempfile::tempdir().unwrap();
    let records = Records::new(Arc::new(SqliteBackend::open(dir.path()).unwrap()));
    let patient = json!({"resourceType": "Patient", "id": "p", "name": [{"family": "Bench"}]});
    records.update("Patient", "p", patient, None).unwrap();
    let writes = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    let ids = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for t in 0..threads {
            let (records, writes, stop, ids) = (&records, &writes, &stop, &ids);
            scope.spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    if i.is_multiple_of(2) {
                        let obs = json!({
                            "resourceType": "Observation", "status": "final",
                            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
                            "subject": {"reference": "Patient/p"}, "effectiveDateTime": "2026-11-25T09:00:00Z",
                            "valueQuantity": {"value": 60 + i % 40, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}
                        });
                        let id = records.create(obs, None).unwrap().version.unwrap().id;
                        if i.is_multiple_of(64) {
                            ids.lock().unwrap().push(id);
                        }
                    } else {
                        let id = format!("bench-{t}");
                        let p = json!({"resourceType": "Patient", "id": id, "name": [{"family": "Bench", "given": [format!("N{i}")]}], "gender": "unknown"});
                        records.update("Patient", &id, p, None).unwrap();
                    }
                    writes.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            });
        }
        std::thread::sleep(Duration::from_secs(seconds));
        stop.store(true, Ordering::Relaxed);
    });
    let elapsed = started.elapsed().as_secs_f64();
    println!("store writes: {:.0}/s ({threads} threads)", writes.load(Ordering::Relaxed) as f64 / elapsed);
    let ids = ids.into_inner().unwrap();
    let reads = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for t in 0..threads {
            let (records, reads, stop, ids) = (&records, &reads, &stop, &ids);
            scope.spawn(move || {
                let mut i = t;
                while !stop.load(Ordering::Relaxed) {
                    records.read("Observation", &ids[i % ids.len()]).unwrap();
                    reads.fetch_add(1, Ordering::Relaxed);
                    i += 7;
                }
            });
        }
        std::thread::sleep(Duration::from_secs(seconds.min(3)));
        stop.store(true, Ordering::Relaxed);
    });
    let elapsed = started.elapsed().as_secs_f64();
    println!("store reads:  {:.0}/s ({threads} threads)", reads.load(Ordering::Relaxed) as f64 / elapsed);
}
