//! C-CDA documents through the exchange service, over the embedded store: the eight HL7
//! examples filed (per section, one resource per coded entry, counted from the XML by
//! `test_support::ccda`), the same document twice adding nothing, the reconciliation queue
//! holding exactly the new problems, allergies and medications and the clinician's
//! decisions on them, the original kept with Provenance on what was made, and bad documents
//! refused with nothing stored.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a failed check panics, like assert!")]

use access::{Access, Door, Who};
use chart::reconcile::{self, Decision};
use exchange::documents::import_ccda;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use store::Records;

use test_support::ccda::{EXAMPLES, example};

fn store() -> (tempfile::TempDir, Records, Access) {
    let dir = tempfile::tempdir().unwrap();
    let backend = store_sqlite::SqliteBackend::open(dir.path()).unwrap();
    let records = Records::new(Arc::new(backend));
    let access = Door::open(records.clone()).enter(Who::Anyone);
    (dir, records, access)
}

fn counts(records: &Records) -> BTreeMap<String, u64> {
    records.backend().count_by_type().unwrap().into_iter().collect()
}

fn body(records: &Records, reference: &str) -> Value {
    let (t, id) = reference.split_once('/').unwrap();
    serde_json::from_str(records.read(t, id).unwrap().body.as_deref().unwrap()).unwrap()
}

fn search(records: &Records, resource_type: &str, pairs: &[(&str, &str)]) -> Vec<Value> {
    let params: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let query = search::query::SearchQuery::parse(Some(resource_type), &params, false).unwrap();
    let page = records.search(&query, 1000).unwrap();
    page.matches.iter().map(|v| serde_json::from_str(v.body.as_deref().unwrap()).unwrap()).collect()
}

#[test]
fn every_example_files_one_resource_per_coded_entry_once() {
    for name in EXAMPLES {
        let (_dir, records, access) = store();
        let xml = example(name);
        let report = import_ccda(&access, &xml, None).unwrap_or_else(|e| panic!("{name}: {e}"));
        let want = test_support::ccda::coded_entries(std::str::from_utf8(&xml).unwrap());
        let want: BTreeMap<&str, usize> = want.into_iter().filter(|(_, n)| *n > 0).collect();
        let got: BTreeMap<&str, usize> = report.filed.clone();
        eprintln!("{name}: filed {got:?}, pending {}, warnings {}", report.pending.len(), report.warnings.len());
        assert_eq!(got, want, "{name}: resources made per section");
        assert!(report.patient_created && !report.already_imported);

        // The reconciliation queue holds exactly the new problems, allergies and medications.
        let queued: Vec<String> = reconcile::queue(&access, &report.patient)
            .unwrap()
            .into_iter()
            .map(|i| format!("{}/{}", i.resource_type, i.id))
            .collect();
        let mut pending = report.pending.clone();
        pending.sort();
        let mut queued_sorted = queued.clone();
        queued_sorted.sort();
        assert_eq!(queued_sorted, pending, "{name}: the queue");
        let reconciled = ["problems", "allergies", "medications"].iter().filter_map(|s| got.get(s)).sum::<usize>();
        assert_eq!(pending.len(), reconciled, "{name}: every new problem, allergy and medication waits");
        // …and none of them is on the chart's lists.
        let lists = chart::lists::lists(&access, &report.patient).unwrap();
        let listed: Vec<String> = (lists.problems.iter().map(|p| format!("Condition/{}", p.id)))
            .chain(lists.allergies.iter().map(|a| format!("AllergyIntolerance/{}", a.id)))
            .chain(lists.medications.iter().map(|m| format!("MedicationRequest/{}", m.id)))
            .collect();
        assert!(!pending.iter().any(|p| listed.contains(p)), "{name}: a pending item on the lists");

        // The original, byte for byte, and the Provenance of everything made.
        let reference = body(&records, &format!("DocumentReference/{}", report.document_reference));
        assert_eq!(reference["content"][0]["format"]["code"], ccda::FORMAT_STRUCTURED_BODY_R21, "{name}");
        assert_eq!(reference["subject"]["reference"], format!("Patient/{}", report.patient));
        let binary = body(&records, reference["content"][0]["attachment"]["url"].as_str().unwrap());
        use base64::Engine;
        let kept = base64::engine::general_purpose::STANDARD.decode(binary["data"].as_str().unwrap()).unwrap();
        assert_eq!(kept, xml, "{name}: the exact bytes");
        let provenances = search(&records, "Provenance", &[]);
        assert_eq!(provenances.len(), 1);
        let provenance = &provenances[0];
        assert_eq!(
            provenance["entity"][0]["what"]["reference"],
            format!("DocumentReference/{}", report.document_reference)
        );
        let targets: Vec<&str> =
            provenance["target"].as_array().unwrap().iter().map(|t| t["reference"].as_str().unwrap()).collect();
        assert_eq!(
            targets.len(),
            got.values().sum::<usize>() + 2,
            "{name}: every resource made, the document and the patient"
        );
        for item in &report.pending {
            assert!(targets.contains(&item.as_str()));
        }

        // The same document again adds nothing.
        let before = counts(&records);
        let again = import_ccda(&access, &xml, None).unwrap();
        assert!(again.already_imported && again.filed.is_empty());
        assert_eq!((again.patient, again.document_reference), (report.patient.clone(), report.document_reference));
        assert_eq!(counts(&records), before, "{name}: a second import");
    }
}

