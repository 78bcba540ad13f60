//! Measures definition load time and validation throughput on the Synthea test bundles.
//! Usage: `cargo run --release -p fhir --example bench_validate -- testdata/synthea`

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "example run by hand: a failure stops it with its message")]

use std::time::Instant;

fn json_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable directory").flatten() {
        let path = entry.path();
        if path.is_dir() {
            json_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "json") {
            out.push(path);
        }
    }
}

fn main() {
    let start = Instant::now();
    let defs = fhir::definitions();
    println!("definitions loaded in {:?} ({} resource types)", start.elapsed(), defs.resource_types().len());

    let dir = std::env::args().nth(1).unwrap_or_else(|| "testdata/synthea".into());
    let mut files = Vec::new();
    json_files(std::path::Path::new(&dir), &mut files);
    let mut resources = Vec::new();
    for file in files {
        let bundle: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
        for entry in bundle["entry"].as_array().into_iter().flatten() {
            resources.push(entry["resource"].clone());
        }
    }
    let bytes: usize = resources.iter().map(|r| r.to_string().len()).sum();
    let mut by_type: std::collections::BTreeMap<String, (usize, std::time::Duration)> = Default::default();
    let rounds: usize = std::env::var("ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(3);
    let start = Instant::now();
    let mut errors = 0;
    for _ in 0..rounds {
        for r in &resources {
            let t = Instant::now();
            errors += fhir::validate(r).len();
            let elapsed = t.elapsed();
            let resource_type = r["resourceType"].as_str().unwrap_or("?");
            if let Some(slot) = by_type.get_mut(resource_type) {
                slot.0 += 1;
                slot.1 += elapsed;
            } else {
                by_type.insert(resource_type.to_owned(), (1, elapsed));
            }
        }
    }
    let elapsed = start.elapsed();
    let n = resources.len() * rounds;
    println!(
        "{n} validations, {:.2} µs/resource, {:.0} resources/s on one core, avg {} bytes, {errors} issues",
        elapsed.as_secs_f64() * 1e6 / n as f64,
        n as f64 / elapsed.as_secs_f64(),
        bytes / resources.len().max(1)
    );
    for (t, (count, d)) in by_type.iter().filter(|(_, (c, _))| *c >= 30 * rounds) {
        println!("  {t:<24} {count:>7} {:>8.2} µs", d.as_secs_f64() * 1e6 / *count as f64);
    }
}
