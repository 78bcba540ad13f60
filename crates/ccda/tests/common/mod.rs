//! What the integration tests over the Synthea patients share: the 25 bundles as resources
//! with ids (and the chart to write each), xmllint with the CDA + SDTC schema, temp folders.

#![allow(dead_code, reason = "each test binary uses a part of it")]

use ccda::Chart;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use time::macros::datetime;

/// The id of every document written.
pub const DOC_ID: &str = "0b8e9a51-3c2f-4f1e-9a8e-5d2b8c7a6f10";

/// The workspace root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A transaction Bundle as resources: `id` = the entry's uuid, `urn:uuid:X` references
/// rewritten to `Type/X` (conditional references left as they are).
pub fn load(path: &Path) -> Vec<Value> {
    let bundle: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let entries = bundle["entry"].as_array().unwrap();
    let mut types = HashMap::new();
    for e in entries {
        if let Some(uuid) = e["fullUrl"].as_str().and_then(|u| u.strip_prefix("urn:uuid:")) {
            types.insert(uuid.to_owned(), e["resource"]["resourceType"].as_str().unwrap().to_owned());
        }
    }
    fn rewrite(v: &mut Value, types: &HashMap<String, String>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m.iter_mut() {
                    if k == "reference"
                        && let Some(uuid) = x.as_str().and_then(|r| r.strip_prefix("urn:uuid:"))
                        && let Some(t) = types.get(uuid)
                    {
                        *x = Value::String(format!("{t}/{uuid}"));
                    } else {
                        rewrite(x, types);
                    }
                }
            }
            Value::Array(a) => a.iter_mut().for_each(|x| rewrite(x, types)),
            _ => {}
        }
    }
    entries
        .iter()
        .map(|e| {
            let mut r = e["resource"].clone();
            if let Some(uuid) = e["fullUrl"].as_str().and_then(|u| u.strip_prefix("urn:uuid:")) {
                r["id"] = Value::String(uuid.to_owned());
            }
            rewrite(&mut r, &types);
            r
        })
        .collect()
}

/// One Synthea patient: the file's name, its resources, and who makes the document.
pub struct Patient {
    pub name: String,
    pub resources: Vec<Value>,
    pub custodian: Value,
    pub author: Option<Value>,
}

impl Patient {
    pub fn patient(&self) -> &Value {
        self.resources.iter().find(|r| r["resourceType"] == "Patient").unwrap()
    }

    pub fn chart(&self) -> Chart<'_> {
        Chart {
            patient: self.patient(),
            resources: &self.resources,
            custodian: &self.custodian,
            author: self.author.as_ref(),
            document_id: DOC_ID,
            now: datetime!(2026-12-07 10:30:00 -5),
            period: (None, None),
        }
    }

    pub fn of_type(&self, ty: &str) -> impl Iterator<Item = &Value> {
        self.resources.iter().filter(move |r| r["resourceType"] == ty)
    }
}

pub fn default_custodian() -> Value {
    json!({
        "resourceType": "Organization",
        "id": "continuum",
        "identifier": [{"system": "urn:oid:2.16.840.1.113883.3.9999", "value": "1"}],
        "name": "Continuum Test Clinic",
        "telecom": [{"system": "phone", "value": "+1 555 0100", "use": "work"}],
        "address": [{"line": ["1 Main St"], "city": "Boston", "state": "MA", "postalCode": "02110", "country": "US"}]
    })
}

/// The 25 Synthea patients, in file order.
pub fn patients() -> Vec<Patient> {
    let mut files: Vec<PathBuf> = ["testdata/synthea/smart-2019", "testdata/synthea/synthea-v3"]
        .iter()
        .flat_map(|d| std::fs::read_dir(repo().join(d)).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let resources = load(&f);
        if !resources.iter().any(|r| r["resourceType"] == "Patient") {
            continue;
        }
        let custodian =
            resources.iter().find(|r| r["resourceType"] == "Organization").cloned().unwrap_or_else(default_custodian);
        let author = resources.iter().find(|r| r["resourceType"] == "Practitioner").cloned();
        out.push(Patient { name: f.file_stem().unwrap().to_string_lossy().into_owned(), resources, custodian, author });
    }
    assert_eq!(out.len(), 25, "the 25 Synthea patients");
    out
}

/// Runs xmllint with the CDA + SDTC schema over `files` at once; fails loudly without it.
pub fn xmllint(files: &[PathBuf]) {
    let schema = repo().join("testdata/ccda/cda-schema-sdtc/infrastructure/cda/CDA_SDTC.xsd");
    let out = Command::new("xmllint").arg("--noout").arg("--schema").arg(&schema).args(files).output();
    let out = match out {
        Ok(o) => o,
        Err(e) => {
            panic!("xmllint could not be run ({e}): install it (Debian/Ubuntu: apt-get install -y libxml2-utils)")
        }
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    let failures: Vec<&str> = stderr.lines().filter(|l| !l.ends_with(" validates")).take(40).collect();
    assert!(out.status.success() && failures.is_empty(), "schema validation failed:\n{}", failures.join("\n"));
    let validated = stderr.lines().filter(|l| l.ends_with(" validates")).count();
    assert_eq!(validated, files.len());
}

/// A fresh folder `ccda-{name}-{pid}` under the system's temp folder.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ccda-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Whether a resource has a category coding of `code`.
pub fn category(r: &Value, code: &str) -> bool {
    r["category"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["coding"].as_array().into_iter().flatten())
        .any(|c| c["code"] == code)
}
