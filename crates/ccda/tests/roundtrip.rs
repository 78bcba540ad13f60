#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a failed check panics, like assert!")]
//! FHIR → C-CDA → FHIR over the 25 Synthea patients: each patient's CCD is written
//! ([`ccda::write`]), validated by xmllint against the CDA R2 + SDTC schema (all 25 files in
//! one call), read back ([`ccda::read`]), and what was read is compared with the patient's
//! original resources. Per category, the two sides must be the same multiset of items
//! (code system and code, date, and a detail):
//!
//! | Category | Original resources | Read back (by section) | Date | Detail |
//! |---|---|---|---|---|
//! | Problems | Condition on the problem list (category problem-list-item, encounter-diagnosis, or none) | Condition, Problems | onset `/` abatement | clinical / verification status |
//! | Medications | MedicationRequest, MedicationStatement; the code is `medicationCodeableConcept`, else the `medicationReference`d Medication's `code` (RxNorm) | MedicationRequest / MedicationStatement, Medications | MedicationRequest `authoredOn`; MedicationStatement effective start | the resource type, status |
//! | Allergies | AllergyIntolerance | AllergyIntolerance, Allergies | `onsetDateTime` | type, category, criticality, clinical / verification status |
//! | Immunizations | Immunization (CVX) | Immunization, Immunizations | `occurrenceDateTime` | status |
//! | Results | Observation of category `laboratory` (LOINC) | Observation, Results | effective (start) | value (quantity: number and UCUM unit; coded; string), status |
//! | Vital signs | Observation of category `vital-signs` (LOINC); a panel (components, no value) counts as its components | Observation, Vital Signs | effective (start) | value and unit, status |
//!
//! Synthea's four allergies have no onset: for them the date check is that none is invented
//! (the writer used to give the recorded date as the onset); `an_allergy_onset_round_trips_and_none_is_invented`
//! gives three of them an onset (a date; dateTimes with an offset and in UTC) and checks it comes back.
//!
//! A code is every coding of the CodeableConcept (`system|code`, sorted): the writer makes
//! the first coding of a known system the code and the others its translations, the reader
//! makes them codings again.
//!
//! Dates are compared at the precision both sides keep: a date alone as a date; a dateTime
//! (the writer keeps the second and the UTC offset, `YYYYMMDDHHMMSS+ZZZZ`, and the reader
//! turns it back into a dateTime with that offset) as the same instant, both normalised to
//! UTC, to the second.
//!
//! What does not round trip, and why, is in [`NOT_COMPARED`] and printed with the table;
//! blood pressure is the one item compared in another shape than it was given: the panels
//! (LOINC 85354-9, and 55284-4 in the 2019 files) are Observations with systolic (8480-6)
//! and diastolic (8462-4) components and no value; C-CDA has no Vital Sign Observation for
//! a panel, so the writer writes one Vital Sign Observation per component (the panel's date,
//! the component's code and value), and the reader makes one Observation of each. Both
//! sides are compared as those components.

mod common;

use ccda::{DocumentType, SectionKind, read, write};
use common::{Patient, category, patients, xmllint};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

/// What the test knowingly leaves out of the comparison, and why.
const NOT_COMPARED: [(&str, &str); 6] = [
    (
        "blood-pressure panel codes (85354-9, 55284-4)",
        "C-CDA has no Vital Sign Observation for a panel: its components are written and read back \
         as Observations of their own, and compared as those",
    ),
    (
        "Condition.recordedDate, AllergyIntolerance.recordedDate",
        "written as the concern act's effectiveTime/low and as the author time; the reader takes it \
         from the author only, and an author is written only for a recorder (Synthea gives none)",
    ),
    (
        "Observations of category `vital-sign` (2, LV ejection fraction 10230-1)",
        "not a FHIR observation-category code: not a vital sign, and not exported in a CCD",
    ),
    (
        "DiagnosticReports",
        "each becomes a Result Organizer and is read back as a DiagnosticReport; the reports are not \
         compared, their laboratory Observations are",
    ),
    (
        "a medication's dosage (route, dose, timing), an allergy's reactions, an observation's \
         interpretation and reference range",
        "outside the (code, date, detail) compared here; the writer's and reader's own tests cover them",
    ),
    (
        "planned MedicationRequests (intent plan) read back from the Plan of Treatment section",
        "the writer puts an active planned medication in both sections; only the Medications \
         section is compared (Synthea has none)",
    ),
];

