//! The Synthea sample in `testdata/synthea`, and larger populations made from it. Patient `k`
//! is template `k mod T` replicated with fresh ids (every `urn:uuid:` of the bundle, and the
//! identifiers that repeat it), unique Patient identifiers, a numbered family name and all
//! dates shifted back by a per-copy number of days. Deterministic for a seed; one bundle is
//! built at a time, from the templates' text.
//!
//! Every hundredth patient (copy 20, 120, …) carries three lifetimes of its template's records
//! under one Patient, so that any set of 100 or more has patients with 2,000+ resources.

use regex::Regex;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

/// The repository's Synthea sample.
pub const SAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/synthea");

/// Why a population cannot be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScaleError {
    /// The sample is not where the repository keeps it.
    #[error("no Synthea data at {0}; pass --synthea DIR")]
    NoSample(PathBuf),
    /// A template folder or file cannot be read.
    #[error("cannot read {path}")]
    Read {
        /// The folder or file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// No file under the folders holds a Patient.
    #[error("no Synthea patient bundles found")]
    NoTemplates,
    /// A template is not JSON.
    #[error("a Synthea template is not JSON")]
    Json(#[from] serde_json::Error),
}

/// The sample's two folders (SMART's 2019 sample and Synthea v3's), to scale from.
pub fn sample_folders() -> Result<Vec<PathBuf>, ScaleError> {
    let root = PathBuf::from(SAMPLE);
    if !root.is_dir() {
        return Err(ScaleError::NoSample(root));
    }
    Ok(vec![root.join("smart-2019"), root.join("synthea-v3")])
}

/// `folders` when any are given, else the sample's.
pub fn sample_or(folders: &[PathBuf]) -> Result<Vec<PathBuf>, ScaleError> {
    if folders.is_empty() { sample_folders() } else { Ok(folders.to_vec()) }
}

/// Synthea writes the organizations and practitioners its patient bundles point at into
/// these two files; they must be loaded first.
pub fn is_shared_reference_data(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name.starts_with("hospitalInformation") || name.starts_with("practitionerInformation")
}

/// The seed `continuum-bench search` builds its stores with.
pub const DEFAULT_SEED: u64 = 2019;

/// Copies `k` with `k % HEAVY_EVERY == HEAVY_AT` get `HEAVY_LIFETIMES` lifetimes of records.
const HEAVY_EVERY: usize = 100;
const HEAVY_AT: usize = 20;
const HEAVY_LIFETIMES: usize = 3;

/// Whether patient `k` carries several lifetimes of records.
pub fn is_heavy(k: usize) -> bool {
    k % HEAVY_EVERY == HEAVY_AT
}

/// The templates and the rules that turn them into copies.
pub struct Scaler {
    templates: Vec<String>,
    shared: Vec<PathBuf>,
    seed: u64,
}

impl Scaler {
    /// Reads the patient bundles under `roots` (their text only); Synthea's shared
    /// `practitionerInformation` / `hospitalInformation` files are set apart, to load first.
    pub fn new(roots: &[PathBuf], seed: u64) -> Result<Self, ScaleError> {
        let mut files = Vec::new();
        for root in roots {
            if root.is_dir() {
                let unreadable = |source| ScaleError::Read { path: root.clone(), source };
                let mut entries: Vec<PathBuf> = std::fs::read_dir(root)
                    .map_err(unreadable)?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|e| e == "json"))
                    .collect();
                entries.sort();
                files.extend(entries);
            } else {
                files.push(root.clone());
            }
        }
        let (shared, patients): (Vec<PathBuf>, Vec<PathBuf>) =
            files.into_iter().partition(|f| is_shared_reference_data(f));
        let mut templates = Vec::new();
        for path in &patients {
            let text =
                std::fs::read_to_string(path).map_err(|source| ScaleError::Read { path: path.clone(), source })?;
            if text.contains("\"Patient\"") {
                templates.push(text);
            }
        }
        if templates.is_empty() {
            return Err(ScaleError::NoTemplates);
        }
        Ok(Scaler { templates, shared, seed })
    }

    /// The files every copy may reference, unchanged.
    pub fn shared(&self) -> &[PathBuf] {
        &self.shared
    }

    /// The transaction Bundle of patient `k`.
    pub fn bundle(&self, k: usize) -> Result<Value, ScaleError> {
        let template: Value = serde_json::from_str(&self.templates[k % self.templates.len()])?;
        let lifetimes = if is_heavy(k) { HEAVY_LIFETIMES } else { 1 };
        let mut entries = Vec::new();
        let mut patient_ids = HashMap::new();
        for life in 0..lifetimes {
            let copy = Copy::new(self.seed, k, life, &template, &mut patient_ids);
            for entry in template.get("entry").and_then(Value::as_array).into_iter().flatten() {
                let is_patient = entry.pointer("/resource/resourceType").and_then(Value::as_str) == Some("Patient");
                if is_patient && life > 0 {
                    continue;
                }
                let mut entry = copy.rewrite(entry);
                if is_patient && let Some(patient) = entry.get_mut("resource") {
                    copy.vary_patient(patient);
                }
                entries.push(entry);
            }
        }
        let mut bundle = Map::new();
        for (key, value) in template.as_object().into_iter().flatten() {
            if key != "entry" {
                bundle.insert(key.clone(), value.clone());
            }
        }
        bundle.insert("entry".into(), Value::Array(entries));
        Ok(Value::Object(bundle))
    }
}

