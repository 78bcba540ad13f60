//! Patient merge and unmerge through the identity service, over the embedded store: the
//! references of twenty types of the Patient compartment moved and moved back, a preview that
//! writes nothing, a writer racing the merge (every acknowledged write ends on the target, the
//! others refused, none lost), and bad requests refused with nothing written.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a failed check panics, like assert!")]

use access::{Access, Door, Who};
use exchange::identity::merge::{self, MergeRequest, MergedPatients};
use fhir::ErrorClass;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use store::Records;

fn store() -> (tempfile::TempDir, Records, Access) {
    let dir = tempfile::tempdir().unwrap();
    let backend = store_sqlite::SqliteBackend::open(dir.path()).unwrap();
    let records = Records::new(Arc::new(backend)).with_hook(Arc::new(MergedPatients));
    let access = Door::open(records.clone()).enter(Who::Anyone);
    (dir, records, access)
}

fn create(access: &Access, resource: Value) -> String {
    let t = resource["resourceType"].as_str().unwrap().to_string();
    let outcome = access.create(resource, None).unwrap_or_else(|e| panic!("{t}: {e}"));
    outcome.version.unwrap().id
}

fn body(records: &Records, reference: &str) -> Value {
    let (t, id) = reference.split_once('/').unwrap();
    serde_json::from_str(records.read(t, id).unwrap().body.as_deref().unwrap()).unwrap()
}

fn patient(access: &Access, family: &str) -> String {
    create(
        access,
        json!({"resourceType": "Patient", "active": true, "name": [{"family": family, "given": ["Alex"]}],
               "gender": "female", "birthDate": "1970-01-01"}),
    )
}

fn coding(system: &str, code: &str) -> Value {
    json!({"coding": [{"system": system, "code": code}]})
}