/// The six categories compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cat {
    Problems,
    Medications,
    Allergies,
    Immunizations,
    Results,
    VitalSigns,
}

const CATS: [Cat; 6] =
    [Cat::Problems, Cat::Medications, Cat::Allergies, Cat::Immunizations, Cat::Results, Cat::VitalSigns];

impl Cat {
    fn name(self) -> &'static str {
        match self {
            Cat::Problems => "problems",
            Cat::Medications => "meds",
            Cat::Allergies => "allergies",
            Cat::Immunizations => "immunizations",
            Cat::Results => "results",
            Cat::VitalSigns => "vitals",
        }
    }

    /// The section the reader files them under.
    fn section(self) -> SectionKind {
        match self {
            Cat::Problems => SectionKind::Problems,
            Cat::Medications => SectionKind::Medications,
            Cat::Allergies => SectionKind::Allergies,
            Cat::Immunizations => SectionKind::Immunizations,
            Cat::Results => SectionKind::Results,
            Cat::VitalSigns => SectionKind::VitalSigns,
        }
    }

    /// The section's LOINC code (warnings are located by it).
    fn section_loinc(self) -> &'static str {
        match self {
            Cat::Problems => "11450-4",
            Cat::Medications => "10160-0",
            Cat::Allergies => "48765-2",
            Cat::Immunizations => "11369-6",
            Cat::Results => "30954-2",
            Cat::VitalSigns => "8716-3",
        }
    }
}

/// One compared item.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Item {
    codes: String,
    date: String,
    detail: String,
}

type Multiset = BTreeMap<Item, usize>;

