//! The workspace's layers, checked on the dependency graph cargo resolves (`cargo metadata`):
//! the edges (`server`, the FHIR API; `web`, the clinician app) depend on neither storage
//! backend nor on each other — they reach the record through the door (`access`) and the
//! services; only the binary wires backends and edges together.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a failed check panics, like assert!")]

use serde_json::Value;
use std::collections::{HashMap, HashSet};

/// Package name → the names of the packages it depends on to build (normal and build
/// dependencies, not dev-dependencies), transitively closed on demand.
fn graph() -> (HashMap<String, Vec<String>>, HashMap<String, String>) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.toml");
    let output = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked", "--offline", "--manifest-path", manifest])
        .output()
        .expect("cargo metadata runs");
    assert!(output.status.success(), "cargo metadata failed: {}", String::from_utf8_lossy(&output.stderr));
    let metadata: Value = serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON");
    let names: HashMap<String, String> = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap().to_string(), p["name"].as_str().unwrap().to_string()))
        .collect();
    let mut edges = HashMap::new();
    for node in metadata["resolve"]["nodes"].as_array().unwrap() {
        let deps = node["deps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["dep_kinds"].as_array().unwrap().iter().any(|k| k["kind"].as_str() != Some("dev")))
            .map(|d| d["pkg"].as_str().unwrap().to_string())
            .collect();
        edges.insert(node["id"].as_str().unwrap().to_string(), deps);
    }
    (edges, names)
}

/// Every package `package` needs to build, by name.
fn reaches(package: &str) -> HashSet<String> {
    let (edges, names) = graph();
    let start = names.iter().find(|(_, n)| *n == package).map(|(id, _)| id.clone()).expect("the package exists");
    let mut seen = HashSet::new();
    let mut stack = vec![start];
    while let Some(id) = stack.pop() {
        for dep in edges.get(&id).into_iter().flatten() {
            if seen.insert(dep.clone()) {
                stack.push(dep.clone());
            }
        }
    }
    seen.into_iter().map(|id| names[&id].clone()).collect()
}

#[test]
fn edges_depend_on_neither_backend_nor_on_each_other() {
    for (edge, other) in [("server", "web"), ("web", "server")] {
        let needs = reaches(edge);
        assert!(needs.contains("access"), "{edge} reaches the record through the door");
        for forbidden in ["store-sqlite", "store-postgres", "rusqlite", "postgres", other] {
            assert!(!needs.contains(forbidden), "{edge} must not depend on {forbidden}");
        }
    }
}

#[test]
fn the_binary_wires_backends_and_edges() {
    let needs = reaches("continuum");
    for wired in ["server", "web", "store-sqlite", "store-postgres", "access", "chart"] {
        assert!(needs.contains(wired), "the binary wires {wired}");
    }
}