#[test]
fn what_the_chart_holds_is_not_filed_again_and_decisions_take_effect() {
    let (_dir, records, access) = store();
    let xml = example("CCD_1");
    let document = ccda::read(&xml).unwrap();
    let problems: Vec<&Value> = document
        .resources
        .iter()
        .filter(|m| m.section == Some(ccda::SectionKind::Problems))
        .map(|m| &m.resource)
        .collect();
    assert!(problems.len() >= 2);
    // The chart already holds the first problem, under one of its codes only (a translation
    // of the document's, say).
    let first_codes = reconcile::codes_of(problems[0].get("code"));
    let (system, code) = first_codes.last().unwrap().split_once('|').unwrap();
    let patient = records
        .create(json!({"resourceType": "Patient", "name": [{"family": "Held"}]}), None)
        .unwrap()
        .version
        .unwrap()
        .id;
    let held = records
        .create(
            json!({"resourceType": "Condition", "subject": {"reference": format!("Patient/{patient}")},
                   "code": {"coding": [{"system": system, "code": code}]},
                   "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]}}),
            None,
        )
        .unwrap()
        .version
        .unwrap()
        .id;
    let report = import_ccda(&access, &xml, Some(&patient)).unwrap();
    assert_eq!(report.patient, patient);
    assert!(!report.patient_created);
    let sharing =
        problems.iter().filter(|p| reconcile::codes_of(p.get("code")).contains(first_codes.last().unwrap())).count();
    assert!(sharing >= 1);
    assert_eq!(report.already_on_chart, sharing);
    assert_eq!(report.filed["problems"], problems.len() - sharing);
    let queue = reconcile::queue(&access, &patient).unwrap();
    assert!(!queue.iter().any(|i| i.id == held));
    assert_eq!(chart::lists::lists(&access, &patient).unwrap().problems.len(), 1, "only the chart's own");

    // Accept one problem, reject another, merge an allergy or medication into… (CCD_1 has two
    // problems left): accept the first, reject the second.
    let incoming: Vec<_> = queue.iter().filter(|i| i.resource_type == "Condition").collect();
    assert!(incoming.len() >= 2);
    reconcile::decide(&access, &patient, "Condition", &incoming[0].id, &Decision::Accept).unwrap();
    reconcile::decide(&access, &patient, "Condition", &incoming[1].id, &Decision::Reject).unwrap();
    let accepted = body(&records, &format!("Condition/{}", incoming[0].id));
    assert_eq!(accepted["verificationStatus"]["coding"][0]["code"], "confirmed");
    assert_eq!(reconcile::tag_of(&accepted), Some("accepted"));
    let rejected = body(&records, &format!("Condition/{}", incoming[1].id));
    assert_eq!(rejected["verificationStatus"]["coding"][0]["code"], "entered-in-error");
    let problems_now: Vec<String> =
        chart::lists::lists(&access, &patient).unwrap().problems.into_iter().map(|p| p.id).collect();
    assert!(problems_now.contains(&incoming[0].id) && !problems_now.contains(&incoming[1].id));
    assert!(problems_now.contains(&held));
    // A decided item is no longer in the queue, and cannot be decided again.
    assert!(!reconcile::queue(&access, &patient).unwrap().iter().any(|i| i.id == incoming[0].id));
    assert!(reconcile::decide(&access, &patient, "Condition", &incoming[0].id, &Decision::Reject).is_err());

    // Merge: of the two incoming allergies, the first is accepted and the second folded into it
    // (its codes added to the first's, itself retired and naming where it went).
    let allergies: Vec<_> = queue.iter().filter(|i| i.resource_type == "AllergyIntolerance").collect();
    assert_eq!(allergies.len(), 2);
    reconcile::decide(&access, &patient, "AllergyIntolerance", &allergies[0].id, &Decision::Accept).unwrap();
    let into = Decision::MergeInto(allergies[0].id.clone());
    reconcile::decide(&access, &patient, "AllergyIntolerance", &allergies[1].id, &into).unwrap();
    let kept = body(&records, &format!("AllergyIntolerance/{}", allergies[0].id));
    for code in reconcile::codes_of(allergies[1].resource.get("code")) {
        assert!(reconcile::codes_of(kept.get("code")).contains(&code), "{code} merged in");
    }
    let merged = body(&records, &format!("AllergyIntolerance/{}", allergies[1].id));
    assert_eq!(reconcile::tag_of(&merged), Some("merged"));
    assert_eq!(merged["verificationStatus"]["coding"][0]["code"], "entered-in-error");
    assert_eq!(
        merged["extension"][0]["valueReference"]["reference"],
        format!("AllergyIntolerance/{}", allergies[0].id)
    );
    let allergies_now: Vec<String> =
        chart::lists::lists(&access, &patient).unwrap().allergies.into_iter().map(|a| a.id).collect();
    assert_eq!(allergies_now, [allergies[0].id.clone()]);
    // Medications: merge one into an accepted one of the same family is refused when the target
    // is itself pending.
    let medications: Vec<_> = reconcile::queue(&access, &patient)
        .unwrap()
        .into_iter()
        .filter(|i| i.resource_type.starts_with("Medication"))
        .collect();
    if medications.len() >= 2 {
        let refused = reconcile::decide(
            &access,
            &patient,
            &medications[0].resource_type,
            &medications[0].id,
            &Decision::MergeInto(medications[1].id.clone()),
        );
        assert!(refused.is_err(), "a pending item is not a chart item to merge into");
    }
}

#[test]
fn a_document_to_a_known_patient_found_by_identifier() {
    let (_dir, _records, access) = store();
    let first = import_ccda(&access, &example("CCD_1"), None).unwrap();
    // Another document of the same patient (same MRN): filed to the same patient.
    let second = import_ccda(&access, &example("Progress_Note"), None).unwrap();
    let document = ccda::read(&example("Progress_Note")).unwrap();
    let same_mrn = {
        let one = ccda::read(&example("CCD_1")).unwrap();
        let ids = |d: &ccda::Document| {
            d.resources.iter().find(|m| m.full_url == d.patient_url).unwrap().resource["identifier"].clone()
        };
        ids(&one) == ids(&document)
    };
    assert_eq!(second.patient == first.patient, same_mrn, "found by identifier exactly when it is the same");
}

#[test]
fn bad_documents_are_refused_and_nothing_is_stored() {
    let (_dir, records, access) = store();
    let ccd = example("CCD_1");
    let truncated = &ccd[..ccd.len() / 2];
    let bomb = br#"<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<ClinicalDocument xmlns="urn:hl7-org:v3"><title>&lol3;</title></ClinicalDocument>"#;
    let external = br#"<?xml version="1.0"?>
<!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<ClinicalDocument xmlns="urn:hl7-org:v3"><title>&x;</title></ClinicalDocument>"#;
    let huge = vec![b' '; ccda::MAX_DOCUMENT_BYTES + 1];
    let cases: [(&str, &[u8]); 5] = [
        ("truncated", truncated),
        ("not CDA", b"<html><body>hello</body></html>"),
        ("billion laughs", bomb),
        ("external entity", external),
        ("too large", &huge),
    ];
    for (what, bytes) in cases {
        let error = import_ccda(&access, bytes, None).err().unwrap_or_else(|| panic!("{what} was accepted"));
        assert!(matches!(error.class(), fhir::ErrorClass::Invalid | fhir::ErrorClass::TooLarge), "{what}: {error}");
        assert!(counts(&records).is_empty(), "{what}: nothing stored");
    }
}

#[test]
fn a_document_without_a_known_identifier_is_filed_to_the_patient_the_matcher_is_certain_of() {
    let (_dir, records, access) = store();
    let xml = example("CCD_1");
    // The document's own patient, registered here without any of its identifiers but with
    // the same name, birth date, sex and address (and a phone number of the practice's).
    let read = ccda::read(&xml).unwrap();
    let mut patient = read.resources.iter().find(|m| m.full_url == read.patient_url).unwrap().resource.clone();
    patient.as_object_mut().unwrap().remove("identifier");
    patient.as_object_mut().unwrap().remove("managingOrganization");
    let here = records.create(patient.clone(), None).unwrap().version.unwrap().id;
    // Someone else with the same family name.
    let mut other = patient.clone();
    other["name"][0]["given"] = json!(["Zebulon"]);
    other["birthDate"] = json!("1931-01-01");
    records.create(other, None).unwrap();

    let report = import_ccda(&access, &xml, None).unwrap();
    assert_eq!(report.patient, here, "filed to the record the matcher is certain of");
    assert!(!report.patient_created);
}

#[test]
fn a_consult_note_naming_the_referral_it_answers_is_related_to_it() {
    let (_dir, records, access) = store();
    let create = |resource: Value| records.create(resource, None).unwrap().version.unwrap().id;
    let patient = create(json!({"resourceType": "Patient", "name": [{"family": "Doe", "given": ["Jane"]}],
        "gender": "female", "birthDate": "1968-05-17", "identifier": [{"system": "urn:oid:1.2.3.4", "value": "M100"}]}));
    let referral = create(json!({"resourceType": "ServiceRequest", "status": "active", "intent": "order",
        "category": [{"coding": [{"system": "http://snomed.info/sct", "code": "3457005"}]}],
        "code": {"text": "Endocrinology"}, "subject": {"reference": format!("Patient/{patient}")},
        "identifier": [{"system": "urn:oid:2.16.840.1.113883.19.5", "value": "REF-77"}]}));
    let other = create(json!({"resourceType": "ServiceRequest", "status": "active", "intent": "order",
        "category": [{"coding": [{"system": "http://snomed.info/sct", "code": "3457005"}]}],
        "code": {"text": "Cardiology"}, "subject": {"reference": format!("Patient/{patient}")}}));
    records
        .update(
            "ServiceRequest",
            &other,
            json!({"resourceType": "ServiceRequest", "id": other, "status": "completed", "intent": "order",
                "code": {"text": "Cardiology"}, "subject": {"reference": format!("Patient/{patient}")}}),
            None,
        )
        .unwrap();
    // The referral note names the open referral as the order it is for (and not the done one).
    let custodian = exchange::documents::custodian("http://continuum.example/fhir");
    let note =
        exchange::documents::export_ccda(&access, &patient, ccda::DocumentType::Referral, (None, None), &custodian)
            .unwrap();
    assert_eq!(note.xml.matches("<inFulfillmentOf>").count(), 1, "{}", note.xml);
    assert!(note.xml.contains(&format!("extension=\"ServiceRequest/{referral}\"")));
    assert!(note.xml.contains("extension=\"REF-77\""));
    let read = ccda::read(note.xml.as_bytes()).unwrap();
    assert_eq!(read.orders.len(), 2);
    // The consult note that comes back names the same order: filed, it is related to it.
    let report = import_ccda(&access, note.xml.as_bytes(), Some(&patient)).unwrap();
    let filed = body(&records, &format!("DocumentReference/{}", report.document_reference));
    assert_eq!(filed["context"]["related"], json!([{"reference": format!("ServiceRequest/{referral}")}]));
    // By the sender's own order identifier alone, too.
    let by_identifier = note
        .xml
        .replace(&format!("extension=\"ServiceRequest/{referral}\""), "extension=\"ServiceRequest/unknown\"")
        .replace(&note.id, "5f1c2a7e-1111-4b7c-9d0e-2a2b3c4d5e6f");
    let report = import_ccda(&access, by_identifier.as_bytes(), Some(&patient)).unwrap();
    let filed = body(&records, &format!("DocumentReference/{}", report.document_reference));
    assert_eq!(filed["context"]["related"], json!([{"reference": format!("ServiceRequest/{referral}")}]));
}