fn s<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// Every coding of a CodeableConcept as `system|code`, sorted, joined by ` + `.
fn codes(cc: Option<&Value>) -> String {
    let mut out: Vec<String> = cc
        .and_then(|c| c.get("coding"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| Some(format!("{}|{}", s(c, "system")?, s(c, "code")?)))
        .collect();
    out.sort();
    out.dedup();
    if out.is_empty() { "(no coding)".into() } else { out.join(" + ") }
}

/// A FHIR date as itself, a dateTime as its instant in UTC (to the second); `-` when absent.
fn when(date: Option<&str>) -> String {
    let Some(d) = date else { return "-".into() };
    if d.len() <= 10 {
        return d.to_owned();
    }
    match OffsetDateTime::parse(d, &Rfc3339) {
        Ok(t) => t.to_offset(UtcOffset::UTC).format(&Rfc3339).unwrap(),
        Err(_) => format!("unparsed {d}"),
    }
}

fn number(v: Option<&Value>) -> String {
    match v.and_then(Value::as_f64) {
        Some(x) => format!("{x}"),
        None => "?".into(),
    }
}

/// A Quantity as `number unit`: the UCUM code when the system is UCUM (or none), else the
/// unit text (what the writer puts in `PQ/@unit`; the reader gives it back as the UCUM code).
fn quantity(q: &Value) -> String {
    let ucum = s(q, "system").is_none_or(|x| x == "http://unitsofmeasure.org");
    let unit = if ucum { s(q, "code").or_else(|| s(q, "unit")) } else { s(q, "unit") };
    format!("{} {}", number(q.get("value")), unit.unwrap_or(""))
}

/// An Observation's (or component's) value.
fn value(o: &Value) -> String {
    if let Some(q) = o.get("valueQuantity") {
        quantity(q)
    } else if let Some(cc) = o.get("valueCodeableConcept") {
        codes(Some(cc))
    } else if let Some(t) = s(o, "valueString") {
        format!("{t:?}")
    } else if let Some(i) = o.get("valueInteger") {
        number(Some(i))
    } else if let Some(b) = o.get("valueBoolean").and_then(Value::as_bool) {
        b.to_string()
    } else {
        "(no value)".into()
    }
}

/// `clinicalStatus/verificationStatus` codes.
fn statuses(r: &Value) -> String {
    let first = |k: &str| {
        r.get(k)
            .and_then(|c| c.get("coding"))
            .and_then(|c| c.get(0))
            .and_then(|c| s(c, "code"))
            .unwrap_or("-")
            .to_owned()
    };
    format!("{}/{}", first("clinicalStatus"), first("verificationStatus"))
}

fn status(r: &Value) -> String {
    format!("[{}]", s(r, "status").unwrap_or("-"))
}

fn observation_time(o: &Value) -> Option<&str> {
    s(o, "effectiveDateTime")
        .or_else(|| s(o, "effectiveInstant"))
        .or_else(|| o.get("effectivePeriod").and_then(|p| s(p, "start")))
}

fn has_value(o: &Value) -> bool {
    o.as_object().is_some_and(|m| m.keys().any(|k| k.starts_with("value")))
}

/// The items of `cat` among `resources` (already those of the category); `resolve` finds a
/// referenced resource (the original side's Medications).
fn items<'a>(cat: Cat, resources: &[&'a Value], resolve: &dyn Fn(&Value) -> Option<&'a Value>) -> Multiset {
    let mut out = Multiset::new();
    let mut add = |codes: String, date: String, detail: String| {
        *out.entry(Item { codes, date, detail }).or_default() += 1;
    };
    for &r in resources {
        match cat {
            Cat::Problems => {
                let onset = s(r, "onsetDateTime").or_else(|| r.get("onsetPeriod").and_then(|p| s(p, "start")));
                let abated = s(r, "abatementDateTime").or_else(|| r.get("abatementPeriod").and_then(|p| s(p, "end")));
                add(codes(r.get("code")), format!("{} / {}", when(onset), when(abated)), statuses(r));
            }
            Cat::Medications => {
                let code = r
                    .get("medicationCodeableConcept")
                    .or_else(|| r.get("medicationReference").and_then(resolve).and_then(|m| m.get("code")));
                let ty = s(r, "resourceType").unwrap_or("");
                let date = if ty == "MedicationStatement" {
                    s(r, "effectiveDateTime").or_else(|| r.get("effectivePeriod").and_then(|p| s(p, "start")))
                } else {
                    s(r, "authoredOn")
                };
                add(codes(code), when(date), format!("{ty} {}", s(r, "status").unwrap_or("-")));
            }
            Cat::Allergies => {
                let category: Vec<&str> = r
                    .get("category")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                let detail = format!(
                    "{} {} {} {}",
                    s(r, "type").unwrap_or("-"),
                    category.join(","),
                    s(r, "criticality").unwrap_or("-"),
                    statuses(r)
                );
                add(codes(r.get("code")), when(s(r, "onsetDateTime")), detail);
            }
            Cat::Immunizations => {
                add(
                    codes(r.get("vaccineCode")),
                    when(s(r, "occurrenceDateTime")),
                    s(r, "status").unwrap_or("-").to_owned(),
                );
            }
            Cat::Results => add(codes(r.get("code")), when(observation_time(r)), format!("{} {}", value(r), status(r))),
            Cat::VitalSigns => {
                let components = r.get("component").and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
                if !has_value(r) && !components.is_empty() {
                    for c in components {
                        add(codes(c.get("code")), when(observation_time(r)), format!("{} {}", value(c), status(r)));
                    }
                } else {
                    add(codes(r.get("code")), when(observation_time(r)), format!("{} {}", value(r), status(r)));
                }
            }
        }
    }
    out
}