/// One resource of each of twenty types of the Patient compartment, all naming `p`; returns
/// their references.
fn chart(access: &Access, p: &str) -> Vec<String> {
    let subject = json!({"reference": format!("Patient/{p}")});
    let org = create(access, json!({"resourceType": "Organization", "name": "Payer"}));
    let org_ref = json!({"reference": format!("Organization/{org}")});
    let loinc = coding("http://loinc.org", "8867-4");
    let coverage = create(
        access,
        json!({"resourceType": "Coverage", "status": "active", "beneficiary": subject, "payor": [org_ref]}),
    );
    let coverage_ref = json!({"reference": format!("Coverage/{coverage}")});
    let claim_type = coding("http://terminology.hl7.org/CodeSystem/claim-type", "professional");
    let resources = vec![
        json!({"resourceType": "Observation", "status": "final", "code": loinc, "subject": subject}),
        json!({"resourceType": "Condition", "code": {"text": "asthma"}, "subject": subject}),
        json!({"resourceType": "Encounter", "status": "finished",
               "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}, "subject": subject}),
        json!({"resourceType": "MedicationRequest", "status": "active", "intent": "order",
               "medicationCodeableConcept": {"text": "salbutamol"}, "subject": subject}),
        json!({"resourceType": "AllergyIntolerance", "patient": subject,
               "clinicalStatus": coding("http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "active"),
               "code": {"text": "peanut"}}),
        json!({"resourceType": "Procedure", "status": "completed", "subject": subject, "code": {"text": "spirometry"}}),
        json!({"resourceType": "Immunization", "status": "completed", "vaccineCode": {"text": "influenza"},
               "patient": subject, "occurrenceDateTime": "2024-10-01"}),
        json!({"resourceType": "DiagnosticReport", "status": "final", "code": loinc, "subject": subject}),
        json!({"resourceType": "DocumentReference", "status": "current", "subject": subject,
               "content": [{"attachment": {"contentType": "text/plain", "data": "aGVsbG8="}}]}),
        json!({"resourceType": "CarePlan", "status": "active", "intent": "plan", "subject": subject}),
        json!({"resourceType": "CareTeam", "status": "active", "subject": subject,
               "participant": [{"member": subject}]}),
        json!({"resourceType": "Goal", "lifecycleStatus": "active", "description": {"text": "breathe"}, "subject": subject}),
        json!({"resourceType": "ServiceRequest", "status": "active", "intent": "order", "subject": subject}),
        json!({"resourceType": "Claim", "status": "active", "type": claim_type, "use": "claim", "patient": subject,
               "created": "2024-10-01", "provider": org_ref, "priority": {"text": "normal"},
               "insurance": [{"sequence": 1, "focal": true, "coverage": coverage_ref}]}),
        json!({"resourceType": "ExplanationOfBenefit", "status": "active", "type": claim_type, "use": "claim",
               "patient": subject, "created": "2024-10-01", "insurer": org_ref, "provider": org_ref,
               "outcome": "complete", "insurance": [{"focal": true, "coverage": coverage_ref}]}),
        json!({"resourceType": "Appointment", "status": "proposed",
               "participant": [{"actor": subject, "status": "accepted"}]}),
        json!({"resourceType": "Communication", "status": "completed", "subject": subject}),
        json!({"resourceType": "Flag", "status": "active", "code": {"text": "fall risk"}, "subject": subject}),
        json!({"resourceType": "QuestionnaireResponse", "status": "completed", "subject": subject}),
    ];
    let mut refs = vec![format!("Coverage/{coverage}")];
    for resource in resources {
        let t = resource["resourceType"].as_str().unwrap().to_string();
        refs.push(format!("{t}/{}", create(access, resource)));
    }
    refs
}

fn names(resource: &Value, p: &str) -> bool {
    resource.to_string().contains(&format!("\"Patient/{p}\""))
}

fn has_link(patient: &Value, other: &str, kind: &str) -> bool {
    patient["link"].as_array().is_some_and(|links| {
        links.iter().any(|l| l["other"]["reference"] == format!("Patient/{other}") && l["type"] == kind)
    })
}

fn request(source: &str, target: &str) -> MergeRequest {
    MergeRequest { source: source.into(), target: target.into(), result: None, preview: false }
}

#[test]
fn merge_moves_the_references_of_twenty_types_and_unmerge_moves_them_back() {
    let (_dir, records, access) = store();
    let source = patient(&access, "Source");
    let target = patient(&access, "Target");
    let refs = chart(&access, &source);
    assert_eq!(refs.len(), 20);
    // Another record pointing at the source (the patient index's `seealso`).
    let other = create(
        &access,
        json!({"resourceType": "Patient", "name": [{"family": "Other"}],
               "link": [{"other": {"reference": format!("Patient/{source}")}, "type": "seealso"}]}),
    );

    let outcome = merge::merge(&access, &request(&source, &target)).unwrap();
    assert!(!outcome.preview);
    assert_eq!(outcome.total_moved(), 21, "{:?}", outcome.moved);
    assert_eq!(outcome.moved.len(), 21, "one of each type, and the other Patient: {:?}", outcome.moved);
    for reference in &refs {
        let resource = body(&records, reference);
        assert!(names(&resource, &target), "{reference} names the target");
        assert!(!names(&resource, &source), "{reference} no longer names the source");
    }
    assert!(has_link(&body(&records, &format!("Patient/{other}")), &target, "seealso"));
    let merged = body(&records, &format!("Patient/{source}"));
    assert_eq!(merged["active"], false);
    assert!(has_link(&merged, &target, "replaced-by"));
    let survivor = body(&records, &format!("Patient/{target}"));
    assert!(has_link(&survivor, &source, "replaces"));
    assert_eq!(outcome.target_patient["id"], target.as_str());
    // The Provenance names every version written and every version replaced.
    let provenance = body(&records, &format!("Provenance/{}", outcome.provenance.clone().unwrap()));
    assert_eq!(provenance["target"].as_array().unwrap().len(), 23);
    assert_eq!(provenance["entity"].as_array().unwrap().len(), 23);
    assert_eq!(provenance["activity"]["coding"][0]["code"], "merge");

    // Merging it again is refused.
    let again = merge::merge(&access, &request(&source, &target)).unwrap_err();
    assert_eq!(again.class(), ErrorClass::Conflict, "{again}");

    // Written for the target after the merge: not moved back by the unmerge.
    let later = create(
        &access,
        json!({"resourceType": "Observation", "status": "final", "code": {"text": "later"},
               "subject": {"reference": format!("Patient/{target}")}}),
    );

    let undone = merge::unmerge(&access, &source, &target).unwrap();
    assert!(names(&body(&records, &format!("Observation/{later}")), &target), "only what the merge moved goes back");
    assert_eq!(undone.restored.values().sum::<usize>(), 21, "{:?}", undone.restored);
    for reference in &refs {
        let resource = body(&records, reference);
        assert!(names(&resource, &source), "{reference} names the source again");
        assert!(!names(&resource, &target), "{reference} no longer names the target");
    }
    assert!(has_link(&body(&records, &format!("Patient/{other}")), &source, "seealso"));
    let restored = body(&records, &format!("Patient/{source}"));
    assert_eq!(restored["active"], true);
    assert!(restored.get("link").is_none(), "{restored}");
    let survivor = body(&records, &format!("Patient/{target}"));
    assert!(survivor.get("link").is_none(), "{survivor}");
    assert_eq!(
        body(&records, &format!("Provenance/{}", undone.provenance))["activity"]["coding"][0]["code"],
        "unmerge"
    );
    // Nothing left to undo; writes for the source are taken again.
    assert_eq!(merge::unmerge(&access, &source, &target).unwrap_err().class(), ErrorClass::NotFound);
    create(
        &access,
        json!({"resourceType": "Flag", "status": "active", "code": {"text": "x"}, "subject": {"reference": format!("Patient/{source}")}}),
    );
    // And it merges again.
    let twice = merge::merge(&access, &request(&source, &target)).unwrap();
    assert_eq!(twice.total_moved(), 22, "{:?}", twice.moved);
}

#[test]
fn a_preview_writes_nothing() {
    let (_dir, records, access) = store();
    let source = patient(&access, "Source");
    let target = patient(&access, "Target");
    let refs = chart(&access, &source);
    let before = records.backend().latest_sequence().unwrap();
    let mut asked = request(&source, &target);
    asked.preview = true;
    let outcome = merge::merge(&access, &asked).unwrap();
    assert!(outcome.preview && outcome.provenance.is_none());
    assert_eq!(outcome.total_moved(), 20);
    assert_eq!(outcome.moved.get("Observation"), Some(&1));
    assert!(has_link(&outcome.target_patient, &source, "replaces"));
    assert_eq!(records.backend().latest_sequence().unwrap(), before, "nothing written");
    for reference in &refs {
        assert!(names(&body(&records, reference), &source));
    }
    assert_eq!(body(&records, &format!("Patient/{source}"))["active"], true);
}

#[test]
fn a_result_patient_becomes_the_target() {
    let (_dir, records, access) = store();
    let source = patient(&access, "Source");
    let target = patient(&access, "Target");
    let mut asked = request(&source, &target);
    asked.result = Some(json!({"resourceType": "Patient", "id": target, "name": [{"family": "Merged"}]}));
    merge::merge(&access, &asked).unwrap();
    let survivor = body(&records, &format!("Patient/{target}"));
    assert_eq!(survivor["name"][0]["family"], "Merged");
    assert!(has_link(&survivor, &source, "replaces"));
    // A result with another id is refused.
    let third = patient(&access, "Third");
    let fourth = patient(&access, "Fourth");
    let mut wrong = request(&third, &fourth);
    wrong.result = Some(json!({"resourceType": "Patient", "id": third}));
    assert_eq!(merge::merge(&access, &wrong).unwrap_err().class(), ErrorClass::BusinessRule);
}

#[test]
fn writes_naming_a_merged_patient_are_refused() {
    let (_dir, _records, access) = store();
    let source = patient(&access, "Source");
    let target = patient(&access, "Target");
    merge::merge(&access, &request(&source, &target)).unwrap();
    let refused = access
        .create(
            json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                   "subject": {"reference": format!("Patient/{source}")}}),
            None,
        )
        .unwrap_err();
    assert_eq!(refused.class(), ErrorClass::BusinessRule);
    assert!(refused.to_string().contains(&format!("merged into Patient/{target}")), "{refused}");
    // The target takes them.
    create(
        &access,
        json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
               "subject": {"reference": format!("Patient/{target}")}}),
    );
}

