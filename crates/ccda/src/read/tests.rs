//! The mapping of single entries, on small hand-written documents.

use super::{Document, SectionKind, read};
use serde_json::Value;

/// A CCD around `sections` (whole `<component><section>…` elements).
fn doc(sections: &str) -> Document {
    let xml = format!(
        r#"<?xml version="1.0"?>
<ClinicalDocument xmlns="urn:hl7-org:v3" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:sdtc="urn:hl7-org:sdtc">
  <templateId root="2.16.840.1.113883.10.20.22.1.2"/>
  <id root="2.16.840.1.113883.19.5" extension="doc-1"/>
  <code code="34133-9" codeSystem="2.16.840.1.113883.6.1"/>
  <recordTarget><patientRole>
    <id root="2.16.840.1.113883.19.5.99999.2" extension="998991"/>
    <id root="2.16.840.1.113883.4.1" extension="111-00-2330"/>
    <addr use="HP"><streetAddressLine>1 Main St</streetAddressLine><city>Portland</city><state>OR</state></addr>
    <telecom value="tel:+1(555)555-2003" use="MC"/>
    <telecom value="mailto:eve@example.org"/>
    <patient>
      <name use="L"><prefix>Ms</prefix><given>Eve</given><given>E</given><family>Everywoman</family></name>
      <administrativeGenderCode code="F" codeSystem="2.16.840.1.113883.5.1"/>
      <birthTime value="197505011230"/>
      <sdtc:deceasedInd value="false"/>
      <maritalStatusCode code="M" codeSystem="2.16.840.1.113883.5.2"/>
      <raceCode code="2106-3" displayName="White" codeSystem="2.16.840.1.113883.6.238"/>
      <sdtc:raceCode code="2108-9" displayName="European" codeSystem="2.16.840.1.113883.6.238"/>
      <ethnicGroupCode code="2186-5" displayName="Not Hispanic or Latino" codeSystem="2.16.840.1.113883.6.238"/>
      <languageCommunication><languageCode code="en"/><preferenceInd value="true"/></languageCommunication>
    </patient>
  </patientRole></recordTarget>
  <author><time value="20240101"/><assignedAuthor>
    <id root="2.16.840.1.113883.4.6" extension="1234567893"/>
    <assignedPerson><name><given>Pat</given><family>Primary</family></name></assignedPerson>
    <representedOrganization><id root="2.16.840.1.113883.19.5.9999.1393"/><name>Clinic</name></representedOrganization>
  </assignedAuthor></author>
  <custodian><assignedCustodian><representedCustodianOrganization>
    <id root="2.16.840.1.113883.19.5.9999.1393"/><name>Clinic</name>
  </representedCustodianOrganization></assignedCustodian></custodian>
  <component><structuredBody>{sections}</structuredBody></component>
</ClinicalDocument>"#
    );
    match read(xml.as_bytes()) {
        Ok(d) => d,
        Err(e) => panic!("{e}"),
    }
}

/// A section of template `root` (R2.1 extension) and LOINC `code` with `entries`.
fn section(root: &str, code: &str, text: &str, entries: &str) -> String {
    format!(
        r#"<component><section>
  <templateId root="2.16.840.1.113883.10.20.22.2.{root}" extension="2015-08-01"/>
  <code code="{code}" codeSystem="2.16.840.1.113883.6.1"/>
  <title>T</title>
  <text>{text}</text>
  {entries}
</section></component>"#
    )
}

/// The resources of `kind`.
fn of(d: &Document, kind: SectionKind) -> Vec<&Value> {
    d.resources.iter().filter(|m| m.section == Some(kind)).map(|m| &m.resource).collect()
}

/// Asserts `fhir::validate` finds no error in any resource of `d`.
fn valid(d: &Document) {
    for m in &d.resources {
        let errors: Vec<_> = fhir::validate(&m.resource)
            .into_iter()
            .filter(|i| matches!(i.severity, fhir::Severity::Error | fhir::Severity::Fatal))
            .collect();
        assert!(errors.is_empty(), "{}: {errors:?}", m.resource);
    }
}

