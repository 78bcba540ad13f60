//! The reader over the eight HL7 C-CDA R2.1 examples, hand-written documents and bad input.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a failed check panics, like assert!")]

use ccda::{Document, Error, SectionKind};
use roxmltree::Node;
use serde_json::Value;
use std::collections::HashMap;
use test_support::ccda::{is, kids, section_name, tmpl};

use test_support::ccda::{EXAMPLES, example};

const ALL_KINDS: [SectionKind; 14] = [
    SectionKind::Problems,
    SectionKind::Allergies,
    SectionKind::Medications,
    SectionKind::Immunizations,
    SectionKind::Results,
    SectionKind::VitalSigns,
    SectionKind::Procedures,
    SectionKind::Encounters,
    SectionKind::SocialHistory,
    SectionKind::PlanOfTreatment,
    SectionKind::Goals,
    SectionKind::HealthConcerns,
    SectionKind::FunctionalStatus,
    SectionKind::MentalStatus,
];

fn read(name: &str) -> Document {
    ccda::read(&example(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The resources the entries of each section should make, counted from the XML alone (the
/// rule: `test_support::ccda::coded_entries`).
fn expected(xml: &str) -> HashMap<&'static str, usize> {
    test_support::ccda::coded_entries(xml)
}

#[test]
fn every_example_maps_each_coded_entry_once() {
    for name in EXAMPLES {
        let bytes = example(name);
        let doc = read(name);
        let want = expected(std::str::from_utf8(&bytes).unwrap());
        let mut line = format!("{name} ({:?}, r2 {}):", doc.template, doc.r2);
        for kind in ALL_KINDS {
            let got = doc.resources.iter().filter(|m| m.section == Some(kind)).count();
            let expected = want.get(kind.name()).copied().unwrap_or(0);
            if got > 0 || expected > 0 {
                line.push_str(&format!(" {kind:?} {got}"));
            }
            assert_eq!(got, expected, "{name}: {kind:?}");
        }
        let parties = doc.resources.iter().filter(|m| m.section.is_none()).count();
        line.push_str(&format!("; people/organizations {parties}; warnings {}", doc.warnings.len()));
        eprintln!("{line}");
        for w in &doc.warnings {
            eprintln!("    {}: {}", w.location, w.message);
        }
    }
}

#[test]
fn every_example_has_the_expected_header() {
    use ccda::DocumentTemplate as T;
    let templates = [
        ("CCD_1", T::Ccd),
        ("CCD_2", T::Ccd),
        ("Care_Plan", T::CarePlan),
        ("Consultation_Note", T::ConsultationNote),
        ("Discharge_Summary", T::DischargeSummary),
        ("History_and_Physical", T::HistoryAndPhysical),
        ("Progress_Note", T::ProgressNote),
        ("Referral_Note", T::ReferralNote),
    ];
    for (name, template) in templates {
        let doc = read(name);
        assert_eq!(doc.template, template, "{name}");
        assert!(doc.r2, "{name}");
        assert!(doc.id.get("system").is_some(), "{name}");
        assert!(doc.code.pointer("/coding/0/system").and_then(Value::as_str) == Some("http://loinc.org"), "{name}");
        let patient = doc.resources.iter().find(|m| m.full_url == doc.patient_url).unwrap();
        assert_eq!(patient.resource["resourceType"], "Patient", "{name}");
        assert!(!doc.author_urls.is_empty(), "{name}");
        assert!(doc.custodian_url.is_some(), "{name}");
        // Every clinical resource references the patient.
        for m in doc.resources.iter().filter(|m| m.section.is_some()) {
            let r = &m.resource;
            let subject = r.get("subject").or_else(|| r.get("patient")).unwrap_or(&Value::Null);
            assert_eq!(subject["reference"], doc.patient_url.as_str(), "{name}: {r}");
        }
        // Every reference names a resource of the document.
        let urls: Vec<&str> = doc.resources.iter().map(|m| m.full_url.as_str()).collect();
        for m in &doc.resources {
            for reference in references(&m.resource) {
                assert!(urls.contains(&reference.as_str()), "{name}: dangling {reference}");
            }
        }
    }
}

fn references(v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    match v {
        Value::Object(map) => {
            for (k, x) in map {
                if k == "reference"
                    && let Some(s) = x.as_str()
                {
                    out.push(s.to_owned());
                }
                out.extend(references(x));
            }
        }
        Value::Array(items) => items.iter().for_each(|x| out.extend(references(x))),
        _ => {}
    }
    out
}

#[test]
fn ccd_1_patient_and_people() {
    let doc = read("CCD_1");
    let patient = &doc.resources.iter().find(|m| m.full_url == doc.patient_url).unwrap().resource;
    eprintln!("{}", serde_json::to_string_pretty(patient).unwrap());
    assert_eq!(patient["gender"], "female");
    assert!(patient["birthDate"].as_str().is_some());
    assert!(patient["name"][0]["family"].as_str().is_some());
    assert!(patient["name"][0]["given"][0].as_str().is_some());
    assert!(patient["address"][0]["city"].as_str().is_some());
    assert!(patient["telecom"].as_array().is_some_and(|t| !t.is_empty()));
    // People and organizations are made once each (same identifier → one resource).
    let mut seen = std::collections::HashSet::new();
    for m in doc.resources.iter().filter(|m| m.section.is_none()) {
        let t = m.resource["resourceType"].as_str().unwrap();
        if let Some(id) = m.resource.get("identifier").and_then(|i| i.get(0)) {
            assert!(seen.insert(format!("{t}{id}")), "made twice: {t} {id}");
        }
    }
    let npi = doc
        .resources
        .iter()
        .filter(|m| m.resource["resourceType"] == "Practitioner")
        .any(|m| m.resource["identifier"][0]["system"] == "http://hl7.org/fhir/sid/us-npi");
    assert!(npi, "an author's NPI");
}

#[test]
fn vaccine_codes_keep_their_translations() {
    // CCD_1's first code with translations (a vaccine: CVX and RxNorm), against the XML.
    let doc = read("CCD_1");
    let found = doc.resources.iter().filter(|m| m.section.is_some()).find(|m| {
        ["vaccineCode"].iter().any(|k| {
            m.resource.get(*k).and_then(|c| c.get("coding")).and_then(Value::as_array).is_some_and(|c| c.len() > 1)
        })
    });
    let found = found.expect("a code with translations");
    eprintln!("{}", serde_json::to_string_pretty(&found.resource).unwrap());
    // Check against the XML: the same entry's code and translations, in order.
    let bytes = example("CCD_1");
    let xml = std::str::from_utf8(&bytes).unwrap();
    let tree = roxmltree::Document::parse(xml).unwrap();
    let key = ["vaccineCode"]
        .into_iter()
        .find(|k| {
            found.resource.get(*k).and_then(|c| c.get("coding")).and_then(Value::as_array).is_some_and(|c| c.len() > 1)
        })
        .unwrap();
    let codings = found.resource[key]["coding"].as_array().unwrap();
    let first = codings[0]["code"].as_str().unwrap();
    let cd = tree
        .descendants()
        .filter(|n| n.is_element() && kids(*n, "translation").next().is_some())
        .find(|n| n.attribute("code") == Some(first))
        .expect("the coded element in the XML");
    let mut want: Vec<String> = vec![first.to_owned()];
    want.extend(kids(cd, "translation").filter_map(|t| t.attribute("code")).map(str::to_owned));
    let got: Vec<String> = codings.iter().map(|c| c["code"].as_str().unwrap().to_owned()).collect();
    assert_eq!(got, want);
    for c in codings {
        assert!(c["system"].as_str().is_some_and(|s| s.starts_with("http") || s.starts_with("urn:oid:")));
    }
}

#[test]
fn problem_medication_and_allergy_codes_keep_their_translations() {
    // History and Physical's medication: an RxNorm code with an RxNorm translation, and the
    // original text in the narrative.
    let doc = read("History_and_Physical");
    let med = doc.resources.iter().find(|m| m.resource["resourceType"] == "MedicationStatement").unwrap();
    let concept = &med.resource["medicationCodeableConcept"];
    let codings: Vec<(&str, &str)> = concept["coding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["system"].as_str().unwrap(), c["code"].as_str().unwrap()))
        .collect();
    let rxnorm = "http://www.nlm.nih.gov/research/umls/rxnorm";
    assert_eq!(codings, [(rxnorm, "573621"), (rxnorm, "573621")]);
    assert_eq!(concept["coding"][0]["display"], "albuterol 0.09 MG/ACTUAT [Proventil]");
    assert_eq!(concept["text"], "Proventil 0.09 MG/ACTUAT inhalant solution");

    // In every example: as many codings in the problems', medications' and allergies' codes as
    // codes and translations in the XML elements they come from.
    for name in EXAMPLES {
        let bytes = example(name);
        let tree = roxmltree::Document::parse(std::str::from_utf8(&bytes).unwrap()).unwrap();
        let coded = |n: Node<'_, '_>| {
            usize::from(n.attribute("code").is_some() && n.attribute("nullFlavor").is_none())
                + kids(n, "translation").filter(|t| t.attribute("code").is_some()).count()
        };
        let mut want = 0;
        for n in tree.descendants().filter(|n| n.is_element()) {
            let in_section = |kind: SectionKind| {
                n.ancestors().find(|a| is(*a, "section")).and_then(section_name) == Some(kind.name())
            };
            if tmpl(n, "4") && is(n, "observation") && in_section(SectionKind::Problems) {
                want += kids(n, "value").map(coded).sum::<usize>();
            }
            if tmpl(n, "7") && in_section(SectionKind::Allergies) {
                let entity = kids(n, "participant")
                    .flat_map(|p| kids(p, "participantRole"))
                    .flat_map(|r| kids(r, "playingEntity"));
                want += entity.flat_map(|e| kids(e, "code")).map(coded).sum::<usize>();
            }
            if tmpl(n, "16") && in_section(SectionKind::Medications) {
                let material = kids(n, "consumable")
                    .flat_map(|c| kids(c, "manufacturedProduct"))
                    .flat_map(|p| kids(p, "manufacturedMaterial"));
                want += material.flat_map(|m| kids(m, "code")).map(coded).sum::<usize>();
            }
        }
        let doc = read(name);
        let got: usize = doc
            .resources
            .iter()
            .filter(|m| {
                matches!(m.section, Some(SectionKind::Problems | SectionKind::Allergies | SectionKind::Medications))
            })
            .map(|m| {
                let key = if m.resource.get("medicationCodeableConcept").is_some() {
                    "medicationCodeableConcept"
                } else {
                    "code"
                };
                m.resource[key]["coding"].as_array().map_or(0, Vec::len)
            })
            .sum();
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn every_resource_is_valid_fhir() {
    for name in EXAMPLES {
        let doc = read(name);
        for m in &doc.resources {
            let issues: Vec<_> = fhir::validate(&m.resource)
                .into_iter()
                .filter(|i| matches!(i.severity, fhir::Severity::Error | fhir::Severity::Fatal))
                .collect();
            assert!(issues.is_empty(), "{name}: {}\n{issues:#?}", serde_json::to_string_pretty(&m.resource).unwrap());
        }
    }
}

#[test]
fn reading_is_fast() {
    let docs: Vec<Vec<u8>> = EXAMPLES.iter().map(|n| example(n)).collect();
    let start = std::time::Instant::now();
    let rounds = 5;
    for _ in 0..rounds {
        for d in &docs {
            ccda::read(d).unwrap();
        }
    }
    let per_round = start.elapsed() / rounds;
    eprintln!("the 8 examples: {per_round:?} per round");
    // Generous for an unoptimised debug build on a shared machine; release is far faster.
    assert!(per_round.as_millis() < 2000);
}

// ---- Hand-written documents ----

fn document(sections: &str) -> String {
    format!(
        r#"<?xml version="1.0"?>
<ClinicalDocument xmlns="urn:hl7-org:v3" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <templateId root="2.16.840.1.113883.10.20.22.1.1" extension="2015-08-01"/>
  <templateId root="2.16.840.1.113883.10.20.22.1.2" extension="2015-08-01"/>
  <id root="2.16.840.1.113883.19.5" extension="doc-1"/>
  <code code="34133-9" codeSystem="2.16.840.1.113883.6.1" displayName="Summarization of Episode Note"/>
  <title>Test</title>
  <effectiveTime value="20240101120000-0500"/>
  <recordTarget><patientRole>
    <id root="2.16.840.1.113883.19.5.99999.2" extension="998991"/>
    <patient>
      <name use="L"><given>Eve</given><family>Everywoman</family></name>
      <administrativeGenderCode code="F" codeSystem="2.16.840.1.113883.5.1"/>
      <birthTime value="19750501"/>
    </patient>
  </patientRole></recordTarget>
  <component><structuredBody>{sections}</structuredBody></component>
</ClinicalDocument>"#
    )
}

const NKA: &str = r#"<component><section>
  <templateId root="2.16.840.1.113883.10.20.22.2.6.1" extension="2015-08-01"/>
  <code code="48765-2" codeSystem="2.16.840.1.113883.6.1"/>
  <title>Allergies</title>
  <text>No known allergies</text>
  <entry typeCode="DRIV"><act classCode="ACT" moodCode="EVN">
    <templateId root="2.16.840.1.113883.10.20.22.4.30" extension="2015-08-01"/>
    <id root="36e3e930-7b14-11db-9fe1-0800200c9a66"/>
    <code code="CONC" codeSystem="2.16.840.1.113883.5.6"/>
    <statusCode code="active"/>
    <effectiveTime><low value="20240101"/></effectiveTime>
    <entryRelationship typeCode="SUBJ">
      <observation classCode="OBS" moodCode="EVN" negationInd="true">
        <templateId root="2.16.840.1.113883.10.20.22.4.7" extension="2014-06-09"/>
        <id root="4adc1020-7b14-11db-9fe1-0800200c9a66"/>
        <code code="ASSERTION" codeSystem="2.16.840.1.113883.5.4"/>
        <statusCode code="completed"/>
        <effectiveTime><low nullFlavor="NA"/></effectiveTime>
        <value xsi:type="CD" code="419199007" displayName="Allergy to substance" codeSystem="2.16.840.1.113883.6.96"/>
        <participant typeCode="CSM"><participantRole classCode="MANU"><playingEntity classCode="MMAT">
          <code nullFlavor="NA"/>
        </playingEntity></participantRole></participant>
      </observation>
    </entryRelationship>
  </act></entry>
</section></component>"#;

#[test]
fn no_known_allergies_is_the_negation_not_an_allergy() {
    let doc = ccda::read(document(NKA).as_bytes()).unwrap();
    let allergies: Vec<&Value> =
        doc.resources.iter().filter(|m| m.section == Some(SectionKind::Allergies)).map(|m| &m.resource).collect();
    assert_eq!(allergies.len(), 1);
    let a = allergies[0];
    eprintln!("{}", serde_json::to_string_pretty(a).unwrap());
    assert_eq!(a["resourceType"], "AllergyIntolerance");
    assert_eq!(a["code"]["coding"][0]["system"], "http://snomed.info/sct");
    assert_eq!(a["code"]["coding"][0]["code"], "716186003");
    assert_eq!(a["verificationStatus"]["coding"][0]["code"], "confirmed");
    assert!(a.get("reaction").is_none());
    assert!(doc.warnings.is_empty(), "{:?}", doc.warnings);
    assert!(fhir::validate(a).iter().all(|i| !matches!(i.severity, fhir::Severity::Error | fhir::Severity::Fatal)));
}

#[test]
fn entries_not_mapped_become_warnings() {
    let sections = r#"<component><section>
      <templateId root="2.16.840.1.113883.10.20.22.2.17" extension="2015-08-01"/>
      <code code="29762-2" codeSystem="2.16.840.1.113883.6.1"/>
      <title>Social History</title>
      <text/>
      <entry><observation classCode="OBS" moodCode="EVN">
        <templateId root="2.16.840.1.113883.10.20.22.4.38" extension="2015-08-01"/>
        <code nullFlavor="UNK"/>
        <statusCode code="completed"/>
      </observation></entry>
    </section></component>
    <component><section>
      <templateId root="2.16.840.1.113883.10.20.22.2.18" extension="2015-08-01"/>
      <code code="48768-6" codeSystem="2.16.840.1.113883.6.1"/>
      <title>Payers</title>
      <text/>
      <entry><act classCode="ACT" moodCode="EVN">
        <templateId root="2.16.840.1.113883.10.20.22.4.60" extension="2015-08-01"/>
      </act></entry>
    </section></component>
    <component><section>
      <code code="8648-8" codeSystem="2.16.840.1.113883.6.1"/>
      <title>Hospital Course</title>
      <text>Uneventful.</text>
    </section></component>"#;
    let doc = ccda::read(document(sections).as_bytes()).unwrap();
    assert_eq!(doc.resources.iter().filter(|m| m.section.is_some()).count(), 0);
    assert_eq!(doc.warnings.len(), 2, "{:?}", doc.warnings);
    assert_eq!(doc.warnings[0].location, "29762-2 entry 1");
    assert!(doc.warnings[0].message.contains("without a code and without a value"));
    assert_eq!(doc.warnings[1].location, "48768-6 entry 1");
    assert!(doc.warnings[1].message.contains("Coverage Activity"));
}

// ---- Bad input ----

#[test]
fn a_truncated_document_is_not_xml() {
    let bytes = example("CCD_1");
    let half = &bytes[..bytes.len() / 2];
    assert!(matches!(ccda::read(half), Err(Error::NotXml(_))));
}

#[test]
fn other_xml_is_not_a_clinical_document() {
    assert!(matches!(ccda::read(b"<html/>"), Err(Error::NotClinicalDocument)));
    assert!(matches!(ccda::read(b"<ClinicalDocument/>"), Err(Error::NotClinicalDocument)));
}

#[test]
fn a_document_without_patient_is_incomplete() {
    let xml = r#"<ClinicalDocument xmlns="urn:hl7-org:v3"><id root="1.2.3"/></ClinicalDocument>"#;
    assert!(matches!(ccda::read(xml.as_bytes()), Err(Error::Incomplete(_))));
}

#[test]
fn entity_declarations_are_refused_never_expanded() {
    let laughs = r#"<?xml version="1.0"?>
<!DOCTYPE lolz [
  <!ENTITY lol "lol">
  <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
  <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
  <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
  <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
  <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
  <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
  <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<ClinicalDocument xmlns="urn:hl7-org:v3"><title>&lol9;</title></ClinicalDocument>"#;
    let external = r#"<?xml version="1.0"?>
<!DOCTYPE ClinicalDocument [ <!ENTITY xxe SYSTEM "file:///etc/passwd"> ]>
<ClinicalDocument xmlns="urn:hl7-org:v3"><title>&xxe;</title></ClinicalDocument>"#;
    for xml in [laughs, external] {
        let start = std::time::Instant::now();
        let result = ccda::read(xml.as_bytes());
        assert!(start.elapsed().as_millis() < 100, "took {:?}", start.elapsed());
        let Err(Error::NotXml(message)) = result else { panic!("not refused: {result:?}") };
        assert!(!message.contains("lol") && !message.contains("root:"), "{message}");
    }
}

#[test]
fn too_large_is_refused_before_parsing() {
    let big = vec![b' '; ccda::MAX_DOCUMENT_BYTES + 1];
    assert!(matches!(ccda::read(&big), Err(Error::TooLarge { .. })));
}

#[test]
fn random_bytes_are_refused_without_panic() {
    // A small deterministic generator (xorshift), so that the test is reproducible.
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for len in [0usize, 1, 7, 100, 1000, 10_000] {
        let bytes: Vec<u8> = (0..len).map(|_| (next() & 0xff) as u8).collect();
        assert!(ccda::read(&bytes).is_err());
    }
    // Not UTF-8.
    assert!(matches!(ccda::read(&[0xff, 0xfe, b'<']), Err(Error::NotXml(_))));
    // Pieces of a real document, cut anywhere: never a panic.
    let bytes = example("CCD_2");
    for cut in (0..bytes.len()).step_by(997) {
        let _ = ccda::read(&bytes[..cut]);
        let _ = ccda::read(&bytes[cut..]);
    }
}

#[test]
fn odd_attribute_values_never_panic() {
    // Every attribute value of the examples replaced, in turn, by odd ones: the document stays
    // well-formed, and each datatype parser meets values it does not expect.
    const ODD: [&str; 16] = [
        "",
        " ",
        "-",
        "+",
        "20240230",
        "99999999999999999999999",
        "1.",
        ".5",
        "#",
        "#nope",
        "tel:",
        "1e999",
        "2024-01-01",
        "202401011230+",
        "202401011230+05",
        "2024010112305.5-0500x",
    ];
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for name in ["CCD_1", "Referral_Note"] {
        let text = String::from_utf8(example(name)).unwrap();
        // Not the namespace declarations: a document in no namespace is refused as a whole.
        let quotes: Vec<usize> = text
            .match_indices("=\"")
            .filter(|(i, _)| !text[..*i].rsplit(' ').next().is_some_and(|n| n.starts_with("xmlns")))
            .map(|(i, _)| i + 2)
            .collect();
        let mut read = 0;
        for round in 0..60 {
            let mut mutated = String::with_capacity(text.len());
            let mut last = 0;
            for &start in &quotes {
                let Some(len) = text[start..].find('"') else { continue };
                if next() % 20 != 0 {
                    continue;
                }
                mutated.push_str(&text[last..start]);
                mutated.push_str(ODD[(next() as usize + round) % ODD.len()]);
                last = start + len;
            }
            mutated.push_str(&text[last..]);
            if let Ok(doc) = ccda::read(mutated.as_bytes()) {
                read += 1;
                for m in &doc.resources {
                    let errors: Vec<_> = fhir::validate(&m.resource)
                        .into_iter()
                        .filter(|i| matches!(i.severity, fhir::Severity::Error | fhir::Severity::Fatal))
                        .collect();
                    assert!(errors.is_empty(), "{name} round {round}: {}\n{errors:#?}", m.resource);
                }
            }
        }
        eprintln!("{name}: {read} of 60 mutated documents read");
        assert!(read > 30, "{name}: only {read} read");
    }
}

#[test]
fn many_entries_pointing_at_a_large_narrative_stay_linear() {
    // 3,000 immunizations whose vaccine codes all point at one 1 MB narrative element: its text
    // is computed once, and not taken (too large to be one entry's text).
    let big = "word ".repeat(200_000);
    let entry = r##"<entry><substanceAdministration classCode="SBADM" moodCode="EVN">
  <templateId root="2.16.840.1.113883.10.20.22.4.52"/>
  <statusCode code="completed"/><effectiveTime value="20100815"/>
  <consumable><manufacturedProduct><manufacturedMaterial>
    <code code="88" codeSystem="2.16.840.1.113883.12.292"><originalText><reference value="#big"/></originalText></code>
  </manufacturedMaterial></manufacturedProduct></consumable>
</substanceAdministration></entry>"##;
    let section = format!(
        r#"<component><section><templateId root="2.16.840.1.113883.10.20.22.2.2.1"/><text><paragraph ID="big">{big}</paragraph></text>{}</section></component>"#,
        entry.repeat(3000)
    );
    let xml = document(&section);
    let start = std::time::Instant::now();
    let doc = ccda::read(xml.as_bytes()).unwrap();
    let took = start.elapsed();
    eprintln!("{} bytes, {} resources: {took:?}", xml.len(), doc.resources.len());
    assert_eq!(doc.resources.iter().filter(|m| m.section == Some(SectionKind::Immunizations)).count(), 3000);
    assert!(doc.resources.iter().all(|m| m.resource.get("vaccineCode").is_none_or(|c| c.get("text").is_none())));
    assert!(took.as_secs() < 5, "{took:?}");
}
