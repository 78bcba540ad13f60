//! The workspace's layers, checked on the dependencies its manifests declare (`cargo
//! metadata`): the edges (`server`, the FHIR API; `web`, the clinician app; `hl7-interface`,
//! HL7 v2 over MLLP) depend on neither storage backend nor on each other — they reach the
//! record through the door (`access`) and the services; only the binary wires backends and
//! edges together.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a failed check panics, like assert!")]

use serde_json::Value;
use std::collections::{HashMap, HashSet};

/// Each workspace member → the names of what it depends on to build (normal and build
/// dependencies, not dev-dependencies), as its manifest declares them. Read with `--no-deps`:
/// no package outside the workspace need be downloaded (a fresh machine has only those of its
/// own platform), and the layers are the workspace's own crates.
fn graph() -> HashMap<String, Vec<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.toml");
    let output = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline", "--manifest-path", manifest])
        .output()
        .expect("cargo metadata runs");
    assert!(output.status.success(), "cargo metadata failed: {}", String::from_utf8_lossy(&output.stderr));
    let metadata: Value = serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON");
    metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|package| {
            let deps = package["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["kind"].as_str() != Some("dev"))
                .map(|d| d["name"].as_str().unwrap().to_string())
                .collect();
            (package["name"].as_str().unwrap().to_string(), deps)
        })
        .collect()
}

/// Every package `package` needs to build, by name: the workspace members it reaches, and
/// what each of them declares.
fn reaches(package: &str) -> HashSet<String> {
    let graph = graph();
    assert!(graph.contains_key(package), "the package {package} exists");
    let mut seen = HashSet::new();
    let mut stack = vec![package.to_string()];
    while let Some(name) = stack.pop() {
        for dep in graph.get(&name).into_iter().flatten() {
            if seen.insert(dep.clone()) {
                stack.push(dep.clone());
            }
        }
    }
    seen
}

#[test]
fn edges_depend_on_neither_backend_nor_on_each_other() {
    let edges = ["server", "web", "hl7-interface"];
    for edge in edges {
        let needs = reaches(edge);
        assert!(needs.contains("access"), "{edge} reaches the record through the door");
        for forbidden in ["store-sqlite", "store-postgres", "rusqlite", "postgres"] {
            assert!(!needs.contains(forbidden), "{edge} must not depend on {forbidden}");
        }
        for other in edges.iter().filter(|e| **e != edge) {
            assert!(!needs.contains(*other), "{edge} must not depend on {other}");
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