/// The original resources of `cat`.
fn original(p: &Patient, cat: Cat) -> Vec<&Value> {
    let of = |ty: &str| p.of_type(ty).collect::<Vec<_>>();
    match cat {
        Cat::Problems => of("Condition")
            .into_iter()
            .filter(|c| {
                c.get("category").and_then(Value::as_array).is_none_or(Vec::is_empty)
                    || category(c, "problem-list-item")
                    || category(c, "encounter-diagnosis")
            })
            .collect(),
        Cat::Medications => {
            let mut v = of("MedicationRequest");
            v.extend(of("MedicationStatement"));
            v
        }
        Cat::Allergies => of("AllergyIntolerance"),
        Cat::Immunizations => of("Immunization"),
        Cat::Results => of("Observation").into_iter().filter(|o| category(o, "laboratory")).collect(),
        Cat::VitalSigns => of("Observation").into_iter().filter(|o| category(o, "vital-signs")).collect(),
    }
}

/// The resource types the reader makes for `cat`.
fn read_types(cat: Cat) -> &'static [&'static str] {
    match cat {
        Cat::Problems => &["Condition"],
        Cat::Medications => &["MedicationRequest", "MedicationStatement"],
        Cat::Allergies => &["AllergyIntolerance"],
        Cat::Immunizations => &["Immunization"],
        Cat::Results | Cat::VitalSigns => &["Observation"],
    }
}

/// The resources of `cat` read back: those the reader made from the category's section.
fn read_back(doc: &ccda::Document, cat: Cat) -> Vec<&Value> {
    doc.resources
        .iter()
        .filter(|m| m.section == Some(cat.section()))
        .map(|m| &m.resource)
        .filter(|r| s(r, "resourceType").is_some_and(|t| read_types(cat).contains(&t)))
        .collect()
}

/// `a` less `b`, as a multiset.
fn minus(a: &Multiset, b: &Multiset) -> Vec<(Item, usize)> {
    a.iter()
        .filter_map(|(k, n)| {
            let m = b.get(k).copied().unwrap_or(0);
            (*n > m).then(|| (k.clone(), n - m))
        })
        .collect()
}

fn total(m: &Multiset) -> usize {
    m.values().sum()
}