/// One lifetime of one copy: its uuid map and date shift.
struct Copy {
    k: usize,
    uuids: HashMap<String, String>,
    shift_days: i64,
}

impl Copy {
    /// The uuids of `template`'s entries mapped to fresh ones; the Patient's uuid is shared by
    /// all lifetimes of copy `k` (through `patient_ids`).
    fn new(seed: u64, k: usize, life: usize, template: &Value, patient_ids: &mut HashMap<String, String>) -> Self {
        let mut uuids = HashMap::new();
        let key = mix(seed ^ mix(k as u64) ^ mix((life as u64) << 32));
        for entry in template.get("entry").and_then(Value::as_array).into_iter().flatten() {
            let Some(old) = entry.get("fullUrl").and_then(Value::as_str).and_then(|u| u.strip_prefix("urn:uuid:"))
            else {
                continue;
            };
            let fresh = fresh_uuid(key, old);
            let is_patient = entry.pointer("/resource/resourceType").and_then(Value::as_str) == Some("Patient");
            let fresh = if is_patient { patient_ids.entry(old.to_string()).or_insert(fresh).clone() } else { fresh };
            uuids.insert(old.to_string(), fresh);
        }
        let shift_days = 61 + (mix(seed ^ mix(k as u64 + 1)) % 3650) as i64 - 30 * life as i64;
        Copy { k, uuids, shift_days }
    }

    fn rewrite(&self, value: &Value) -> Value {
        match value {
            Value::String(s) => Value::String(self.rewrite_str(s)),
            Value::Array(items) => Value::Array(items.iter().map(|v| self.rewrite(v)).collect()),
            Value::Object(fields) => Value::Object(fields.iter().map(|(k, v)| (k.clone(), self.rewrite(v))).collect()),
            other => other.clone(),
        }
    }

    fn rewrite_str(&self, s: &str) -> String {
        if let Some(shifted) = shift_date(s, self.shift_days) {
            return shifted;
        }
        replace_uuids(s, &self.uuids)
    }

    /// Unique identifier values (same systems) and a family name numbered like Synthea's.
    fn vary_patient(&self, patient: &mut Value) {
        for identifier in patient.get_mut("identifier").and_then(Value::as_array_mut).into_iter().flatten() {
            if let Some(Value::String(value)) = identifier.get_mut("value")
                && !self.uuids.values().any(|fresh| value.contains(fresh.as_str()))
            {
                value.push_str(&format!("-{}", self.k));
            }
        }
        for name in patient.get_mut("name").and_then(Value::as_array_mut).into_iter().flatten() {
            if let Some(Value::String(family)) = name.get_mut("family") {
                *family = format!("{}{:04}", family.trim_end_matches(|c: char| c.is_ascii_digit()), self.k);
            }
        }
    }
}

/// SplitMix64's finaliser: a well-mixed 64-bit hash of `x`.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A version-4-shaped uuid derived from `key` and the old uuid.
fn fresh_uuid(key: u64, old: &str) -> String {
    let mut h = key;
    for byte in old.bytes() {
        h = mix(h ^ u64::from(byte));
    }
    let (a, b) = (mix(h ^ 1), mix(h ^ 2));
    let hex = format!("{a:016x}{b:016x}");
    format!("{}-{}-4{}-8{}-{}", &hex[0..8], &hex[8..12], &hex[13..16], &hex[17..20], &hex[20..32])
}

