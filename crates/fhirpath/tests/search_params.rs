//! Every official R4 SearchParameter expression compiles, and evaluates without error against
//! every official example resource of its base type (and the resources inside example Bundles).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a failed check panics, like assert!")]

use fhirpath::{Environment, Expression};
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;

fn examples() -> Vec<(String, Value)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/fhir-examples");
    let mut out = Vec::new();
    for dir in ["r4-spec", "fhir-test-cases"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "json") && !path.ends_with("_package-manifest.json") {
                let text = std::fs::read_to_string(&path).expect("readable example");
                if let Ok(json) = serde_json::from_str::<Value>(&text)
                    && json.get("resourceType").is_some()
                {
                    out.push((path.file_name().unwrap_or_default().to_string_lossy().into_owned(), json));
                }
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn every_official_search_parameter_expression_compiles() {
    let text = include_str!("../../fhir/definitions/search-parameters.json");
    let bundle: Value = serde_json::from_str(text).expect("search parameters JSON");
    let mut count = 0;
    let mut failures = Vec::new();
    for entry in bundle["entry"].as_array().expect("entries") {
        let param = &entry["resource"];
        count += 1;
        if let Some(expr) = param.get("expression").and_then(Value::as_str)
            && let Err(e) = Expression::compile(expr)
        {
            failures.push(format!("{}: {expr}: {e}", param["id"]));
        }
    }
    assert_eq!(count, 1375, "the R4 SearchParameter bundle");
    assert!(failures.is_empty(), "{} expressions do not compile:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn search_parameters_evaluate_over_the_official_examples() {
    let defs = fhir::definitions();
    let mut compiled: HashMap<String, Vec<(String, Expression)>> = HashMap::new();
    let mut compile_for = |t: &str| -> Vec<(String, Expression)> {
        compiled
            .entry(t.to_owned())
            .or_insert_with(|| {
                defs.search_params(t)
                    .iter()
                    .filter_map(|p| {
                        let expr = p.expression.as_deref()?;
                        Some((p.name.clone(), Expression::compile(expr).expect("compiles")))
                    })
                    .collect()
            })
            .clone()
    };
    let mut failures = Vec::new();
    let mut evaluations = 0usize;
    let mut values = 0usize;
    let examples = examples();
    assert!(examples.len() > 700, "the official examples are present");
    for (file, resource) in &examples {
        let mut targets: Vec<(&Value, Option<&Value>)> = vec![(resource, None)];
        if resource["resourceType"] == "Bundle"
            && let Some(entries) = resource["entry"].as_array()
        {
            targets.extend(entries.iter().filter_map(|e| e.get("resource")).map(|r| (r, Some(resource))));
        }
        for (target, bundle) in targets {
            let Some(t) = target["resourceType"].as_str() else { continue };
            let mut env = Environment::new(target);
            if let Some(b) = bundle {
                env = env.with_bundle(b);
            }
            for (name, expr) in compile_for(t) {
                evaluations += 1;
                match expr.evaluate_with(&env) {
                    Ok(items) => values += items.len(),
                    Err(e) => failures.push(format!("{file} {t}.{name}: {}: {e}", expr.source())),
                }
            }
        }
    }
    println!("{evaluations} evaluations, {values} values");
    assert!(failures.is_empty(), "{} evaluations failed:\n{}", failures.len(), failures.join("\n"));
}
