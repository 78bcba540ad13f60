//! Validation never panics, whatever the input: official examples with random damage, and
//! hostile shapes.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a failed check panics, like assert!")]

use serde_json::{Map, Value, json};
use std::path::Path;

/// A small deterministic generator (xorshift), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn junk(rng: &mut Rng) -> Value {
    match rng.below(12) {
        0 => Value::Null,
        1 => json!(""),
        2 => json!([]),
        3 => json!({}),
        4 => json!(-0.0e-7),
        5 => json!(" \u{0}\u{202e}é\t"),
        6 => json!([null, {"_": null}]),
        7 => json!({"resourceType": "Patient", "contained": [{"resourceType": "Patient"}]}),
        8 => json!(true),
        9 => json!(99999999999999999999u128.to_string()),
        10 => json!({"extension": [{"url": "#", "valueReference": {"reference": "#"}}]}),
        _ => json!([[[["deep"]]]]),
    }
}

/// Replaces, removes or adds one random node somewhere in `value`.
fn mutate(value: &mut Value, rng: &mut Rng) {
    match value {
        Value::Object(map) if !map.is_empty() && rng.below(4) != 0 => {
            let i = rng.below(map.len());
            let key = map.keys().nth(i).unwrap().clone();
            match rng.below(6) {
                0 => {
                    map.shift_remove(&key);
                }
                1 => {
                    let v = map.shift_remove(&key).unwrap();
                    map.insert(format!("_{key}"), v);
                }
                _ => mutate(map.get_mut(&key).unwrap(), rng),
            }
        }
        Value::Array(items) if !items.is_empty() && rng.below(4) != 0 => {
            let i = rng.below(items.len());
            mutate(&mut items[i], rng);
        }
        _ => *value = junk(rng),
    }
}

#[test]
fn damaged_examples_never_panic() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/fhir-examples/r4-spec");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut with_errors = 0;
    let mut runs = 0;
    let mut names: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    names.sort();
    for path in names.iter().step_by(7) {
        let original: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        if original.get("resourceType").is_none() {
            continue;
        }
        for _ in 0..20 {
            let mut damaged = original.clone();
            for _ in 0..=rng.below(3) {
                mutate(&mut damaged, &mut rng);
            }
            runs += 1;
            if fhir::validate(&damaged).iter().any(fhir::Issue::is_error) {
                with_errors += 1;
            }
        }
    }
    // Most damage is detectable; a removed optional element or a mutated display text is not.
    assert!(with_errors * 2 > runs, "{with_errors} of {runs} damaged resources reported");
}

#[test]
fn hostile_shapes_are_reported() {
    // Built by moving values (json! would re-serialize the growing tree each time).
    let mut deep = json!("leaf");
    for _ in 0..1000 {
        deep = Value::Array(vec![deep]);
    }
    let mut deep_objects = Value::Object(Map::new());
    for _ in 0..1000 {
        let mut parameter = Map::new();
        parameter.insert("name".into(), json!("x"));
        parameter.insert("resource".into(), deep_objects);
        let mut parameters = Map::new();
        parameters.insert("resourceType".into(), json!("Parameters"));
        parameters.insert("parameter".into(), Value::Array(vec![Value::Object(parameter)]));
        deep_objects = Value::Object(parameters);
    }
    let cases = [
        json!(null),
        json!("Patient"),
        json!({"resourceType": "Patient", "name": deep}),
        deep_objects,
        json!({"resourceType": "Patient", "_": {}, "__birthDate": 1, "_resourceType": "x"}),
        json!({"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "Bundle", "entry": [{"resource": null}]}}]}),
        json!({"resourceType": "Patient", "contained": {"resourceType": "Patient"}}),
        json!({"resourceType": "Patient", "contained": [{"resourceType": "Patient", "contained": [{"resourceType": "Patient", "contained": [{}]}]}]}),
    ];
    for case in &cases {
        let issues = fhir::validate(case);
        assert!(issues.iter().any(fhir::Issue::is_error), "no error for {case}");
    }
}