#[test]
fn writers_racing_the_merge_lose_nothing() {
    let (_dir, records, access) = store();
    let source = patient(&access, "Source");
    let target = patient(&access, "Target");
    chart(&access, &source);
    // A longer chart, so that the merge runs a while.
    let observations: Vec<Value> = (0..300)
        .map(|i| {
            json!({"request": {"method": "POST", "url": "Observation"}, "resource": {
                "resourceType": "Observation", "status": "final", "code": {"text": format!("old {i}")},
                "subject": {"reference": format!("Patient/{source}")}}})
        })
        .collect();
    access.transaction(json!({"resourceType": "Bundle", "type": "transaction", "entry": observations})).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let writers: Vec<_> = (0..4)
        .map(|_| {
            let (access, source, stop, written) = (access.clone(), source.clone(), stop.clone(), written.clone());
            std::thread::spawn(move || {
                let (mut acknowledged, mut refused) = (Vec::new(), 0usize);
                // Keep writing until told to stop, and a few more after.
                let mut after = 0;
                while after < 5 {
                    if stop.load(Ordering::Relaxed) {
                        after += 1;
                    }
                    let obs = json!({"resourceType": "Observation", "status": "final", "code": {"text": "racing"},
                                 "subject": {"reference": format!("Patient/{source}")}});
                    match access.create(obs, None) {
                        Ok(outcome) => {
                            acknowledged.push(outcome.version.unwrap().id);
                            written.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            assert_eq!(e.class(), ErrorClass::BusinessRule, "{e}");
                            assert!(e.to_string().contains("merged into"), "{e}");
                            refused += 1;
                        }
                    }
                }
                (acknowledged, refused)
            })
        })
        .collect();
    // Let the writer get going, then merge while it writes.
    while written.load(Ordering::Relaxed) < 20 {
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let at_start = written.load(Ordering::Relaxed);
    let started = std::time::Instant::now();
    let outcome = merge::merge(&access, &request(&source, &target)).unwrap();
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let (mut acknowledged, mut refused) = (Vec::new(), 0);
    for writer in writers {
        let (a, r) = writer.join().unwrap();
        acknowledged.extend(a);
        refused += r;
    }
    eprintln!(
        "acknowledged {} ({} while the merge ran, {took:?}), refused {refused}, moved {:?}, after the commit {}",
        acknowledged.len(),
        acknowledged.len() - at_start,
        outcome.moved.get("Observation"),
        outcome.moved_after_commit,
    );
    assert!(refused >= 20, "the writes after the merge were refused");
    for id in &acknowledged {
        let obs = body(&records, &format!("Observation/{id}"));
        assert!(names(&obs, &target) && !names(&obs, &source), "Observation/{id}");
    }
    // None lost: every Observation of either patient is the chart's one or an acknowledged one.
    let count = records.backend().count_by_type().unwrap().into_iter().find(|(t, _)| t == "Observation").unwrap().1;
    assert_eq!(count as usize, acknowledged.len() + 301);
    assert_eq!(outcome.moved.get("Observation").copied().unwrap_or(0), acknowledged.len() + 301);
    // The merge's one Provenance names them all, those moved after the commit too.
    let provenance = body(&records, &format!("Provenance/{}", outcome.provenance.clone().unwrap()));
    assert_eq!(provenance["target"].as_array().unwrap().len(), outcome.total_moved() + 2);
}

#[test]
fn bad_requests_are_refused_with_nothing_written() {
    let (_dir, records, access) = store();
    let source = patient(&access, "Source");
    let target = patient(&access, "Target");
    chart(&access, &source);
    let before = records.backend().latest_sequence().unwrap();
    let into_itself = merge::merge(&access, &request(&source, &source)).unwrap_err();
    assert_eq!(into_itself.class(), ErrorClass::BusinessRule, "{into_itself}");
    let unknown_source = merge::merge(&access, &request("nobody", &target)).unwrap_err();
    assert_eq!(unknown_source.class(), ErrorClass::NotFound, "{unknown_source}");
    let unknown_target = merge::merge(&access, &request(&source, "nobody")).unwrap_err();
    assert_eq!(unknown_target.class(), ErrorClass::NotFound, "{unknown_target}");
    let not_merged = merge::unmerge(&access, &source, &target).unwrap_err();
    assert_eq!(not_merged.class(), ErrorClass::NotFound, "{not_merged}");
    assert_eq!(records.backend().latest_sequence().unwrap(), before, "nothing written");

    // Merged once; a second merge of the source (into anyone) and a merge into it are refused.
    merge::merge(&access, &request(&source, &target)).unwrap();
    let third = patient(&access, "Third");
    let before = records.backend().latest_sequence().unwrap();
    let again = merge::merge(&access, &request(&source, &third)).unwrap_err();
    assert_eq!(again.class(), ErrorClass::Conflict, "{again}");
    assert!(again.to_string().contains("already merged"), "{again}");
    let into_merged = merge::merge(&access, &request(&third, &source)).unwrap_err();
    assert_eq!(into_merged.class(), ErrorClass::BusinessRule, "{into_merged}");
    assert_eq!(records.backend().latest_sequence().unwrap(), before, "nothing written");
}

/// Fails the first `n` writes that make a Patient inactive, as a concurrent write would
/// (412), so that the merge must read again and retry.
struct Interfering(std::sync::atomic::AtomicUsize);

impl store::WriteHook for Interfering {
    fn wants(&self, resource_type: &str) -> bool {
        resource_type == "Patient"
    }

    fn written(
        &self,
        _tx: &mut dyn store::Transaction,
        _previous: Option<&store::ResourceVersion>,
        new: &store::NewVersion<'_>,
        _sequence: i64,
    ) -> store::Result<()> {
        let inactive = new.body.is_some_and(|b| b.contains("\"active\":false"));
        if inactive && self.0.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
            return Err(store::Error::PreconditionFailed("changed meanwhile".into()));
        }
        Ok(())
    }
}