/// `s` with every uuid of `map` in it replaced.
fn replace_uuids(s: &str, map: &HashMap<String, String>) -> String {
    const LEN: usize = 36;
    let bytes = s.as_bytes();
    if bytes.len() < LEN {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let (mut i, mut copied) = (0, 0);
    while i + LEN <= bytes.len() {
        if looks_like_uuid(&bytes[i..i + LEN])
            && let Some(fresh) = map.get(&s[i..i + LEN])
        {
            out.push_str(&s[copied..i]);
            out.push_str(fresh);
            i += LEN;
            copied = i;
        } else {
            i += 1;
        }
    }
    out.push_str(&s[copied..]);
    out
}

fn looks_like_uuid(b: &[u8]) -> bool {
    b.iter().enumerate().all(|(i, c)| if matches!(i, 8 | 13 | 18 | 23) { *c == b'-' } else { c.is_ascii_hexdigit() })
}

/// A FHIR date, dateTime or instant with at least a month: the date part, and the rest (time
/// and zone) kept as written.
static FHIR_DATE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(\d{4})-(\d{2})(?:-(\d{2})(T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2})?)?)?$")
        .unwrap_or_else(|e| unreachable!("constant regex: {e}"))
});

/// `s` moved `days` back if it is a date of month precision or finer, at its own precision.
fn shift_date(s: &str, days: i64) -> Option<String> {
    if s.len() < 7 || !s.as_bytes()[0].is_ascii_digit() {
        return None;
    }
    let captures = FHIR_DATE.captures(s)?;
    let year: i32 = captures[1].parse().ok()?;
    let month = time::Month::try_from(captures[2].parse::<u8>().ok()?).ok()?;
    let day = captures.get(3).map(|d| d.as_str().parse::<u8>()).transpose().ok()?;
    let date = time::Date::from_calendar_date(year, month, day.unwrap_or(15)).ok()?;
    let shifted = date.checked_sub(time::Duration::days(days))?;
    let (y, m, d) = (shifted.year(), u8::from(shifted.month()), shifted.day());
    if !(0..=9999).contains(&y) {
        return None;
    }
    Some(match day {
        Some(_) => format!("{y:04}-{m:02}-{d:02}{}", captures.get(4).map_or("", |t| t.as_str())),
        None => format!("{y:04}-{m:02}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_keep_precision_and_zone() {
        assert_eq!(shift_date("2019-03-01", 1).as_deref(), Some("2019-02-28"));
        assert_eq!(shift_date("2019-03", 31).as_deref(), Some("2019-02"));
        assert_eq!(shift_date("1981-11-20T14:25:45+05:30", 365).as_deref(), Some("1980-11-20T14:25:45+05:30"));
        assert_eq!(shift_date("2020-01-01T00:00:00.123Z", 1).as_deref(), Some("2019-12-31T00:00:00.123Z"));
        assert_eq!(shift_date("1990", 400), None);
        assert_eq!(shift_date("999-77-3783", 3), None);
        assert_eq!(shift_date("2019-13-01", 3), None);
    }

    #[test]
    fn uuids_are_replaced_where_they_occur() {
        let old = "53917de0-aa0c-0700-105a-4f7f893c62f6";
        let map = HashMap::from([(old.to_string(), fresh_uuid(7, old))]);
        let fresh = &map[old];
        assert!(looks_like_uuid(fresh.as_bytes()) && fresh != old);
        assert_eq!(replace_uuids(&format!("urn:uuid:{old}"), &map), format!("urn:uuid:{fresh}"));
        let other =
            "Location?identifier=https://github.com/synthetichealth/synthea|044ef112-a176-3686-8385-f2af139c51bd";
        assert_eq!(replace_uuids(other, &map), other);
    }

    #[test]
    fn copies_are_fresh_consistent_and_deterministic() {
        let roots = sample_folders().unwrap();
        let scaler = Scaler::new(&roots, 1).unwrap();
        let a = scaler.bundle(3).unwrap();
        assert_eq!(a, scaler.bundle(3).unwrap());
        let b = scaler.bundle(3 + scaler.templates.len()).unwrap();
        let full_urls = |bundle: &Value| -> Vec<String> {
            bundle["entry"].as_array().unwrap().iter().map(|e| e["fullUrl"].as_str().unwrap().to_string()).collect()
        };
        let (urls_a, urls_b) = (full_urls(&a), full_urls(&b));
        assert!(urls_a.iter().all(|u| !urls_b.contains(u)));
        // Every urn:uuid reference points at an entry of the same bundle.
        let text = a.to_string();
        for found in text.match_indices("urn:uuid:") {
            let uuid = &text[found.0..found.0 + 45];
            assert!(urls_a.iter().any(|u| u == uuid), "dangling {uuid}");
        }
        let heavy = scaler.bundle(HEAVY_AT).unwrap();
        let patients = heavy["entry"].as_array().unwrap().iter().filter(|e| e["resource"]["resourceType"] == "Patient");
        assert_eq!(patients.count(), 1);
    }
}
