#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests: a failed unwrap is a failed test")]
//! The writer against the Synthea test patients: well-formed, schema-valid (xmllint with the
//! CDA R2 + SDTC schema), the sections each type requires, narrative references that resolve,
//! one entry per resource, escaping, determinism, the period, and the time taken.

mod common;

use ccda::{Chart, DocumentType, write};
use common::{DOC_ID, Patient, category, default_custodian, patients, xmllint};
use serde_json::json;
use std::collections::HashSet;
use std::time::Instant;
use time::macros::datetime;

fn temp_dir(name: &str) -> std::path::PathBuf {
    common::temp_dir(&format!("write-{name}"))
}

const TYPES: [DocumentType; 3] = [DocumentType::Ccd, DocumentType::Referral, DocumentType::Discharge];

fn required(kind: DocumentType) -> &'static [&'static str] {
    match kind {
        DocumentType::Ccd => &[
            "2.16.840.1.113883.10.20.22.2.6.1",
            "2.16.840.1.113883.10.20.22.2.1.1",
            "2.16.840.1.113883.10.20.22.2.5.1",
            "2.16.840.1.113883.10.20.22.2.3.1",
            "2.16.840.1.113883.10.20.22.2.17",
            "2.16.840.1.113883.10.20.22.2.4.1",
        ],
        DocumentType::Referral => &[
            "1.3.6.1.4.1.19376.1.5.3.1.3.1",
            "2.16.840.1.113883.10.20.22.2.6.1",
            "2.16.840.1.113883.10.20.22.2.1.1",
            "2.16.840.1.113883.10.20.22.2.5.1",
            "2.16.840.1.113883.10.20.22.2.10",
        ],
        DocumentType::Discharge => &[
            "2.16.840.1.113883.10.20.22.2.6.1",
            "1.3.6.1.4.1.19376.1.5.3.1.3.5",
            "2.16.840.1.113883.10.20.22.2.24",
            "2.16.840.1.113883.10.20.22.2.11.1",
            "2.16.840.1.113883.10.20.22.2.10",
        ],
    }
}

fn is(n: &roxmltree::Node<'_, '_>, name: &str) -> bool {
    n.is_element() && n.tag_name().name() == name
}

/// The templateId roots of each section.
fn section_templates(doc: &roxmltree::Document<'_>) -> Vec<String> {
    doc.descendants()
        .filter(|n| is(n, "section"))
        .filter_map(|s| s.children().find(|c| is(c, "templateId")))
        .filter_map(|t| t.attribute("root").map(str::to_owned))
        .collect()
}

/// Checks the document's structure: header, required sections, references into the
/// narrative.
fn check_structure(xml: &str, kind: DocumentType, who: &str) {
    let doc = roxmltree::Document::parse(xml).unwrap_or_else(|e| panic!("{who} {kind:?}: not well-formed: {e}"));
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "ClinicalDocument");
    let templates: Vec<(&str, Option<&str>)> = root
        .children()
        .filter(|c| is(c, "templateId"))
        .map(|t| (t.attribute("root").unwrap(), t.attribute("extension")))
        .collect();
    assert!(templates.contains(&("2.16.840.1.113883.10.20.22.1.1", Some("2015-08-01"))));
    let sections = section_templates(&doc);
    for t in required(kind) {
        assert!(sections.iter().any(|s| s == t), "{who} {kind:?}: required section {t} missing");
    }
    // R1.1 compatibility: a versioned template id goes with its R1.1 id (the root alone).
    for t in doc.descendants().filter(|n| is(n, "templateId") && n.attribute("extension").is_some()) {
        let root = t.attribute("root").unwrap();
        if root == "2.16.840.1.113883.10.20.22.4.200" {
            continue;
        }
        let parent = t.parent().unwrap();
        assert!(
            parent.children().any(|c| is(&c, "templateId")
                && c.attribute("root") == Some(root)
                && c.attribute("extension").is_none()),
            "{who} {kind:?}: {root} without its R1.1 id"
        );
    }
    for section in doc.descendants().filter(|n| is(n, "section")) {
        let ids: HashSet<&str> = section
            .children()
            .filter(|c| is(c, "text"))
            .flat_map(|t| t.descendants())
            .filter_map(|n| n.attribute("ID"))
            .collect();
        let null = section.attribute("nullFlavor").is_some();
        let entries: Vec<_> = section.children().filter(|c| is(c, "entry")).collect();
        if null {
            assert!(entries.is_empty(), "{who} {kind:?}: a null section with entries");
        }
        for entry in entries {
            for r in entry.descendants().filter(|n| is(n, "reference")) {
                let v = r.attribute("value").unwrap();
                let id = v.strip_prefix('#').unwrap();
                assert!(ids.contains(id), "{who} {kind:?}: reference {v} not in the section's narrative");
            }
            // Every entry's own text points into the narrative.
            let act = entry.children().find(|c| c.is_element()).unwrap();
            let text_refs = act
                .descendants()
                .filter(|n| is(n, "text"))
                .flat_map(|t| t.children().filter(|c| is(c, "reference")))
                .count();
            assert!(text_refs > 0, "{who} {kind:?}: an entry without text/reference");
        }
    }
}

