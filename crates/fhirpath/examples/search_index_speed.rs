//! How fast the R4 search-parameter expressions evaluate: every parameter of each official
//! example resource's type, as index extraction would run them.
//!
//! `cargo run -p fhirpath --release --example search_index_speed [rounds]`

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "example run by hand: a failure stops it with its message")]

use fhirpath::{Environment, Expression};
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

fn main() {
    let rounds: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(20);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/fhir-examples/r4-spec");
    let mut resources: Vec<Value> = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("examples directory").flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path()) else { continue };
        if let Ok(json) = serde_json::from_str::<Value>(&text)
            && json.get("resourceType").and_then(Value::as_str).is_some_and(|t| t != "Bundle")
        {
            resources.push(json);
        }
    }

    let started = Instant::now();
    let defs = fhir::definitions();
    let mut compiled: HashMap<String, Vec<Expression>> = HashMap::new();
    for t in defs.resource_types() {
        let exprs =
            defs.search_params(t).iter().filter_map(|p| Expression::compile(p.expression.as_deref()?).ok()).collect();
        compiled.insert(t.to_owned(), exprs);
    }
    let expressions: usize = compiled.values().map(Vec::len).sum();
    println!("definitions loaded and {expressions} expressions compiled in {:?}", started.elapsed());

    // warm up (builds the type model), then measure
    let mut values = 0usize;
    let mut evaluations = 0usize;
    let run = |values: &mut usize, evaluations: &mut usize| {
        for r in &resources {
            let env = Environment::new(r);
            let t = r["resourceType"].as_str().unwrap_or_default();
            for e in compiled.get(t).map(Vec::as_slice).unwrap_or_default() {
                *evaluations += 1;
                if let Ok(items) = e.evaluate_with(&env) {
                    *values += items.len();
                }
            }
        }
    };
    run(&mut values, &mut evaluations);
    // the machine may be shared: report the fastest round as well as the mean
    let (mut values, mut evaluations) = (0, 0);
    let mut best = std::time::Duration::MAX;
    let started = Instant::now();
    for _ in 0..rounds {
        let round = Instant::now();
        run(&mut values, &mut evaluations);
        best = best.min(round.elapsed());
    }
    let elapsed = started.elapsed();
    let n = resources.len() as f64;
    let mean = elapsed.as_secs_f64() * 1e6 / (rounds as f64 * n);
    let fastest = best.as_secs_f64() * 1e6 / n;
    let per_expression = best.as_secs_f64() * 1e9 / (evaluations / rounds) as f64;
    println!(
        "{} resources x {rounds} rounds: {evaluations} evaluations, {values} values in {elapsed:?}",
        resources.len()
    );
    println!(
        "per resource (all its search parameters): {fastest:.1} µs fastest round, {mean:.1} µs mean; \
         {per_expression:.0} ns per expression"
    );
}