#[test]
fn header_patient_and_author() {
    let d = doc("");
    valid(&d);
    let p = &d.resources.iter().find(|m| m.full_url == d.patient_url).unwrap().resource;
    assert_eq!(p["identifier"][0]["system"], "urn:oid:2.16.840.1.113883.19.5.99999.2");
    assert_eq!(p["identifier"][1]["system"], "http://hl7.org/fhir/sid/us-ssn");
    assert_eq!(p["name"][0]["use"], "official");
    assert_eq!(p["name"][0]["given"], serde_json::json!(["Eve", "E"]));
    assert_eq!(p["name"][0]["prefix"][0], "Ms");
    assert_eq!(p["gender"], "female");
    assert_eq!(p["birthDate"], "1975-05-01");
    assert_eq!(p["deceasedBoolean"], false);
    assert_eq!(p["telecom"][0]["system"], "phone");
    assert_eq!(p["telecom"][0]["use"], "mobile");
    assert_eq!(p["telecom"][1]["system"], "email");
    assert_eq!(p["telecom"][1]["value"], "eve@example.org");
    assert_eq!(p["address"][0]["use"], "home");
    assert_eq!(p["maritalStatus"]["coding"][0]["system"], "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus");
    assert_eq!(p["communication"][0]["language"]["coding"][0]["code"], "en");
    let race = &p["extension"][0];
    assert_eq!(race["url"], "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race");
    assert_eq!(race["extension"][0]["url"], "ombCategory");
    assert_eq!(race["extension"][1]["url"], "detailed");
    assert_eq!(race["extension"][2]["valueString"], "White, European");
    assert_eq!(d.author_urls.len(), 1);
    let author = &d.resources.iter().find(|m| m.full_url == d.author_urls[0]).unwrap().resource;
    assert_eq!(author["resourceType"], "Practitioner");
    assert_eq!(author["identifier"][0]["system"], "http://hl7.org/fhir/sid/us-npi");
    // The author's organization and the custodian are the same organization: one resource.
    assert_eq!(d.author_organization_url, d.custodian_url);
    let org = &d.resources.iter().find(|m| Some(&m.full_url) == d.custodian_url.as_ref()).unwrap().resource;
    assert_eq!(org["identifier"][0]["system"], "urn:ietf:rfc:3986");
    assert_eq!(org["identifier"][0]["value"], "urn:oid:2.16.840.1.113883.19.5.9999.1393");
    assert_eq!(d.template, super::DocumentTemplate::Ccd);
    assert!(!d.r2);
}

const PERFORMER: &str = r#"<performer><assignedEntity><id root="2.16.840.1.113883.4.6" extension="1234567893"/>
  <assignedPerson><name><given>Pat</given><family>Primary</family></name></assignedPerson></assignedEntity></performer>"#;

