//! The note lifecycle on a real store: a signed note is changed only by an amendment, whoever
//! writes; of two concurrent amendments of one note exactly one wins.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a failed check panics, like assert!")]

use serde_json::{Value, json};
use std::sync::Arc;
use store::Records;

fn store() -> (tempfile::TempDir, Records) {
    let dir = tempfile::tempdir().unwrap();
    let backend = store_sqlite::SqliteBackend::open(dir.path()).unwrap();
    (dir, Records::new(Arc::new(backend)).with_hook(Arc::new(chart::NoteLifecycle)))
}

fn note(patient: &str, text: &str, doc_status: &str) -> Value {
    use base64::Engine;
    json!({
        "resourceType": "DocumentReference",
        "status": "current",
        "docStatus": doc_status,
        "type": {"coding": [{"system": "http://loinc.org", "code": "11506-3"}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "content": [{"attachment": {"contentType": "text/markdown",
            "data": base64::engine::general_purpose::STANDARD.encode(text)}}]
    })
}

fn body(version: &store::ResourceVersion) -> Value {
    serde_json::from_str(version.body.as_deref().unwrap()).unwrap()
}

fn signed_note(records: &Records) -> (String, Value) {
    let patient = records.create(json!({"resourceType": "Patient", "gender": "female"}), None).unwrap();
    let patient = patient.version.unwrap().id;
    let draft = records.create(note(&patient, "draft", "preliminary"), None).unwrap().version.unwrap();
    let mut signed = body(&draft);
    signed["docStatus"] = json!("final");
    signed["content"] = note(&patient, "signed text", "final")["content"].clone();
    let signed = records.update("DocumentReference", &draft.id, signed, Some(1)).unwrap().version.unwrap();
    (patient, body(&signed))
}

fn without_version(mut resource: Value) -> Value {
    resource.as_object_mut().unwrap().remove("meta");
    resource
}

#[test]
fn a_signed_note_is_rewritten_by_nobody_and_superseded_only_with_an_amendment() {
    let (_dir, records) = store();
    let (patient, signed) = signed_note(&records);
    let id = signed["id"].as_str().unwrap().to_string();

    let mut rewritten = without_version(signed.clone());
    rewritten["content"] = note(&patient, "quietly changed", "final")["content"].clone();
    let refused = records.update("DocumentReference", &id, rewritten, None).unwrap_err();
    assert_eq!(refused.kind().class(), fhir::ErrorClass::BusinessRule, "{refused}");

    let mut back_to_draft = without_version(signed.clone());
    back_to_draft["docStatus"] = json!("preliminary");
    assert!(records.update("DocumentReference", &id, back_to_draft, None).is_err(), "no way back to a draft");

    let mut superseded = without_version(signed.clone());
    superseded["status"] = json!("superseded");
    let refused = records.update("DocumentReference", &id, superseded, None).unwrap_err();
    assert!(refused.to_string().contains("amendment"), "superseded only by an amendment: {refused}");
    assert_eq!(body(&records.read("DocumentReference", &id).unwrap())["docStatus"], "final", "nothing changed");

    let door = access::Door::open(records.clone());
    let access = door.enter(access::Who::Anyone);
    let amendment = note(&patient, "corrected text", "amended");
    let new_id = chart::notes::amend(&access, &patient, &signed, amendment).unwrap();
    let original = body(&records.read("DocumentReference", &id).unwrap());
    assert_eq!(original["status"], "superseded");
    assert_eq!(original["content"], signed["content"], "the original's text is kept");
    let amended = body(&records.read("DocumentReference", &new_id).unwrap());
    assert_eq!(amended["docStatus"], "amended");
    assert_eq!(amended["relatesTo"][0]["target"]["reference"], format!("DocumentReference/{id}"));

    let mut revived = without_version(original);
    revived["status"] = json!("current");
    assert!(records.update("DocumentReference", &id, revived, None).is_err(), "a superseded note stays so");
}

#[test]
fn of_two_concurrent_amendments_exactly_one_wins_and_the_other_gets_412() {
    let (_dir, records) = store();
    let (patient, signed) = signed_note(&records);
    let door = access::Door::open(records.clone());
    let barrier = Arc::new(std::sync::Barrier::new(2));
    let attempts: Vec<_> = (0..2)
        .map(|n| {
            let (door, patient, signed, barrier) = (door.clone(), patient.clone(), signed.clone(), barrier.clone());
            std::thread::spawn(move || {
                let access = door.enter(access::Who::Anyone);
                barrier.wait();
                chart::notes::amend(&access, &patient, &signed, note(&patient, &format!("amendment {n}"), "amended"))
            })
        })
        .collect();
    let results: Vec<_> = attempts.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "exactly one wins: {results:?}");
    let lost = results.into_iter().find_map(Result::err).unwrap();
    assert!(matches!(lost.class().status(), 409 | 412), "the other is told the note changed: {lost:?}");
    let query =
        search::query::SearchQuery::parse(Some("DocumentReference"), &[("relation".into(), "replaces".into())], false)
            .unwrap();
    assert_eq!(records.search(&query, 10).unwrap().matches.len(), 1, "one amendment stored, not two");
}