/// How many entries (not sections) carry the template `root`.
fn count(xml: &str, root: &str) -> usize {
    let doc = roxmltree::Document::parse(xml).unwrap();
    doc.descendants()
        .filter(|n| is(n, "templateId") && n.attribute("root") == Some(root))
        .filter_map(|n| n.parent())
        .filter(|p| !is(p, "section"))
        .map(|p| p.id())
        .collect::<HashSet<_>>()
        .len()
}

#[test]
fn every_patient_every_type_is_valid() {
    let dir = temp_dir("all");
    let mut files = Vec::new();
    for p in patients() {
        let chart = p.chart();
        for kind in TYPES {
            let xml = write(&chart, kind).unwrap();
            check_structure(&xml, kind, &p.name);
            let f = dir.join(format!("{}-{kind:?}.xml", p.name));
            std::fs::write(&f, &xml).unwrap();
            files.push(f);
        }
    }
    assert_eq!(files.len(), 75);
    for batch in files.chunks(25) {
        xmllint(batch);
    }
    // CCDA_KEEP_OUTPUT=1 keeps the documents to look at.
    if std::env::var_os("CCDA_KEEP_OUTPUT").is_some() {
        println!("documents kept in {}", dir.display());
    } else {
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn one_entry_per_resource() {
    for p in patients() {
        let xml = write(&p.chart(), DocumentType::Ccd).unwrap();
        let conditions = p
            .of_type("Condition")
            .filter(|c| {
                c["category"].as_array().is_none_or(Vec::is_empty)
                    || category(c, "problem-list-item")
                    || category(c, "encounter-diagnosis")
            })
            .count();
        let meds = p.of_type("MedicationRequest").count() + p.of_type("MedicationStatement").count();
        let labs = p.of_type("Observation").filter(|o| category(o, "laboratory")).count();
        let vitals: usize = p
            .of_type("Observation")
            .filter(|o| category(o, "vital-signs"))
            .map(|o| {
                let has_value = o.as_object().unwrap().keys().any(|k| k.starts_with("value"));
                match o["component"].as_array() {
                    Some(c) if !has_value && !c.is_empty() => c.len(),
                    _ => 1,
                }
            })
            .sum();
        let who = &p.name;
        assert_eq!(count(&xml, "2.16.840.1.113883.10.20.22.4.4"), conditions, "{who}: problems");
        assert_eq!(count(&xml, "2.16.840.1.113883.10.20.22.4.16"), meds, "{who}: medications");
        assert_eq!(
            count(&xml, "2.16.840.1.113883.10.20.22.4.52"),
            p.of_type("Immunization").count(),
            "{who}: immunizations"
        );
        assert_eq!(
            count(&xml, "2.16.840.1.113883.10.20.22.4.7"),
            p.of_type("AllergyIntolerance").count(),
            "{who}: allergies"
        );
        assert_eq!(count(&xml, "2.16.840.1.113883.10.20.22.4.2"), labs, "{who}: results");
        let smoking = p
            .of_type("Observation")
            .filter(|o| o["code"]["coding"].as_array().unwrap().iter().any(|c| c["code"] == "72166-2"))
            .count();
        assert_eq!(count(&xml, "2.16.840.1.113883.10.20.22.4.78"), smoking, "{who}: smoking status");
        assert_eq!(count(&xml, "2.16.840.1.113883.10.20.22.4.27"), vitals, "{who}: vital signs");
    }
}

#[test]
fn a_chosen_patient_has_every_kind_of_entry() {
    let all = patients();
    let p = all.iter().find(|p| p.name.starts_with("Rosie394")).unwrap();
    let xml = write(&p.chart(), DocumentType::Ccd).unwrap();
    for (root, at_least) in [
        ("2.16.840.1.113883.10.20.22.4.4", 20),
        ("2.16.840.1.113883.10.20.22.4.7", 4),
        ("2.16.840.1.113883.10.20.22.4.16", 5),
        ("2.16.840.1.113883.10.20.22.4.52", 10),
        ("2.16.840.1.113883.10.20.22.4.27", 40),
        ("2.16.840.1.113883.10.20.22.4.14", 100),
        ("2.16.840.1.113883.10.20.22.4.49", 60),
    ] {
        assert!(count(&xml, root) >= at_least, "{root}: {}", count(&xml, root));
    }
    // medicationReference resolved to the Medication's RxNorm code.
    assert!(xml.contains("codeSystem=\"2.16.840.1.113883.6.88\""));
    // Every coding kept: the RxNorm code appears as the code, CVX as the vaccine's.
    assert!(xml.contains("codeSystem=\"2.16.840.1.113883.12.292\""));
}

#[test]
fn no_known_allergy_is_negated_and_unknown_systems_are_oth() {
    let patient = json!({"resourceType": "Patient", "id": "p1", "name": [{"family": "Doe", "given": ["Jo"]}]});
    let resources = vec![
        patient.clone(),
        json!({
            "resourceType": "AllergyIntolerance", "id": "nka",
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": "active"}]},
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "716186003", "display": "No known allergy"}]},
            "patient": {"reference": "Patient/p1"}
        }),
        json!({
            "resourceType": "Condition", "id": "c1",
            "code": {"coding": [
                {"system": "http://example.org/local", "code": "X1", "display": "Local thing"},
                {"system": "http://snomed.info/sct", "code": "44054006", "display": "Diabetes"},
                {"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "E11.9", "display": "Type 2 diabetes"}
            ], "text": "Diabetes"},
            "onsetDateTime": "2010-03-04",
            "recorder": {"reference": "Practitioner?identifier=x|1", "display": "Dr. Who"},
            "recordedDate": "2010-03-05T10:00:00Z",
            "subject": {"reference": "Patient/p1"}
        }),
        json!({
            "resourceType": "ServiceRequest", "id": "ref1", "status": "active", "intent": "order",
            "category": [{"coding": [{"system": "http://snomed.info/sct", "code": "3457005", "display": "Patient referral"}]}],
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "183519002", "display": "Referral to cardiology service"}]},
            "reasonCode": [{"text": "Chest pain on exertion"}],
            "authoredOn": "2026-11-30",
            "subject": {"reference": "Patient/p1"}
        }),
        json!({
            "resourceType": "Medication", "id": "med1",
            "code": {"coding": [
                {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "197361", "display": "Amlodipine 5 MG Oral Tablet"},
                {"system": "http://hl7.org/fhir/sid/ndc", "code": "0093-7180-01"}
            ]}
        }),
        json!({
            "resourceType": "MedicationStatement", "id": "ms1", "status": "active",
            "medicationReference": {"reference": "Medication/med1"},
            "reasonReference": [{"reference": "Condition/c1"}],
            "informationSource": {"reference": "Organization/continuum"},
            "dateAsserted": "2025-02-02",
            "effectivePeriod": {"start": "2025-01-01"},
            "dosage": [{"route": {"coding": [{"system": "http://snomed.info/sct", "code": "26643006", "display": "Oral route"}]},
                        "timing": {"repeat": {"frequency": 2, "period": 1, "periodUnit": "d"}},
                        "doseAndRate": [{"doseQuantity": {"value": 1, "unit": "tablet", "system": "http://terminology.hl7.org/CodeSystem/v3-orderableDrugForm", "code": "TAB"}}]}],
            "subject": {"reference": "Patient/p1"}
        }),
        json!({
            "resourceType": "MedicationRequest", "id": "mr1", "status": "active", "intent": "plan",
            "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "314076", "display": "Lisinopril 10 MG Oral Tablet"}]},
            "authoredOn": "2026-12-01T09:00:00Z",
            "subject": {"reference": "Patient/p1"}
        }),
        json!({
            "resourceType": "Observation", "id": "lab1", "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7", "display": "Glucose"}]},
            "effectiveDateTime": "2026-11-30T08:00:00-05:00",
            "valueQuantity": {"value": 105.5, "unit": "mg/dL", "system": "http://unitsofmeasure.org", "code": "mg/dL"},
            "interpretation": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": "H"}]}],
            "referenceRange": [{"low": {"value": 70, "unit": "mg/dL", "code": "mg/dL"}, "high": {"value": 99, "unit": "mg/dL", "code": "mg/dL"}}],
            "subject": {"reference": "Patient/p1"}
        }),
        json!({
            "resourceType": "Condition", "id": "c2",
            "code": {"coding": [{"system": "http://example.org/local", "code": "X2", "display": "Only local"}]},
            "subject": {"reference": "Patient/p1"}
        }),
    ];
    let custodian = default_custodian();
    let mut resources = resources;
    resources.push(custodian.clone());
    let chart = Chart {
        patient: &patient,
        resources: &resources,
        custodian: &custodian,
        author: None,
        document_id: DOC_ID,
        now: datetime!(2026-12-07 10:30:00 UTC),
        period: (None, None),
    };
    let xml = write(&chart, DocumentType::Ccd).unwrap();
    check_structure(&xml, DocumentType::Ccd, "synthetic");
    // The lone lab result in an organizer of its own, with its range and interpretation.
    assert_eq!(count(&xml, "2.16.840.1.113883.10.20.22.4.1"), 1);
    assert!(xml.contains("<value xsi:type=\"PQ\" value=\"105.5\" unit=\"mg/dL\"/>"));
    assert!(xml.contains("<interpretationCode code=\"H\""));
    assert!(xml.contains("<referenceRange>"));
    // The statement's Medication resolved, its NDC kept as a translation, the frequency.
    assert!(xml.contains("code=\"197361\""));
    assert!(xml.contains("<translation code=\"0093-7180-01\" codeSystem=\"2.16.840.1.113883.6.69\""));
    assert!(xml.contains("<period value=\"0.5\" unit=\"d\"/>"));
    assert!(xml.contains("<routeCode code=\"26643006\""));
    // Its reason: an Indication with the Condition's entry id.
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let indication = doc
        .descendants()
        .find(|n| is(n, "templateId") && n.attribute("root") == Some("2.16.840.1.113883.10.20.22.4.19"))
        .and_then(|t| t.parent())
        .unwrap();
    let id = indication.children().find(|c| is(c, "id")).unwrap();
    assert_eq!(id.attribute("extension"), Some("Condition/c1"));
    // Authors: the Organization informing the statement, the Condition's unresolved recorder.
    assert_eq!(count(&xml, "2.16.840.1.113883.10.20.22.4.119"), 2);
    assert!(xml.contains("<representedOrganization><name>Continuum Test Clinic</name>"));
    assert!(xml.contains("<assignedPerson><name>Dr. Who</name></assignedPerson>"));
    // Planned: the referral request and the planned medication.
    assert_eq!(count(&xml, "2.16.840.1.113883.10.20.22.4.41"), 1);
    assert_eq!(count(&xml, "2.16.840.1.113883.10.20.22.4.42"), 1);
    let referral = write(&chart, DocumentType::Referral).unwrap();
    check_structure(&referral, DocumentType::Referral, "synthetic");
    assert!(referral.contains("Chest pain on exertion"));
    // The referral note names the referral it is for (the schema check below covers its place).
    assert_eq!(referral.matches("<inFulfillmentOf><order>").count(), 1, "{referral}");
    assert!(!xml.contains("<inFulfillmentOf>"), "only the referral note");
    let discharge = write(&chart, DocumentType::Discharge).unwrap();
    check_structure(&discharge, DocumentType::Discharge, "synthetic");
    // No encounter: the discharge sections say so.
    assert!(discharge.contains("No hospital course recorded."));
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let negated =
        doc.descendants().filter(|n| is(n, "observation") && n.attribute("negationInd") == Some("true")).count();
    assert_eq!(negated, 1);
    assert!(xml.contains("code=\"44054006\""));
    assert!(xml.contains("<translation code=\"E11.9\" codeSystem=\"2.16.840.1.113883.6.90\""));
    assert!(!xml.contains("X1") && !xml.contains("X2"));
    assert!(xml.contains("nullFlavor=\"OTH\""));
    let dir = temp_dir("synthetic");
    let mut files = Vec::new();
    for (name, doc) in [("ccd", &xml), ("referral", &referral), ("discharge", &discharge)] {
        let f = dir.join(format!("synthetic-{name}.xml"));
        std::fs::write(&f, doc).unwrap();
        files.push(f);
    }
    xmllint(&files);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn names_are_escaped() {
    let all = patients();
    let p = &all[0];
    let mut resources = p.resources.clone();
    let patient = resources.iter_mut().find(|r| r["resourceType"] == "Patient").unwrap();
    patient["name"] = json!([{"use": "official", "family": "O'Brien <&> \"Q\"\u{1}", "given": ["Ann\u{b}e"]}]);
    let patient = patient.clone();
    let chart = Chart { patient: &patient, ..p.chart() };
    let chart = Chart { resources: &resources, ..chart };
    let dir = temp_dir("escape");
    let mut files = Vec::new();
    for kind in TYPES {
        let xml = write(&chart, kind).unwrap();
        let doc = roxmltree::Document::parse(&xml).unwrap();
        let family = doc.descendants().find(|n| is(n, "family")).unwrap();
        assert_eq!(family.text(), Some("O'Brien <&> \"Q\""));
        let given = doc.descendants().find(|n| is(n, "given")).unwrap();
        assert_eq!(given.text(), Some("Anne"));
        let f = dir.join(format!("escape-{kind:?}.xml"));
        std::fs::write(&f, &xml).unwrap();
        files.push(f);
    }
    xmllint(&files);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn same_chart_same_bytes() {
    let all = patients();
    for p in all.iter().take(3) {
        for kind in TYPES {
            assert_eq!(write(&p.chart(), kind).unwrap(), write(&p.chart(), kind).unwrap());
        }
    }
}

#[test]
fn the_period_limits_the_entries() {
    let all = patients();
    let p = all.iter().find(|p| p.name.starts_with("Rich940")).unwrap();
    let whole = write(&p.chart(), DocumentType::Ccd).unwrap();
    let chart =
        Chart { period: (Some(datetime!(2019-01-01 0:00 UTC)), Some(datetime!(2020-12-31 23:59 UTC))), ..p.chart() };
    let part = write(&chart, DocumentType::Ccd).unwrap();
    let encounters = |xml: &str| count(xml, "2.16.840.1.113883.10.20.22.4.49");
    assert!(encounters(&part) < encounters(&whole));
    let doc = roxmltree::Document::parse(&part).unwrap();
    for enc in doc.descendants().filter(|n| {
        is(n, "encounter")
            && n.children()
                .any(|t| is(&t, "templateId") && t.attribute("root") == Some("2.16.840.1.113883.10.20.22.4.49"))
    }) {
        let low = enc.descendants().find(|n| is(n, "low")).and_then(|n| n.attribute("value")).unwrap();
        assert!(("2019".."2021").contains(&low), "{low}");
    }
    let dir = temp_dir("period");
    let f = dir.join("period.xml");
    std::fs::write(&f, &part).unwrap();
    xmllint(&[f]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn time_for_the_largest_patient() {
    let all = patients();
    let p = all.iter().max_by_key(|p| p.resources.len()).unwrap();
    let chart = p.chart();
    let mut times = Vec::new();
    let mut size = 0;
    for _ in 0..21 {
        let t = Instant::now();
        let xml = write(&chart, DocumentType::Ccd).unwrap();
        times.push(t.elapsed());
        size = xml.len();
    }
    times.sort();
    println!(
        "largest patient {} ({} resources): CCD of {} bytes, p50 {:?}, max {:?}",
        p.name,
        p.resources.len(),
        size,
        times[times.len() / 2],
        times[times.len() - 1]
    );

    // 2,000 resources and more: the largest patient with the others' records added.
    let mut by_size: Vec<&Patient> = all.iter().collect();
    by_size.sort_by_key(|p| std::cmp::Reverse(p.resources.len()));
    let mut resources = by_size[0].resources.clone();
    for other in &by_size[1..] {
        if resources.len() >= 2000 {
            break;
        }
        resources.extend(other.resources.iter().filter(|r| r["resourceType"] != "Patient").cloned());
    }
    let patient = by_size[0].patient().clone();
    let big = Chart { patient: &patient, resources: &resources, ..by_size[0].chart() };
    let mut times = Vec::new();
    for kind in TYPES {
        for _ in 0..11 {
            let t = Instant::now();
            let xml = write(&big, kind).unwrap();
            times.push(t.elapsed());
            size = xml.len();
        }
    }
    times.sort();
    println!(
        "{} resources: documents up to {} bytes, p50 {:?}, max {:?} (all three types)",
        resources.len(),
        size,
        times[times.len() / 2],
        times[times.len() - 1]
    );
}

#[test]
fn odd_input_makes_a_valid_document_or_a_refusal() {
    let patient = json!({"resourceType": "Patient"});
    let resources = vec![
        patient.clone(),
        json!({"resourceType": "Observation", "id": "o1", "category": "vital-signs", "component": 5,
               "valueQuantity": {"value": "abc", "unit": "has space"}}),
        json!({"resourceType": "Observation", "id": "o2",
               "category": [{"coding": [{"code": "vital-signs"}]}],
               "component": [{"code": {"text": "no coding"}}], "effectiveDateTime": "not a date"}),
        json!({"resourceType": "Observation", "id": "o3",
               "category": [{"coding": [{"code": "laboratory"}]}],
               "code": {"coding": [{"system": "http://loinc.org", "code": "has space"}]},
               "valueQuantity": {"value": 1e300, "code": "mg"}, "effectivePeriod": {"start": "2020"}}),
        json!({"resourceType": "Condition", "id": "c1", "code": 7, "onsetDateTime": "2020-13-45T99:99:99Z"}),
        json!({"resourceType": "AllergyIntolerance", "id": "a1", "reaction": [{"manifestation": [{}], "severity": "extreme"}]}),
        json!({"resourceType": "MedicationRequest", "id": "m1", "medicationReference": {"reference": "Medication/missing"},
               "dosageInstruction": [{"timing": {"repeat": {"period": 0, "periodUnit": "h"}}}]}),
        json!({"resourceType": "Immunization", "id": "i1", "status": "not-done"}),
        json!({"resourceType": "Encounter", "id": "e1", "class": {"code": "IMP"}}),
        json!({"resourceType": "Procedure", "id": "p1"}),
        json!({"resourceType": "DiagnosticReport", "id": "d1", "result": [{"reference": "Observation/o3"}, {"reference": 5}]}),
        json!({"id": "no type"}),
        json!("not even an object"),
    ];
    let custodian = json!({});
    let mut chart = Chart {
        patient: &patient,
        resources: &resources,
        custodian: &custodian,
        author: Some(&custodian),
        document_id: DOC_ID,
        now: datetime!(2026-12-07 10:30:00 +5:30),
        period: (None, None),
    };
    let dir = temp_dir("odd");
    let mut files = Vec::new();
    for kind in TYPES {
        let xml = write(&chart, kind).unwrap();
        check_structure(&xml, kind, "odd");
        let f = dir.join(format!("odd-{kind:?}.xml"));
        std::fs::write(&f, &xml).unwrap();
        files.push(f);
    }
    xmllint(&files);
    std::fs::remove_dir_all(&dir).unwrap();

    chart.document_id = "not a uuid";
    assert!(matches!(write(&chart, DocumentType::Ccd), Err(ccda::Error::CannotWrite(_))));
    let not_a_patient = json!({"resourceType": "Practitioner"});
    chart.document_id = DOC_ID;
    chart.patient = &not_a_patient;
    assert!(matches!(write(&chart, DocumentType::Ccd), Err(ccda::Error::CannotWrite(_))));
}
