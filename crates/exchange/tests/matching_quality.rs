//! Matching quality on the generated set (`tests/external/make_match_set.py`, seed 7): 2,000
//! people made from the Synthea sample, 1,000 duplicates of them registered elsewhere with
//! realistic errors (typos, nicknames, transposed day and month, moves, new phones, married
//! surnames, missing SSNs), 150 twins and 150 namesakes. Every record is stored, then matched
//! against the others through the service (blocking searches on the store's indexes, the
//! model's grades); precision, recall and F1 of `certain` and of `certain` + `probable` are
//! printed and held above floors, with no false `certain` at all.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a failed check panics, like assert!")]

use access::{Door, Who};
use exchange::identity::{Identity, MatchRequest};
use matching::Grade;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use store::Records;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/external/make_match_set.py");

fn generated_set() -> Vec<Value> {
    // Another seed (`MATCH_SEED=11`) checks that the model was not fitted to one draw.
    let seed = std::env::var("MATCH_SEED").unwrap_or_else(|_| "7".into());
    let out = std::process::Command::new("python3").args([SCRIPT, "--seed", &seed]).output().expect("python3 runs");
    assert!(out.status.success(), "the generator failed: {}", String::from_utf8_lossy(&out.stderr));
    let set: Value = serde_json::from_slice(&out.stdout).unwrap();
    set["records"].as_array().unwrap().clone()
}

#[derive(Default)]
struct Tally {
    true_positive: usize,
    false_positive: usize,
    false_negative: usize,
}

impl Tally {
    fn precision(&self) -> f64 {
        self.true_positive as f64 / (self.true_positive + self.false_positive).max(1) as f64
    }
    fn recall(&self) -> f64 {
        self.true_positive as f64 / (self.true_positive + self.false_negative).max(1) as f64
    }
    fn f1(&self) -> f64 {
        let (p, r) = (self.precision(), self.recall());
        if p + r == 0.0 { 0.0 } else { 2.0 * p * r / (p + r) }
    }
}