#[test]
fn medication_timing_dose_and_route() {
    let entry = format!(
        r##"<entry><substanceAdministration classCode="SBADM" moodCode="EVN">
  <templateId root="2.16.840.1.113883.10.20.22.4.16" extension="2014-06-09"/>
  <id root="cdbd33f0-6cde-11db-9fe1-0800200c9a66"/>
  <text><reference value="#sig1"/></text>
  <statusCode code="active"/>
  <effectiveTime xsi:type="IVL_TS"><low value="20110301"/><high nullFlavor="UNK"/></effectiveTime>
  <effectiveTime xsi:type="PIVL_TS" institutionSpecified="true" operator="A"><period value="12" unit="h"/></effectiveTime>
  <effectiveTime xsi:type="EIVL_TS" operator="A"><event code="HS"/></effectiveTime>
  <routeCode code="C38288" codeSystem="2.16.840.1.113883.3.26.1.1" displayName="ORAL"/>
  <doseQuantity value="0.5" unit="mg"/>
  <consumable><manufacturedProduct><manufacturedMaterial>
    <code code="197361" codeSystem="2.16.840.1.113883.6.88" displayName="Amlodipine 5 MG Oral Tablet">
      <originalText><reference value="#med1"/></originalText>
      <translation code="00069-1520-30" codeSystem="2.16.840.1.113883.6.69"/>
    </code>
  </manufacturedMaterial></manufacturedProduct></consumable>
  {PERFORMER}
</substanceAdministration></entry>"##
    );
    let text =
        r#"<table><tr><td ID="med1">Amlodipine  5 mg</td><td ID="sig1">half a tablet twice a day</td></tr></table>"#;
    let d = doc(&section("1.1", "10160-0", text, &entry));
    valid(&d);
    let meds = of(&d, SectionKind::Medications);
    assert_eq!(meds.len(), 1);
    let m = meds[0];
    assert_eq!(m["resourceType"], "MedicationStatement");
    assert_eq!(m["status"], "active");
    assert_eq!(m["extension"][0]["valueUrl"], "#sig1");
    assert_eq!(m["medicationCodeableConcept"]["text"], "Amlodipine 5 mg");
    assert_eq!(m["medicationCodeableConcept"]["coding"][1]["system"], "http://hl7.org/fhir/sid/ndc");
    assert_eq!(m["effectivePeriod"]["start"], "2011-03-01");
    let dosage = &m["dosage"][0];
    assert_eq!(dosage["text"], "half a tablet twice a day");
    assert_eq!(dosage["timing"]["repeat"]["frequency"], 1);
    assert_eq!(dosage["timing"]["repeat"]["period"], 12);
    assert_eq!(dosage["timing"]["repeat"]["periodUnit"], "h");
    assert_eq!(dosage["timing"]["repeat"]["when"][0], "HS");
    assert_eq!(dosage["route"]["coding"][0]["system"], "http://ncithesaurus-stage.nci.nih.gov");
    assert_eq!(dosage["doseAndRate"][0]["doseQuantity"]["code"], "mg");
    assert_eq!(dosage["doseAndRate"][0]["doseQuantity"]["value"].to_string(), "0.5");

    // The same as an intent: a MedicationRequest (order).
    let d = doc(&section("1.1", "10160-0", text, &entry.replace("moodCode=\"EVN\"", "moodCode=\"INT\"")));
    valid(&d);
    let m = of(&d, SectionKind::Medications)[0];
    assert_eq!(m["resourceType"], "MedicationRequest");
    assert_eq!(m["intent"], "order");
    assert_eq!(m["dosageInstruction"][0]["timing"]["repeat"]["boundsPeriod"]["start"], "2011-03-01");
}

#[test]
fn problem_status_negation_and_diagnoses() {
    let entry = |negated: &str| {
        format!(
            r#"<entry><act classCode="ACT" moodCode="EVN">
  <templateId root="2.16.840.1.113883.10.20.22.4.3" extension="2015-08-01"/>
  <id root="1.2.3.4" extension="c1"/>
  <code code="CONC" codeSystem="2.16.840.1.113883.5.6"/>
  <statusCode code="completed"/>
  <author><time value="20200101"/><assignedAuthor><id root="2.16.840.1.113883.4.6" extension="1234567893"/>
    <assignedPerson><name><family>Primary</family></name></assignedPerson></assignedAuthor></author>
  <entryRelationship typeCode="SUBJ"><observation classCode="OBS" moodCode="EVN" negationInd="{negated}">
    <templateId root="2.16.840.1.113883.10.20.22.4.4" extension="2015-08-01"/>
    <id root="1.2.3.4" extension="p1"/>
    <code code="55607006" codeSystem="2.16.840.1.113883.6.96"/>
    <statusCode code="completed"/>
    <effectiveTime><low value="20190101"/><high value="20191231"/></effectiveTime>
    <value xsi:type="CD" code="233604007" codeSystem="2.16.840.1.113883.6.96" displayName="Pneumonia">
      <translation code="J18.9" codeSystem="2.16.840.1.113883.6.90"/>
    </value>
    <entryRelationship typeCode="REFR"><observation classCode="OBS" moodCode="EVN">
      <templateId root="2.16.840.1.113883.10.20.22.4.6"/>
      <code code="33999-4" codeSystem="2.16.840.1.113883.6.1"/>
      <value xsi:type="CD" code="413322009" codeSystem="2.16.840.1.113883.6.96"/>
    </observation></entryRelationship>
  </observation></entryRelationship>
</act></entry>"#
        )
    };
    let d = doc(&section("5.1", "11450-4", "", &entry("false")));
    valid(&d);
    let c = of(&d, SectionKind::Problems)[0];
    assert_eq!(c["clinicalStatus"]["coding"][0]["code"], "resolved");
    assert_eq!(c["verificationStatus"]["coding"][0]["code"], "confirmed");
    assert_eq!(c["category"][0]["coding"][0]["code"], "problem-list-item");
    assert_eq!(c["code"]["coding"][1]["system"], "http://hl7.org/fhir/sid/icd-10-cm");
    assert_eq!(c["onsetDateTime"], "2019-01-01");
    assert_eq!(c["abatementDateTime"], "2019-12-31");
    assert_eq!(c["recordedDate"], "2020-01-01");
    assert_eq!(c["identifier"][0]["system"], "urn:oid:1.2.3.4");
    let recorder = c["recorder"]["reference"].as_str().unwrap();
    // The problem's author is the document's author: one Practitioner.
    assert_eq!(recorder, d.author_urls[0]);
    let d = doc(&section("5.1", "11450-4", "", &entry("true")));
    assert_eq!(of(&d, SectionKind::Problems)[0]["verificationStatus"]["coding"][0]["code"], "refuted");
    // A discharge diagnosis section: encounter-diagnosis.
    let d = doc(&section("24", "11535-2", "", &entry("false")));
    assert_eq!(of(&d, SectionKind::Problems)[0]["category"][0]["coding"][0]["code"], "encounter-diagnosis");
}