fn interfered(failures: usize) -> (tempfile::TempDir, Records, Access) {
    let dir = tempfile::tempdir().unwrap();
    let backend = store_sqlite::SqliteBackend::open(dir.path()).unwrap();
    let records = Records::new(Arc::new(backend))
        .with_hook(Arc::new(MergedPatients))
        .with_hook(Arc::new(Interfering(std::sync::atomic::AtomicUsize::new(failures))));
    let access = Door::open(records.clone()).enter(Who::Anyone);
    (dir, records, access)
}

#[test]
fn a_merge_losing_a_race_reads_again_and_retries_up_to_five_times() {
    // Four lost races: the fifth attempt commits.
    let (_dir, records, access) = interfered(4);
    let source = patient(&access, "Source");
    let target = patient(&access, "Target");
    let refs = chart(&access, &source);
    let outcome = merge::merge(&access, &request(&source, &target)).unwrap();
    assert_eq!(outcome.total_moved(), 20);
    for reference in &refs {
        assert!(names(&body(&records, reference), &target), "{reference}");
    }

    // Five lost races: refused as a conflict, nothing written.
    let (_dir, records, access) = interfered(5);
    let source = patient(&access, "Source");
    let target = patient(&access, "Target");
    let refs = chart(&access, &source);
    let before = records.backend().latest_sequence().unwrap();
    let error = merge::merge(&access, &request(&source, &target)).unwrap_err();
    assert_eq!(error.class(), ErrorClass::PreconditionFailed, "{error}");
    assert_eq!(records.backend().latest_sequence().unwrap(), before, "nothing written");
    for reference in &refs {
        assert!(names(&body(&records, reference), &source), "{reference}");
    }
}