#[test]
fn the_generated_set_is_matched_with_no_false_certain() {
    let records_json = generated_set();
    let dir = tempfile::tempdir().unwrap();
    let records = Records::new(Arc::new(store_sqlite::SqliteBackend::open(dir.path()).unwrap()));
    let access = Door::open(records.clone()).enter(Who::Anyone);
    // Stored in batches, as an import would.
    let mut person_of: HashMap<String, String> = HashMap::new();
    let mut role_of: HashMap<String, String> = HashMap::new();
    let mut errors_of: HashMap<String, String> = HashMap::new();
    let mut stored: Vec<(String, Value)> = Vec::new();
    for chunk in records_json.chunks(500) {
        let entries: Vec<Value> = chunk
            .iter()
            .map(|r| serde_json::json!({"resource": r["patient"], "request": {"method": "POST", "url": "Patient"}}))
            .collect();
        let answer = access
            .transaction(serde_json::json!({"resourceType": "Bundle", "type": "transaction", "entry": entries}))
            .unwrap();
        for (record, entry) in chunk.iter().zip(answer["entry"].as_array().unwrap()) {
            let id = entry["response"]["location"].as_str().unwrap().split('/').nth(1).unwrap().to_string();
            person_of.insert(id.clone(), record["person"].as_str().unwrap().to_string());
            role_of.insert(id.clone(), record["role"].as_str().unwrap().to_string());
            errors_of.insert(id.clone(), record["errors"].to_string());
            let mut patient = record["patient"].clone();
            patient["id"] = Value::String(id.clone());
            stored.push((id, patient));
        }
    }

    let identity = Identity::with_defaults("http://localhost/fhir");
    // The best grade each unordered pair got (from either side).
    let mut graded: HashMap<(String, String), Grade> = HashMap::new();
    let mut detail: HashMap<(String, String), String> = HashMap::new();
    let started = std::time::Instant::now();
    for (id, patient) in &stored {
        for found in identity.find(&access, &MatchRequest::of(patient.clone())).unwrap().matches {
            let pair = if *id < found.version.id {
                (id.clone(), found.version.id.clone())
            } else {
                (found.version.id.clone(), id.clone())
            };
            let grade = graded.entry(pair.clone()).or_insert(Grade::CertainlyNot);
            *grade = (*grade).min(found.comparison.grade);
            if std::env::var_os("MATCH_DEBUG").is_some() {
                let fields: Vec<String> = found
                    .comparison
                    .fields
                    .iter()
                    .filter(|f| f.weight != 0.0)
                    .map(|f| format!("{}={}:{:.1}", f.field.name(), f.level.name(), f.weight))
                    .collect();
                let line = format!(
                    "[{} w={:.1} {:?} {}]",
                    found.comparison.grade.code(),
                    found.comparison.weight,
                    found.comparison.rule,
                    fields.join(" ")
                );
                detail.entry(pair.clone()).or_default().push_str(&line);
            }
        }
    }
    let per_match = started.elapsed() / stored.len() as u32;

    let mut truth: HashSet<(String, String)> = HashSet::new();
    let mut by_person: BTreeMap<&str, Vec<&String>> = BTreeMap::new();
    for (id, person) in &person_of {
        by_person.entry(person).or_default().push(id);
    }
    for ids in by_person.values() {
        for (i, a) in ids.iter().enumerate() {
            for b in &ids[i + 1..] {
                truth.insert(if a < b { ((*a).clone(), (*b).clone()) } else { ((*b).clone(), (*a).clone()) });
            }
        }
    }
    let tally = |accepted: &dyn Fn(Grade) -> bool| {
        let mut t = Tally::default();
        for (pair, grade) in &graded {
            match (accepted(*grade), truth.contains(pair)) {
                (true, true) => t.true_positive += 1,
                (true, false) => t.false_positive += 1,
                _ => {}
            }
        }
        t.false_negative = truth.iter().filter(|p| !graded.get(*p).is_some_and(|g| accepted(*g))).count();
        t
    };
    let certain = tally(&|g| g == Grade::Certain);
    let probable = tally(&|g| g <= Grade::Probable);
    // What was missed or wrongly certain, for whoever tunes the model.
    for (pair, grade) in &graded {
        if *grade == Grade::Certain && !truth.contains(pair) {
            let why = detail.get(pair).map(String::as_str).unwrap_or("");
            eprintln!("false certain: {} ({}) ~ {} ({}) {why}", pair.0, role_of[&pair.0], pair.1, role_of[&pair.1]);
        }
    }
    if std::env::var_os("MATCH_DEBUG").is_some() {
        for pair in &truth {
            if graded.get(pair) == Some(&Grade::Probable) {
                let key = if role_of[&pair.0] == "duplicate" { &errors_of[&pair.0] } else { &errors_of[&pair.1] };
                eprintln!("probable only: {key} {}", detail.get(pair).map(String::as_str).unwrap_or(""));
            }
        }
        for (pair, grade) in &graded {
            if *grade == Grade::Probable && !truth.contains(pair) {
                eprintln!(
                    "false probable: {} ~ {} {}",
                    role_of[&pair.0],
                    role_of[&pair.1],
                    detail.get(pair).map(String::as_str).unwrap_or("")
                );
            }
        }
    }
    let mut missed: BTreeMap<String, usize> = BTreeMap::new();
    for pair in &truth {
        if graded.get(pair).is_none_or(|g| *g > Grade::Probable) {
            let key = if role_of[&pair.0] == "duplicate" { &errors_of[&pair.0] } else { &errors_of[&pair.1] };
            *missed.entry(key.clone()).or_default() += 1;
        }
    }
    eprintln!("missed (not even probable), by the duplicate's errors: {missed:?}");
    eprintln!(
        "matching quality over {} records, {} true pairs ({per_match:?} per match):\n  certain: precision {:.4} recall {:.4} F1 {:.4} ({} false certain)\n  certain+probable: precision {:.4} recall {:.4} F1 {:.4}",
        stored.len(),
        truth.len(),
        certain.precision(),
        certain.recall(),
        certain.f1(),
        certain.false_positive,
        probable.precision(),
        probable.recall(),
        probable.f1()
    );
    assert_eq!(certain.false_positive, 0, "no pair of different people may be certain");
    // Seeds 7, 11, 23, 31 and 41 gave 0.9932–0.9968 and 0.9929–0.9948 (the goals:
    // 0.99 and 0.97); the floors leave room for another draw, never for a false certain.
    assert!(certain.f1() >= 0.985, "F1 of certain: {:.4}", certain.f1());
    assert!(probable.f1() >= 0.97, "F1 of certain+probable: {:.4}", probable.f1());
}