#[test]
fn allergies_reactions_and_no_known_drug_allergy() {
    let observation = |negated: &str, value: &str, substance: &str| {
        format!(
            r#"<entry><act classCode="ACT" moodCode="EVN">
  <templateId root="2.16.840.1.113883.10.20.22.4.30" extension="2015-08-01"/>
  <code code="CONC" codeSystem="2.16.840.1.113883.5.6"/>
  <statusCode code="active"/>
  <entryRelationship typeCode="SUBJ"><observation classCode="OBS" moodCode="EVN" negationInd="{negated}">
    <templateId root="2.16.840.1.113883.10.20.22.4.7" extension="2014-06-09"/>
    <code code="ASSERTION" codeSystem="2.16.840.1.113883.5.4"/>
    <statusCode code="completed"/>
    <effectiveTime><low value="2010"/></effectiveTime>
    <value xsi:type="CD" code="{value}" codeSystem="2.16.840.1.113883.6.96"/>
    <participant typeCode="CSM"><participantRole classCode="MANU"><playingEntity classCode="MMAT">{substance}</playingEntity></participantRole></participant>
    <entryRelationship typeCode="MFST" inversionInd="true"><observation classCode="OBS" moodCode="EVN">
      <templateId root="2.16.840.1.113883.10.20.22.4.9" extension="2014-06-09"/>
      <code code="ASSERTION" codeSystem="2.16.840.1.113883.5.4"/>
      <value xsi:type="CD" code="247472004" codeSystem="2.16.840.1.113883.6.96" displayName="Hives"/>
      <entryRelationship typeCode="SUBJ" inversionInd="true"><observation classCode="OBS" moodCode="EVN">
        <templateId root="2.16.840.1.113883.10.20.22.4.8" extension="2014-06-09"/>
        <code code="SEV" codeSystem="2.16.840.1.113883.5.4"/>
        <value xsi:type="CD" code="24484000" codeSystem="2.16.840.1.113883.6.96"/>
      </observation></entryRelationship>
    </observation></entryRelationship>
    <entryRelationship typeCode="SUBJ" inversionInd="true"><observation classCode="OBS" moodCode="EVN">
      <templateId root="2.16.840.1.113883.10.20.22.4.145"/>
      <code code="82606-5" codeSystem="2.16.840.1.113883.6.1"/>
      <value xsi:type="CD" code="CRITH" codeSystem="2.16.840.1.113883.5.1063"/>
    </observation></entryRelationship>
  </observation></entryRelationship>
</act></entry>"#
        )
    };
    let penicillin = r#"<code code="7980" codeSystem="2.16.840.1.113883.6.88" displayName="Penicillin G"/>"#;
    let d = doc(&section("6.1", "48765-2", "", &observation("false", "416098002", penicillin)));
    valid(&d);
    let a = of(&d, SectionKind::Allergies)[0];
    assert_eq!(a["type"], "allergy");
    assert_eq!(a["category"][0], "medication");
    assert_eq!(a["criticality"], "high");
    assert_eq!(a["clinicalStatus"]["coding"][0]["code"], "active");
    assert_eq!(a["code"]["coding"][0]["code"], "7980");
    assert_eq!(a["onsetDateTime"], "2010");
    assert_eq!(a["reaction"][0]["manifestation"][0]["coding"][0]["code"], "247472004");
    assert_eq!(a["reaction"][0]["severity"], "severe");

    // No known drug allergy.
    let d = doc(&section("6.1", "48765-2", "", &observation("true", "416098002", r#"<code nullFlavor="NA"/>"#)));
    valid(&d);
    let a = of(&d, SectionKind::Allergies);
    assert_eq!(a.len(), 1);
    assert_eq!(a[0]["code"]["coding"][0]["code"], "409137002");
    assert_eq!(a[0]["verificationStatus"]["coding"][0]["code"], "confirmed");
    assert!(a[0].get("reaction").is_none() && a[0].get("criticality").is_none());

    // Not allergic to penicillin: the substance, refuted.
    let d = doc(&section("6.1", "48765-2", "", &observation("true", "416098002", penicillin)));
    let a = of(&d, SectionKind::Allergies)[0];
    assert_eq!(a["code"]["coding"][0]["code"], "7980");
    assert_eq!(a["verificationStatus"]["coding"][0]["code"], "refuted");

    // No substance and not negated: a warning.
    let d = doc(&section("6.1", "48765-2", "", &observation("false", "416098002", r#"<code nullFlavor="UNK"/>"#)));
    assert!(of(&d, SectionKind::Allergies).is_empty());
    assert_eq!(d.warnings.len(), 1);
    assert_eq!(d.warnings[0].location, "48765-2 entry 1");
}

#[test]
fn results_values_by_type() {
    let obs = |ty: &str, value: &str| {
        format!(
            r##"<component><observation classCode="OBS" moodCode="EVN">
  <templateId root="2.16.840.1.113883.10.20.22.4.2" extension="2015-08-01"/>
  <id root="a0a8bd36-2b9c-4c8d-8ad6-1f2ad3c1e1b5"/>
  <code code="5778-6" codeSystem="2.16.840.1.113883.6.1"/>
  <statusCode code="completed"/>
  <effectiveTime value="20240101083000-0500"/>
  <value xsi:type="{ty}" {value}
  <interpretationCode code="H" codeSystem="2.16.840.1.113883.5.83"/>
  <referenceRange><observationRange><text><reference value="#range1"/></text></observationRange></referenceRange>
</observation></component>"##
        )
    };
    let entry = format!(
        r#"<entry><organizer classCode="BATTERY" moodCode="EVN">
  <templateId root="2.16.840.1.113883.10.20.22.4.1" extension="2015-08-01"/>
  <code code="24357-6" codeSystem="2.16.840.1.113883.6.1"/>
  <statusCode code="active"/>
  <effectiveTime><low value="20240101"/><high value="20240101"/></effectiveTime>
  {}{}{}{}
</organizer></entry>"#,
        obs("INT", r#"value="3"/>"#),
        obs("ST", ">yellow</value>"),
        obs("CD", r##"code="Y" codeSystem="1.2.3"><originalText><reference value="#c1"/></originalText></value>"##),
        obs("IVL_PQ", r#"><low value="1" unit="mg/dL"/><high value="2" unit="mg/dL"/></value>"#),
    );
    let text = r#"<content ID="range1">clear, yellow</content><content ID="c1">Yellow</content>"#;
    let d = doc(&section("3.1", "30954-2", text, &entry));
    valid(&d);
    let r = of(&d, SectionKind::Results);
    assert_eq!(r.len(), 5);
    assert_eq!(r[0]["valueInteger"], 3);
    assert_eq!(r[0]["interpretation"][0]["coding"][0]["code"], "H");
    assert_eq!(r[0]["referenceRange"][0]["text"], "clear, yellow");
    assert_eq!(r[0]["effectiveDateTime"], "2024-01-01T08:30:00-05:00");
    assert_eq!(r[0]["category"][0]["coding"][0]["code"], "laboratory");
    assert_eq!(r[1]["valueString"], "yellow");
    assert_eq!(r[2]["valueCodeableConcept"]["coding"][0]["system"], "urn:oid:1.2.3");
    assert_eq!(r[2]["valueCodeableConcept"]["text"], "Yellow");
    assert_eq!(r[3]["valueRange"]["high"]["value"], 2);
    let report = r[4];
    assert_eq!(report["resourceType"], "DiagnosticReport");
    assert_eq!(report["status"], "preliminary");
    assert_eq!(report["effectiveDateTime"], "2024-01-01");
    assert_eq!(report["result"].as_array().unwrap().len(), 4);
}

#[test]
fn encounters_class_defaults_to_ambulatory() {
    let entry = |translation: &str| {
        format!(
            r#"<entry><encounter classCode="ENC" moodCode="EVN">
  <templateId root="2.16.840.1.113883.10.20.22.4.49" extension="2015-08-01"/>
  <code code="99213" codeSystem="2.16.840.1.113883.6.12">{translation}</code>
  <effectiveTime><low value="201209271300-0500"/><high value="201209271400-0500"/></effectiveTime>
  {PERFORMER}
  <participant typeCode="LOC"><participantRole classCode="SDLOC">
    <templateId root="2.16.840.1.113883.10.20.22.4.32"/>
    <code code="1160-1" codeSystem="2.16.840.1.113883.6.259"/>
    <playingEntity classCode="PLC"><name>Urgent Care</name></playingEntity>
  </participantRole></participant>
  <entryRelationship typeCode="REFR"><act classCode="ACT" moodCode="EVN">
    <templateId root="2.16.840.1.113883.10.20.22.4.80" extension="2015-08-01"/>
    <code code="29308-4" codeSystem="2.16.840.1.113883.6.1"/>
    <entryRelationship typeCode="SUBJ"><observation classCode="OBS" moodCode="EVN">
      <templateId root="2.16.840.1.113883.10.20.22.4.4" extension="2015-08-01"/>
      <code code="282291009" codeSystem="2.16.840.1.113883.6.96"/>
      <value xsi:type="CD" code="233604007" codeSystem="2.16.840.1.113883.6.96"/>
    </observation></entryRelationship>
  </act></entryRelationship>
</encounter></entry>"#
        )
    };
    let d = doc(&section("22.1", "46240-8", "", &entry("")));
    valid(&d);
    let e = of(&d, SectionKind::Encounters)[0];
    assert_eq!(e["class"]["code"], "AMB");
    assert_eq!(e["status"], "finished");
    assert_eq!(e["period"]["end"], "2012-09-27T14:00:00-05:00");
    assert_eq!(e["reasonCode"][0]["coding"][0]["code"], "233604007");
    let location = e["location"][0]["location"]["reference"].as_str().unwrap();
    let location = d.resources.iter().find(|m| m.full_url == location).unwrap();
    assert_eq!(location.resource["name"], "Urgent Care");
    assert!(e["participant"][0]["individual"]["reference"].is_string());
    let d =
        doc(&section("22.1", "46240-8", "", &entry(r#"<translation code="IMP" codeSystem="2.16.840.1.113883.5.4"/>"#)));
    assert_eq!(of(&d, SectionKind::Encounters)[0]["class"]["code"], "IMP");
}

#[test]
fn sections_by_r11_template_or_loinc_code_and_nested() {
    let immunization = |negated: &str| {
        format!(
            r#"<entry><substanceAdministration classCode="SBADM" moodCode="EVN" negationInd="{negated}">
  <templateId root="2.16.840.1.113883.10.20.22.4.52"/>
  <statusCode code="completed"/>
  <effectiveTime value="20100815"/>
  <consumable><manufacturedProduct><manufacturedMaterial>
    <code code="88" codeSystem="2.16.840.1.113883.12.292"/>
    <lotNumberText>L1</lotNumberText>
  </manufacturedMaterial></manufacturedProduct></consumable>
  <entryRelationship typeCode="RSON"><observation classCode="OBS" moodCode="EVN">
    <templateId root="2.16.840.1.113883.10.20.22.4.53"/>
    <code code="PATOBJ" codeSystem="2.16.840.1.113883.5.8"/>
  </observation></entryRelationship>
</substanceAdministration></entry>"#
        )
    };
    // R1.1 template (no extension).
    let r11 = format!(
        r#"<component><section><templateId root="2.16.840.1.113883.10.20.22.2.2.1"/><title>I</title><text/>{}</section></component>"#,
        immunization("false")
    );
    // No template, the LOINC code only; within another section.
    let nested = format!(
        r#"<component><section><code code="X"/><title>Outer</title><text/>
  <component><section><code code="11369-6" codeSystem="2.16.840.1.113883.6.1"/><text/>{}</section></component>
</section></component>"#,
        immunization("true")
    );
    let d = doc(&format!("{r11}{nested}"));
    valid(&d);
    let i = of(&d, SectionKind::Immunizations);
    assert_eq!(i.len(), 2);
    assert_eq!(i[0]["status"], "completed");
    assert_eq!(i[0]["lotNumber"], "L1");
    assert_eq!(i[0]["occurrenceDateTime"], "2010-08-15");
    assert!(i[0].get("statusReason").is_none());
    assert_eq!(i[1]["status"], "not-done");
    assert_eq!(i[1]["statusReason"]["coding"][0]["code"], "PATOBJ");
    assert!(d.warnings.is_empty());
}

#[test]
fn plan_goals_and_health_concerns() {
    let plan = r##"
<entry><procedure classCode="PROC" moodCode="RQO">
  <templateId root="2.16.840.1.113883.10.20.22.4.41" extension="2014-06-09"/>
  <code code="73761001" codeSystem="2.16.840.1.113883.6.96"/>
  <statusCode code="active"/>
  <effectiveTime value="20240601"/>
</procedure></entry>
<entry><act classCode="ACT" moodCode="INT">
  <templateId root="2.16.840.1.113883.10.20.22.4.20" extension="2014-06-09"/>
  <code code="311401005" codeSystem="2.16.840.1.113883.6.96" displayName="Patient education"/>
  <text><reference value="#i1"/></text>
  <statusCode code="completed"/>
</act></entry>
<entry><substanceAdministration classCode="SBADM" moodCode="INT">
  <templateId root="2.16.840.1.113883.10.20.22.4.42" extension="2014-06-09"/>
  <statusCode code="active"/>
  <consumable><manufacturedProduct><manufacturedMaterial>
    <code code="197361" codeSystem="2.16.840.1.113883.6.88"/>
  </manufacturedMaterial></manufacturedProduct></consumable>
</substanceAdministration></entry>
<entry><act classCode="ACT" moodCode="INT">
  <templateId root="2.16.840.1.113883.10.20.22.4.39" extension="2014-06-09"/>
  <code nullFlavor="UNK"/>
  <statusCode code="active"/>
</act></entry>"##;
    let goals = r#"
<entry><observation classCode="OBS" moodCode="GOL">
  <templateId root="2.16.840.1.113883.10.20.22.4.121" extension="2015-08-01"/>
  <code code="29463-7" codeSystem="2.16.840.1.113883.6.1" displayName="Body weight"/>
  <statusCode code="active"/>
  <effectiveTime value="20241231"/>
  <value xsi:type="PQ" value="80" unit="kg"/>
</observation></entry>"#;
    let concerns = r#"
<entry><act classCode="ACT" moodCode="EVN">
  <templateId root="2.16.840.1.113883.10.20.22.4.132" extension="2015-08-01"/>
  <code code="75310-3" codeSystem="2.16.840.1.113883.6.1"/>
  <statusCode code="active"/>
</act></entry>"#;
    let d = doc(&format!(
        "{}{}{}",
        section("10", "18776-5", r#"<paragraph ID="i1">Walk daily</paragraph>"#, plan),
        section("60", "61146-7", "", goals),
        section("58", "75310-3", "", concerns)
    ));
    valid(&d);
    let p = of(&d, SectionKind::PlanOfTreatment);
    assert_eq!(p.len(), 3);
    assert_eq!(p[0]["resourceType"], "ServiceRequest");
    assert_eq!(p[0]["intent"], "plan");
    assert_eq!(p[0]["occurrenceDateTime"], "2024-06-01");
    assert_eq!(p[1]["resourceType"], "CommunicationRequest");
    assert_eq!(p[1]["payload"][0]["contentString"], "Walk daily");
    assert_eq!(p[1]["status"], "completed");
    assert_eq!(p[2]["resourceType"], "MedicationRequest");
    assert_eq!(p[2]["intent"], "plan");
    assert_eq!(d.warnings.len(), 1);
    assert!(d.warnings[0].message.contains("without a code"));
    assert_eq!(d.warnings[0].location, "18776-5 entry 4");
    let g = of(&d, SectionKind::Goals)[0];
    assert_eq!(g["lifecycleStatus"], "active");
    assert_eq!(g["target"][0]["measure"]["coding"][0]["code"], "29463-7");
    assert_eq!(g["target"][0]["detailQuantity"]["value"], 80);
    assert_eq!(g["target"][0]["dueDate"], "2024-12-31");
    let h = of(&d, SectionKind::HealthConcerns)[0];
    assert_eq!(h["category"][0]["coding"][0]["code"], "health-concern");
    assert_eq!(h["code"]["coding"][0]["code"], "75310-3");
}

#[test]
fn deeply_nested_sections_stop_with_a_warning() {
    let mut sections = String::from("<component><section><text/>");
    for _ in 0..50 {
        sections.push_str("<component><section><text/>");
    }
    for _ in 0..51 {
        sections.push_str("</section></component>");
    }
    let d = doc(&sections);
    assert_eq!(d.warnings.len(), 1);
}

#[test]
fn no_known_problems_and_stated_no_known_allergy() {
    let problem = r#"<entry><act classCode="ACT" moodCode="EVN">
  <templateId root="2.16.840.1.113883.10.20.22.4.3" extension="2015-08-01"/>
  <code code="CONC" codeSystem="2.16.840.1.113883.5.6"/>
  <statusCode code="active"/>
  <entryRelationship typeCode="SUBJ"><observation classCode="OBS" moodCode="EVN" negationInd="true">
    <templateId root="2.16.840.1.113883.10.20.22.4.4" extension="2015-08-01"/>
    <code code="55607006" codeSystem="2.16.840.1.113883.6.96"/>
    <statusCode code="completed"/>
    <value xsi:type="CD" code="55607006" codeSystem="2.16.840.1.113883.6.96" displayName="Problem"/>
  </observation></entryRelationship>
</act></entry>"#;
    let allergy = r#"<entry><act classCode="ACT" moodCode="EVN">
  <templateId root="2.16.840.1.113883.10.20.22.4.30" extension="2015-08-01"/>
  <code code="CONC" codeSystem="2.16.840.1.113883.5.6"/>
  <statusCode code="active"/>
  <entryRelationship typeCode="SUBJ"><observation classCode="OBS" moodCode="EVN">
    <templateId root="2.16.840.1.113883.10.20.22.4.7" extension="2014-06-09"/>
    <code code="ASSERTION" codeSystem="2.16.840.1.113883.5.4"/>
    <statusCode code="completed"/>
    <value xsi:type="CD" code="409137002" codeSystem="2.16.840.1.113883.6.96" displayName="No known drug allergy"/>
  </observation></entryRelationship>
</act></entry>"#;
    let d = doc(&format!("{}{}", section("5.1", "11450-4", "", problem), section("6.1", "48765-2", "", allergy)));
    valid(&d);
    let c = of(&d, SectionKind::Problems)[0];
    assert_eq!(c["code"]["coding"][0]["code"], "160245001");
    assert_eq!(c["verificationStatus"]["coding"][0]["code"], "confirmed");
    let a = of(&d, SectionKind::Allergies)[0];
    assert_eq!(a["code"]["coding"][0]["code"], "409137002");
    assert_eq!(a["verificationStatus"]["coding"][0]["code"], "confirmed");
    assert!(d.warnings.is_empty(), "{:?}", d.warnings);
}