#[test]
fn every_synthea_patient_round_trips_through_a_ccd() {
    let all = patients();
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("roundtrip");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut files = Vec::new();
    let mut documents = Vec::new();
    for p in &all {
        let xml = write(&p.chart(), DocumentType::Ccd).unwrap_or_else(|e| panic!("{}: {e}", p.name));
        let f = dir.join(format!("{}.xml", p.name));
        std::fs::write(&f, &xml).unwrap();
        files.push(f);
        documents.push(xml);
    }
    // All 25 in one xmllint call.
    xmllint(&files);

    let mut failures = String::new();
    let mut table = String::new();
    let short = |name: &str| name.split('_').take(2).collect::<Vec<_>>().join(" ");
    write!(table, "{:<28}", "patient").unwrap();
    for c in CATS {
        write!(table, " {:>14}", c.name()).unwrap();
    }
    writeln!(table, " {:>9}", "warnings").unwrap();
    let mut sums = [0usize; 6];
    for (p, xml) in all.iter().zip(&documents) {
        let doc = read(xml.as_bytes()).unwrap_or_else(|e| panic!("{}: the CCD written is not read: {e}", p.name));
        assert_eq!(doc.template, ccda::DocumentTemplate::Ccd, "{}", p.name);
        assert!(doc.r2, "{}: R2.1 templates", p.name);
        let resolve = |r: &Value| -> Option<&Value> {
            let (ty, id) = s(r, "reference")?.split_once('/')?;
            p.resources.iter().find(|x| s(x, "resourceType") == Some(ty) && s(x, "id") == Some(id))
        };
        let no_resolve = |_: &Value| -> Option<&Value> { None };
        write!(table, "{:<28}", short(&p.name)).unwrap();
        for (i, cat) in CATS.into_iter().enumerate() {
            let expected = items(cat, &original(p, cat), &resolve);
            let got = items(cat, &read_back(&doc, cat), &no_resolve);
            let (n, m) = (total(&expected), total(&got));
            sums[i] += n;
            let ok = expected == got;
            let cell = if ok { format!("{n}") } else { format!("{n}≠{m} ✗") };
            write!(table, " {cell:>14}").unwrap();
            if !ok {
                writeln!(failures, "{} {}: {n} in FHIR, {m} read back", p.name, cat.name()).unwrap();
                for (item, k) in minus(&expected, &got).into_iter().take(8) {
                    writeln!(failures, "    lost ×{k}: {item:?}").unwrap();
                }
                for (item, k) in minus(&got, &expected).into_iter().take(8) {
                    writeln!(failures, "    new  ×{k}: {item:?}").unwrap();
                }
            }
        }
        let warnings: Vec<_> = doc
            .warnings
            .iter()
            .filter(|w| CATS.iter().any(|c| w.location.starts_with(&format!("{} ", c.section_loinc()))))
            .collect();
        writeln!(table, " {:>9}", doc.warnings.len()).unwrap();
        for w in warnings {
            writeln!(failures, "{}: a warning in a compared section: {} — {}", p.name, w.location, w.message).unwrap();
        }
    }
    write!(table, "{:<28}", "total").unwrap();
    for n in sums {
        write!(table, " {n:>14}").unwrap();
    }
    table.push('\n');
    eprintln!("\nFHIR → CCD → FHIR, items per category (n: the same n read back; a≠b: a in FHIR, b read back)");
    eprint!("{table}");
    eprintln!("Not compared:");
    for (what, why) in NOT_COMPARED {
        eprintln!("  - {what}: {why}");
    }
    assert!(failures.is_empty(), "what did not round trip:\n{failures}");
    // Each category has something to compare across the 25 patients.
    assert!(sums.iter().all(|n| *n > 0), "{sums:?}");
}

/// Synthea's allergies have no onset: given one (a date, and a dateTime with an offset), it
/// comes back as the same date and instant; without one, none is invented (the recorded
/// date is not the onset).
#[test]
fn an_allergy_onset_round_trips_and_none_is_invented() {
    let all = patients();
    let p = all.iter().find(|p| p.name.starts_with("Rosie394")).unwrap();
    let mut resources = p.resources.clone();
    let onsets = ["2001-02-03", "1999-05-06T07:08:09-04:00", "2010-11-12T13:14:15Z"];
    let mut n = 0;
    for r in resources.iter_mut().filter(|r| r["resourceType"] == "AllergyIntolerance") {
        if let Some(onset) = onsets.get(n) {
            r["onsetDateTime"] = Value::String((*onset).to_owned());
        }
        n += 1;
    }
    assert!(n > onsets.len(), "one allergy is left without an onset");
    let changed = Patient { name: p.name.clone(), resources, custodian: p.custodian.clone(), author: p.author.clone() };
    let xml = write(&changed.chart(), DocumentType::Ccd).unwrap();
    let doc = read(xml.as_bytes()).unwrap();
    let resolve = |_: &Value| -> Option<&Value> { None };
    let want = items(Cat::Allergies, &original(&changed, Cat::Allergies), &resolve);
    let got = items(Cat::Allergies, &read_back(&doc, Cat::Allergies), &resolve);
    assert_eq!(want, got);
    let dates: Vec<&str> = want.keys().map(|i| i.date.as_str()).collect();
    for d in ["2001-02-03", "1999-05-06T11:08:09Z", "2010-11-12T13:14:15Z", "-"] {
        assert!(dates.contains(&d), "{d} in {dates:?}");
    }
}
