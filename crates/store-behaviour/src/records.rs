//! The behaviour of `store::Records` that every backend must show: CRUD, versions,
//! conditional operations, patch, history, referential integrity, Bundles and concurrent
//! writers. Each check takes a fresh, empty store.

use serde_json::{Value, json};
use store::{ErrorKind, HistoryQuery, Records, WriteKind};

/// A minimal valid Patient with the family name `family`.
pub fn patient(family: &str) -> Value {
    json!({"resourceType": "Patient", "name": [{"family": family}], "gender": "female"})
}

/// A minimal valid Patient with one identifier, for conditional operations.
pub fn patient_with_identifier(system: &str, value: &str) -> Value {
    json!({"resourceType": "Patient", "identifier": [{"system": system, "value": value}], "active": true})
}

/// A final weight Observation of `subject` (a reference such as `Patient/1`).
pub fn observation(subject: &str) -> Value {
    json!({
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "weight"},
        "subject": {"reference": subject},
        "valueQuantity": {"value": 72.50, "unit": "kg"}
    })
}

/// The JSON of a stored version (which must not be a deletion).
pub fn body(v: &store::ResourceVersion) -> Value {
    serde_json::from_str(v.body.as_deref().expect("a body")).unwrap()
}

/// Creates `resource`, checks that it was created, and returns its id.
pub fn create(records: &Records, resource: Value) -> String {
    let outcome = records.create(resource, None).unwrap();
    assert_eq!(outcome.kind, WriteKind::Created);
    outcome.version.unwrap().id
}

/// How many current resources of `resource_type` the backend holds.
pub fn count(records: &Records, resource_type: &str) -> u64 {
    let counts = records.backend().count_by_type().unwrap();
    counts.into_iter().find(|(t, _)| t == resource_type).map_or(0, |(_, n)| n)
}

/// How many versions the whole history holds.
pub fn total_history(records: &Records) -> u64 {
    records.history_total(&HistoryQuery::default()).unwrap()
}

/// A behaviour check; run by [`crate::records_tests`].
pub fn create_read_vread(records: &Records) {
    let mut resource = patient("Chalmers");
    resource["id"] = json!("client-chosen");
    resource["meta"] = json!({"profile": ["http://example.org/p"], "versionId": "7"});
    let outcome = records.create(resource, None).unwrap();
    assert_eq!(outcome.kind, WriteKind::Created);
    let created = outcome.version.unwrap();
    assert_ne!(created.id, "client-chosen", "create ignores the body's id");
    assert!(fhir::reference::is_id(&created.id));
    assert_eq!(created.version, 1);

    let read = records.read("Patient", &created.id).unwrap();
    let stored = body(&read);
    assert_eq!(stored["id"], json!(created.id));
    assert_eq!(stored["meta"]["versionId"], json!("1"));
    assert_eq!(stored["meta"]["profile"], json!(["http://example.org/p"]));
    let last_updated = stored["meta"]["lastUpdated"].as_str().unwrap();
    assert_eq!(last_updated, store::format_instant(read.last_updated));
    assert!(last_updated.ends_with('Z') && last_updated.len() == "2026-11-25T09:01:02.123456Z".len());
    assert_eq!(stored["valueQuantity"], Value::Null);
    assert_eq!(stored["name"], json!([{"family": "Chalmers"}]));

    assert_eq!(records.vread("Patient", &created.id, 1).unwrap().version, 1);
    assert_eq!(records.vread("Patient", &created.id, 2).unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(records.read("Patient", "nope").unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(records.read("Observation", &created.id).unwrap_err().kind(), ErrorKind::NotFound);
}

/// A behaviour check; run by [`crate::records_tests`].
pub fn element_order_and_decimals_round_trip(records: &Records) {
    let text = r#"{"resourceType":"Observation","status":"final","code":{"text":"w"},"valueQuantity":{"value":72.50,"unit":"kg"},"issued":"2020-01-01T00:00:00Z"}"#;
    let id = create(records, serde_json::from_str(text).unwrap());
    let stored = records.read("Observation", &id).unwrap();
    let stored = stored.body.as_deref().unwrap();
    assert!(
        stored.contains(r#""valueQuantity":{"value":72.50,"unit":"kg"},"issued":"2020-01-01T00:00:00Z"}"#),
        "{stored}"
    );
    assert!(stored.starts_with(&format!(r#"{{"resourceType":"Observation","id":"{id}","meta":{{"versionId":"1""#)));
}

/// A behaviour check; run by [`crate::records_tests`].
pub fn update_versions_and_update_as_create(records: &Records) {
    let id = create(records, patient("A"));
    let mut next = patient("B");
    next["id"] = json!(id);
    let outcome = records.update("Patient", &id, next.clone(), None).unwrap();
    assert_eq!(outcome.kind, WriteKind::Updated);
    assert_eq!(outcome.version.unwrap().version, 2);
    assert_eq!(body(&records.read("Patient", &id).unwrap())["name"][0]["family"], json!("B"));
    assert_eq!(body(&records.vread("Patient", &id, 1).unwrap())["name"][0]["family"], json!("A"));

    let mut new = patient("C");
    new["id"] = json!("chosen-1");
    let outcome = records.update("Patient", "chosen-1", new, None).unwrap();
    assert_eq!(outcome.kind, WriteKind::Created);
    assert_eq!(outcome.version.unwrap().version, 1);
    assert_eq!(records.read("Patient", "chosen-1").unwrap().version, 1);

    let wrong_id = records.update("Patient", "other", next.clone(), None).unwrap_err();
    assert_eq!(wrong_id.kind(), ErrorKind::Invalid);
    assert_eq!(wrong_id.issues()[0].expression.as_deref(), Some("Patient.id"));
    assert_eq!(records.update("Patient", &id, patient("no id"), None).unwrap_err().kind(), ErrorKind::Invalid);
    assert_eq!(records.update("Observation", &id, next, None).unwrap_err().kind(), ErrorKind::Invalid);
    assert_eq!(records.read("Patient", &id).unwrap().version, 2);
}

/// A behaviour check; run by [`crate::records_tests`].
pub fn if_match_mismatch_is_precondition_failed(records: &Records) {
    let id = create(records, patient("A"));
    let mut next = patient("B");
    next["id"] = json!(id);
    assert_eq!(
        records.update("Patient", &id, next.clone(), Some(2)).unwrap_err().kind(),
        ErrorKind::PreconditionFailed
    );
    assert_eq!(records.update("Patient", &id, next.clone(), Some(1)).unwrap().version.unwrap().version, 2);
    assert_eq!(records.update("Patient", &id, next, Some(1)).unwrap_err().kind(), ErrorKind::PreconditionFailed);
    assert_eq!(records.delete("Patient", &id, Some(1)).unwrap_err().kind(), ErrorKind::PreconditionFailed);
    assert_eq!(records.read("Patient", &id).unwrap().version, 2);
}

/// A behaviour check; run by [`crate::records_tests`].
pub fn patch_applies_json_patch(records: &Records) {
    let id = create(records, patient("A"));
    let patch = json!([{"op": "replace", "path": "/name/0/family", "value": "Z"}, {"op": "add", "path": "/active", "value": true}]);
    let outcome = records.patch("Patient", &id, &patch, Some(1)).unwrap();
    assert_eq!(outcome.kind, WriteKind::Updated);
    let stored = body(&records.read("Patient", &id).unwrap());
    assert_eq!((stored["name"][0]["family"].clone(), stored["active"].clone()), (json!("Z"), json!(true)));
    assert_eq!(stored["meta"]["versionId"], json!("2"));

    let stale = records.patch("Patient", &id, &patch, Some(1)).unwrap_err();
    assert_eq!(stale.kind(), ErrorKind::PreconditionFailed);
    let change_id = json!([{"op": "replace", "path": "/id", "value": "other"}]);
    assert_eq!(records.patch("Patient", &id, &change_id, None).unwrap_err().kind(), ErrorKind::Invalid);
    let change_type = json!([{"op": "replace", "path": "/resourceType", "value": "Group"}]);
    assert_eq!(records.patch("Patient", &id, &change_type, None).unwrap_err().kind(), ErrorKind::Invalid);
    let failing_test = json!([{"op": "test", "path": "/active", "value": false}]);
    assert_eq!(records.patch("Patient", &id, &failing_test, None).unwrap_err().kind(), ErrorKind::Unprocessable);
    assert_eq!(records.patch("Patient", &id, &json!({"op": "x"}), None).unwrap_err().kind(), ErrorKind::Invalid);
    assert_eq!(records.patch("Patient", "missing", &patch, None).unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(records.read("Patient", &id).unwrap().version, 2);
    records.delete("Patient", &id, None).unwrap();
    assert_eq!(records.patch("Patient", &id, &patch, None).unwrap_err().kind(), ErrorKind::Gone);
}

/// A behaviour check; run by [`crate::records_tests`].
pub fn delete_writes_a_deletion_version(records: &Records) {
    let id = create(records, patient("A"));
    let outcome = records.delete("Patient", &id, None).unwrap();
    assert_eq!(outcome.kind, WriteKind::Deleted);
    let deletion = outcome.version.unwrap();
    assert_eq!((deletion.version, deletion.body.is_none()), (2, true));
    assert_eq!(records.read("Patient", &id).unwrap_err().kind(), ErrorKind::Gone);
    assert_eq!(records.vread("Patient", &id, 2).unwrap_err().kind(), ErrorKind::Gone);
    assert_eq!(records.vread("Patient", &id, 1).unwrap().version, 1);
    assert_eq!(count(records, "Patient"), 0);

    assert_eq!(records.delete("Patient", &id, None).unwrap().kind, WriteKind::NothingToDelete);
    assert_eq!(records.delete("Patient", "never", None).unwrap().kind, WriteKind::NothingToDelete);
    assert_eq!(total_history(records), 2);

    let mut again = patient("A again");
    again["id"] = json!(id);
    let outcome = records.update("Patient", &id, again, None).unwrap();
    assert_eq!((outcome.kind, outcome.version.unwrap().version), (WriteKind::Created, 3));
    assert_eq!(records.read("Patient", &id).unwrap().version, 3);
}

/// A behaviour check; run by [`crate::records_tests`].
pub fn history_levels_since_and_paging(records: &Records) {
    let a = create(records, patient("A"));
    let b = create(records, patient("B"));
    let mut a2 = patient("A2");
    a2["id"] = json!(a);
    records.update("Patient", &a, a2, None).unwrap();
    let o = create(records, observation(&format!("Patient/{b}")));
    records.delete("Observation", &o, None).unwrap();

    let all = records.history(&HistoryQuery { count: 100, ..Default::default() }).unwrap();
    assert_eq!(all.len(), 5);
    assert!(all.windows(2).all(|w| w[0].sequence > w[1].sequence), "newest first");
    assert_eq!(all[0].change.method(), "DELETE");
    assert_eq!(total_history(records), 5);

    let instance =
        HistoryQuery { resource_type: Some("Patient".into()), id: Some(a.clone()), count: 10, ..Default::default() };
    let versions: Vec<u64> = records.history(&instance).unwrap().iter().map(|v| v.version).collect();
    assert_eq!(versions, [2, 1]);
    let of_type = HistoryQuery { resource_type: Some("Patient".into()), count: 10, ..Default::default() };
    assert_eq!(records.history(&of_type).unwrap().len(), 3);
    assert_eq!(records.history_total(&of_type).unwrap(), 3);

    let page1 = records.history(&HistoryQuery { count: 2, ..Default::default() }).unwrap();
    let cursor = page1.last().unwrap().sequence;
    let page2 =
        records.history(&HistoryQuery { count: 2, before_sequence: Some(cursor), ..Default::default() }).unwrap();
    let page3 = records
        .history(&HistoryQuery { count: 2, before_sequence: Some(page2[1].sequence), ..Default::default() })
        .unwrap();
    let paged: Vec<i64> = page1.iter().chain(&page2).chain(&page3).map(|v| v.sequence).collect();
    assert_eq!(paged, all.iter().map(|v| v.sequence).collect::<Vec<_>>());

    let since = HistoryQuery { since: Some(all[1].last_updated), count: 10, ..Default::default() };
    let recent = records.history(&since).unwrap();
    assert!(recent.len() >= 2 && recent.iter().all(|v| v.last_updated >= all[1].last_updated));
    let future = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
    let none = HistoryQuery { since: Some(future), count: 10, ..Default::default() };
    assert!(records.history(&none).unwrap().is_empty());
    assert_eq!(records.history_total(&none).unwrap(), 0);
}

/// A behaviour check; run by [`crate::records_tests`].
pub fn conditional_create(records: &Records) {
    let first = records.create(patient_with_identifier("http://mrn", "1"), Some("identifier=http://mrn|1")).unwrap();
    assert_eq!(first.kind, WriteKind::Created);
    let id = first.version.unwrap().id;
    let again = records.create(patient_with_identifier("http://mrn", "1"), Some("identifier=http://mrn|1")).unwrap();
    assert_eq!((again.kind, again.version.unwrap().id), (WriteKind::Matched, id.clone()));
    let by_value = records.create(patient("X"), Some("identifier=1")).unwrap();
    assert_eq!(by_value.kind, WriteKind::Matched);
    let other_system = records.create(patient_with_identifier("http://other", "1"), Some("identifier=http://other|1"));
    assert_eq!(other_system.unwrap().kind, WriteKind::Created);
    let several = records.create(patient("Y"), Some("identifier=1")).unwrap_err();
    assert_eq!(several.kind(), ErrorKind::PreconditionFailed);
    // Any search parameter works as a condition; unknown ones are refused, not ignored.
    let smith = records.create(patient("Smith"), Some("name=smith&gender=female")).unwrap();
    assert_eq!(smith.kind, WriteKind::Created);
    let smith_again = records.create(patient("Smith"), Some("family=SMITH")).unwrap();
    assert_eq!((smith_again.kind, smith_again.version.unwrap().id), (WriteKind::Matched, smith.version.unwrap().id));
    let unknown = records.create(patient("Y"), Some("nonsense=1")).unwrap_err();
    assert_eq!(unknown.kind(), ErrorKind::Invalid);
    assert_eq!(count(records, "Patient"), 3);

    let no_system = records.create(json!({"resourceType": "Patient", "identifier": [{"value": "9"}]}), None);
    let no_system = no_system.unwrap().version.unwrap().id;
    let hit = records.create(patient("Z"), Some("identifier=%7C9")).unwrap();
    assert_eq!((hit.kind, hit.version.unwrap().id), (WriteKind::Matched, no_system));
    assert_eq!(records.create(patient("Z"), Some(&format!("_id={id}"))).unwrap().kind, WriteKind::Matched);
}

/// A behaviour check; run by [`crate::records_tests`].
pub fn conditional_update(records: &Records) {
    let created = records.conditional_update("Patient", "identifier=s|1", patient_with_identifier("s", "1")).unwrap();
    assert_eq!(created.kind, WriteKind::Created);
    let id = created.version.unwrap().id;
    let mut changed = patient_with_identifier("s", "1");
    changed["active"] = json!(false);
    let updated = records.conditional_update("Patient", "identifier=s|1", changed.clone()).unwrap();
    assert_eq!(updated.kind, WriteKind::Updated);
    assert_eq!(updated.version.unwrap().id, id);
    assert_eq!(body(&records.read("Patient", &id).unwrap())["active"], json!(false));

    changed["id"] = json!("not-the-match");
    let mismatch = records.conditional_update("Patient", "identifier=s|1", changed).unwrap_err();
    assert_eq!(mismatch.kind(), ErrorKind::Invalid);

    create(records, patient_with_identifier("s", "2"));
    let taken = create(records, patient_with_identifier("s", "3"));
    let mut claims_taken = patient_with_identifier("s", "4");
    claims_taken["id"] = json!(taken);
    let conflict = records.conditional_update("Patient", "identifier=s|4", claims_taken).unwrap_err();
    assert_eq!(conflict.kind(), ErrorKind::Conflict);
    let mut fresh_id = patient_with_identifier("s", "5");
    fresh_id["id"] = json!("client-5");
    let as_create = records.conditional_update("Patient", "identifier=s|5", fresh_id).unwrap();
    assert_eq!((as_create.kind, as_create.version.unwrap().id.as_str()), (WriteKind::Created, "client-5"));

    let several = records.conditional_update("Patient", "identifier=s|1,s|2", patient("x")).unwrap_err();
    assert_eq!(several.kind(), ErrorKind::PreconditionFailed);
    assert_eq!(
        records.conditional_update("Patient", "_format=json", patient("x")).unwrap_err().kind(),
        ErrorKind::Invalid
    );
}

/// A behaviour check; run by [`crate::records_tests`].
pub fn conditional_delete_deletes_every_match(records: &Records) {
    create(records, patient_with_identifier("s", "1"));
    create(records, patient_with_identifier("t", "1"));
    let keep = create(records, patient_with_identifier("s", "2"));
    assert!(records.conditional_delete("Patient", "identifier=nothing").unwrap().is_empty());
    let deleted = records.conditional_delete("Patient", "identifier=1").unwrap();
    assert_eq!(deleted.len(), 2);
    assert!(deleted.iter().all(|o| o.kind == WriteKind::Deleted));
    assert_eq!(count(records, "Patient"), 1);
    assert_eq!(records.read("Patient", &keep).unwrap().version, 1);
    assert!(records.backend().find_by_identifier("Patient", Some("s"), "1").unwrap().is_empty());
}

/// A behaviour check; run by [`crate::records_tests`].
pub fn dangling_references_are_refused_and_leave_no_trace(records: &Records) {
    let p = create(records, patient("A"));
    create(records, observation(&format!("Patient/{p}")));
    let before = total_history(records);

    let err = records.create(observation("Patient/missing"), None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unprocessable);
    let issues = err.issues();
    assert_eq!(issues.len(), 1);
    assert_eq!(issues[0].expression.as_deref(), Some("Observation.subject.reference"));

    let mut two = observation("Patient/missing");
    two["performer"] =
        json!([{"reference": "Practitioner/nobody"}, {"reference": "https://elsewhere.org/Practitioner/1"}]);
    let issues = records.create(two, None).unwrap_err().issues();
    let at: Vec<_> = issues.iter().filter_map(|i| i.expression.as_deref()).collect();
    assert_eq!(at, ["Observation.subject.reference", "Observation.performer[0].reference"]);

    let contained = json!({
        "resourceType": "Observation", "status": "final", "code": {"text": "x"},
        "contained": [{"resourceType": "Patient", "id": "inner", "link": [{"other": {"reference": "#"}, "type": "seealso"}]}],
        "subject": {"reference": "#inner"}, "performer": [{"reference": "#ghost"}]
    });
    let err = records.create(contained.clone(), None).unwrap_err();
    // Validation (invariant ref-1) or the store's own check refuses it; either names the place.
    assert!(matches!(err.kind(), ErrorKind::Invalid | ErrorKind::Unprocessable), "{err}");
    assert_eq!(err.issues()[0].expression.as_deref(), Some("Observation.performer[0].reference"));
    assert_eq!(records.create(observation("not a reference"), None).unwrap_err().kind(), ErrorKind::Invalid);
    assert_eq!(records.create(observation("urn:uuid:0d7a2b3e-1"), None).unwrap_err().kind(), ErrorKind::Unprocessable);

    records.delete("Patient", &p, None).unwrap();
    let to_deleted = records.create(observation(&format!("Patient/{p}")), None).unwrap_err();
    assert_eq!(to_deleted.kind(), ErrorKind::Unprocessable);
    assert_eq!(total_history(records), before + 1, "only the delete was stored");

    let mut fixed = contained;
    fixed["performer"] = json!([{"reference": "#inner"}]);
    create(records, fixed);
}

/// A behaviour check; run by [`crate::records_tests`].
pub fn self_reference_in_update_as_create_resolves(records: &Records) {
    let resource = json!({"resourceType": "Patient", "id": "self", "link": [{"other": {"reference": "Patient/self"}, "type": "seealso"}]});
    assert_eq!(records.update("Patient", "self", resource, None).unwrap().kind, WriteKind::Created);
}

/// A behaviour check; run by [`crate::records_tests`].
pub fn concurrent_writers_with_if_match_retries(records: &Records) {
    const THREADS: usize = 8;
    const UPDATES: usize = 100;
    let id = create(records, json!({"resourceType": "Patient", "active": true}));
    let conflicts = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for t in 0..THREADS {
            let (records, id, conflicts) = (records, &id, &conflicts);
            scope.spawn(move || {
                for n in 0..UPDATES {
                    loop {
                        let current = records.read("Patient", id).unwrap();
                        let mut next = body(&current);
                        next["name"] = json!([{"family": format!("t{t}-{n}")}]);
                        match records.update("Patient", id, next, Some(current.version)) {
                            Ok(_) => break,
                            Err(e) if e.kind() == ErrorKind::PreconditionFailed => {
                                conflicts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            }
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
            });
        }
    });
    let expected = (1 + THREADS * UPDATES) as u64;
    assert_eq!(records.read("Patient", &id).unwrap().version, expected);
    let instance =
        HistoryQuery { resource_type: Some("Patient".into()), id: Some(id.clone()), count: 5000, ..Default::default() };
    let versions: Vec<u64> = records.history(&instance).unwrap().iter().map(|v| v.version).collect();
    assert_eq!(versions, (1..=expected).rev().collect::<Vec<_>>(), "every version exactly once");
    eprintln!("{} If-Match conflicts retried", conflicts.into_inner());
}

/// A behaviour check; run by [`crate::records_tests`].
pub fn load_stores_resources_with_their_ids_without_reference_checks(records: &Records) {
    let mut a = observation("Patient/not-loaded-yet");
    a["id"] = json!("o1");
    let mut b = patient("B");
    b["id"] = json!("p1");
    assert_eq!(records.load(vec![a.clone(), b]).unwrap(), 2);
    assert_eq!(records.read("Observation", "o1").unwrap().version, 1);
    assert_eq!(records.load(vec![a]).unwrap(), 1);
    assert_eq!(records.read("Observation", "o1").unwrap().version, 2);
    let err = records.load(vec![patient("no id")]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid);
}

/// A Bundle entry with a request `method url`, and a `fullUrl` and resource when given.
pub fn entry(method: &str, url: &str, full_url: Option<&str>, resource: Option<Value>) -> Value {
    let mut e = json!({"request": {"method": method, "url": url}});
    if let Some(full_url) = full_url {
        e["fullUrl"] = json!(full_url);
    }
    if let Some(resource) = resource {
        e["resource"] = resource;
    }
    e
}

/// A Bundle of type `kind` (`transaction`, `batch`) with `entries`.
pub fn bundle(kind: &str, entries: Vec<Value>) -> Value {
    json!({"resourceType": "Bundle", "type": kind, "entry": entries})
}

/// The `response.status` of each entry of a transaction or batch response.
pub fn statuses(response: &Value) -> Vec<String> {
    let entries = response["entry"].as_array().unwrap();
    entries.iter().map(|e| e["response"]["status"].as_str().unwrap().to_string()).collect()
}

/// `Type/id` of a response entry's location.
pub fn located(response: &Value, i: usize) -> String {
    let location = response["entry"][i]["response"]["location"].as_str().unwrap();
    location.split("/_history/").next().unwrap().to_string()
}

/// The current JSON of the resource `Type/id` names.
pub fn read_ref(records: &Records, reference: &str) -> Value {
    let (t, id) = reference.split_once('/').unwrap();
    body(&records.read(t, id).unwrap())
}

/// A behaviour check; run by [`crate::records_tests`].
pub fn transaction_rewrites_urns_and_orders_entries(records: &Records) {
    let old = create(records, patient_with_identifier("s", "old"));
    create(records, json!({"resourceType": "Practitioner", "identifier": [{"system": "npi", "value": "7"}]}));
    let urn_p = "urn:uuid:9b8e2a4c-0000-4000-8000-000000000001";
    let mut obs = observation(urn_p);
    obs["performer"] = json!([{"reference": "Practitioner?identifier=npi|7"}]);
    obs["focus"] = json!([{"reference": "urn:uuid:9b8e2a4c-0000-4000-8000-000000000002"}]);
    let mut put = patient("Put");
    put["id"] = json!("put-1");
    let request = bundle(
        "transaction",
        vec![
            entry("GET", &format!("Patient/{old}/_history/1"), None, None),
            entry("POST", "Observation", Some("urn:uuid:9b8e2a4c-0000-4000-8000-000000000003"), Some(obs)),
            entry("PUT", "Patient/put-1", Some("urn:uuid:9b8e2a4c-0000-4000-8000-000000000002"), Some(put)),
            entry("POST", "Patient", Some(urn_p), Some(patient("New"))),
            entry("DELETE", &format!("Patient/{old}"), None, None),
        ],
    );
    let response = records.process_bundle(request).unwrap();
    assert_eq!(response["type"], json!("transaction-response"));
    assert_eq!(statuses(&response), ["200 OK", "201 Created", "201 Created", "201 Created", "204 No Content"]);
    assert_eq!(response["entry"][0]["resource"]["id"], json!(old), "GET runs last but reads a version");
    assert_eq!(located(&response, 2), "Patient/put-1", "a PUT keeps its URL's id");
    let stored = read_ref(records, &located(&response, 1));
    assert_eq!(stored["subject"]["reference"], json!(located(&response, 3)));
    assert_eq!(stored["focus"][0]["reference"], json!("Patient/put-1"));
    let practitioner = records.backend().find_by_identifier("Practitioner", Some("npi"), "7").unwrap();
    assert_eq!(stored["performer"][0]["reference"], json!(format!("Practitioner/{}", practitioner[0])));
    assert_eq!(records.read("Patient", &old).unwrap_err().kind(), ErrorKind::Gone);
    let etag = response["entry"][1]["response"]["etag"].as_str().unwrap();
    assert_eq!(etag, "W/\"1\"");
}

/// A behaviour check; run by [`crate::records_tests`].
pub fn transaction_is_all_or_nothing(records: &Records) {
    let existing = create(records, patient("Existing"));
    let other = create(records, patient("Other"));
    let before = (total_history(records), count(records, "Patient"), count(records, "Observation"));
    let urn = "urn:uuid:1f0c7d8e-0000-4000-8000-00000000000a";
    let entries = |bad: Value| {
        bundle(
            "transaction",
            vec![
                entry("POST", "Patient", Some(urn), Some(patient("P"))),
                entry("POST", "Observation", None, Some(observation(urn))),
                entry("DELETE", &format!("Patient/{existing}"), None, None),
                bad,
            ],
        )
    };
    let dangling = entry("POST", "Observation", None, Some(observation("Patient/ghost")));
    let err = records.process_bundle(entries(dangling)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unprocessable);
    assert_eq!(err.issues()[0].expression.as_deref(), Some("Bundle.entry[3].resource.subject.reference"));

    let mut wrong_id = patient("W");
    wrong_id["id"] = json!("b");
    let err = records.process_bundle(entries(entry("PUT", "Patient/a", None, Some(wrong_id)))).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid);
    assert_eq!(err.issues()[0].expression.as_deref(), Some("Bundle.entry[3].resource.id"));

    let mut stale =
        entry("PUT", &format!("Patient/{other}"), None, Some(json!({"resourceType": "Patient", "id": other})));
    stale["request"]["ifMatch"] = json!("W/\"5\"");
    let err = records.process_bundle(entries(stale)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PreconditionFailed);
    let also_put =
        entry("PUT", &format!("Patient/{existing}"), None, Some(json!({"resourceType": "Patient", "id": existing})));
    let err = records.process_bundle(entries(also_put)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid, "the deleted resource is also PUT: one target, two entries");

    let conditional = entry("POST", "Observation", None, Some(observation("Patient?identifier=none|0")));
    let err = records.process_bundle(entries(conditional)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unprocessable);
    assert!(err.issues()[0].expression.as_deref().unwrap().starts_with("Bundle.entry[3]"));

    let twice = entry("DELETE", &format!("Patient/{existing}"), None, None);
    assert_eq!(records.process_bundle(entries(twice)).unwrap_err().kind(), ErrorKind::Invalid);
    let after = (total_history(records), count(records, "Patient"), count(records, "Observation"));
    assert_eq!(after, before, "nothing of a failed transaction is stored");

    let ok = entry("GET", &format!("Patient/{existing}/_history/1"), None, None);
    let response = records.process_bundle(entries(ok)).unwrap();
    assert_eq!(statuses(&response), ["201 Created", "201 Created", "204 No Content", "200 OK"]);
    assert_eq!((count(records, "Patient"), count(records, "Observation")), (2, 1));
}

/// A behaviour check; run by [`crate::records_tests`].
pub fn transaction_conditional_entries_and_patch(records: &Records) {
    let target = create(records, patient_with_identifier("s", "1"));
    create(records, patient_with_identifier("s", "2"));
    create(records, patient_with_identifier("x", "2"));
    let mut ine = entry("POST", "Patient", Some("urn:uuid:aa"), Some(patient_with_identifier("s", "1")));
    ine["request"]["ifNoneExist"] = json!("identifier=s|1");
    let obs = observation("urn:uuid:aa");
    let update = entry("PUT", "Patient?identifier=s|2", None, Some(patient_with_identifier("s", "2")));
    let data = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(br#"[{"op": "replace", "path": "/active", "value": false}]"#)
    };
    let binary = json!({"resourceType": "Binary", "contentType": "application/json-patch+json", "data": data});
    let request = bundle(
        "transaction",
        vec![
            ine,
            entry("POST", "Observation", None, Some(obs)),
            update,
            entry("PATCH", &format!("Patient/{target}"), None, Some(binary)),
            entry("DELETE", "Patient?identifier=x|2", None, None),
        ],
    );
    let response = records.process_bundle(request).unwrap();
    assert_eq!(statuses(&response), ["200 OK", "201 Created", "200 OK", "200 OK", "204 No Content"]);
    assert_eq!(located(&response, 0), format!("Patient/{target}"), "If-None-Exist matched");
    let observation = read_ref(records, &located(&response, 1));
    assert_eq!(observation["subject"]["reference"], json!(format!("Patient/{target}")));
    assert_eq!(body(&records.read("Patient", &target).unwrap())["active"], json!(false));
    assert_eq!(count(records, "Patient"), 2);
}

/// A behaviour check; run by [`crate::records_tests`].
pub fn batch_entries_succeed_or_fail_alone(records: &Records) {
    let existing = create(records, patient_with_identifier("s", "1"));
    let mut matched = entry("POST", "Patient", None, Some(patient_with_identifier("s", "1")));
    matched["request"]["ifNoneExist"] = json!("identifier=s|1");
    let mut wrong_id = patient("W");
    wrong_id["id"] = json!("b");
    let request = bundle(
        "batch",
        vec![
            entry("POST", "Patient", Some("urn:uuid:p"), Some(patient("A"))),
            entry("POST", "Observation", None, Some(observation("Patient/ghost"))),
            entry("PUT", "Patient/a", None, Some(wrong_id)),
            entry("GET", "Patient/missing", None, None),
            matched,
            entry("GET", &format!("Patient/{existing}"), None, None),
            json!({"request": {"method": "FETCH", "url": "Patient"}}),
            entry("POST", "Observation", None, Some(observation("urn:uuid:p"))),
            entry("DELETE", &format!("Patient/{existing}"), None, None),
        ],
    );
    let response = records.process_bundle(request).unwrap();
    assert_eq!(response["type"], json!("batch-response"));
    assert_eq!(
        statuses(&response),
        [
            "201 Created",
            "422 Unprocessable Entity",
            "400 Bad Request",
            "404 Not Found",
            "200 OK",
            "200 OK",
            "400 Bad Request",
            "422 Unprocessable Entity",
            "204 No Content"
        ]
    );
    let outcome = &response["entry"][1]["response"]["outcome"];
    assert_eq!(outcome["resourceType"], json!("OperationOutcome"));
    assert_eq!(outcome["issue"][0]["expression"][0], json!("Bundle.entry[1].resource.subject.reference"));
    assert_eq!(response["entry"][5]["resource"]["id"], json!(existing));
    assert_eq!(located(&response, 4), format!("Patient/{existing}"));
    assert_eq!((count(records, "Patient"), count(records, "Observation")), (1, 0));

    let not_a_batch = records.process_bundle(bundle("collection", vec![])).unwrap_err();
    assert_eq!(not_a_batch.kind(), ErrorKind::Invalid);
}

/// A behaviour check; run by [`crate::records_tests`].
pub fn invalid_resources_are_refused_with_their_location(records: &Records) {
    let bad = json!({"resourceType": "Patient", "gender": "robot", "birthDate": "1970-13-45"});
    let err = records.create(bad.clone(), None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid);
    assert!(err.issues().iter().any(|i| i.expression.as_deref() == Some("Patient.gender")), "{:?}", err.issues());
    assert_eq!(records.create(json!({"resourceType": "Patients"}), None).unwrap_err().kind(), ErrorKind::Invalid);

    let id = create(records, patient("A"));
    let breaks = json!([{"op": "replace", "path": "/gender", "value": "robot"}]);
    assert_eq!(records.patch("Patient", &id, &breaks, None).unwrap_err().kind(), ErrorKind::Invalid);

    let request = bundle(
        "transaction",
        vec![entry("POST", "Patient", None, Some(patient("ok"))), entry("POST", "Patient", None, Some(bad.clone()))],
    );
    let err = records.process_bundle(request).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid);
    assert!(err.issues().iter().any(|i| i.expression.as_deref() == Some("Bundle.entry[1].resource.gender")));
    let request = bundle(
        "batch",
        vec![entry("POST", "Patient", None, Some(patient("ok"))), entry("POST", "Patient", None, Some(bad))],
    );
    assert_eq!(statuses(&records.process_bundle(request).unwrap()), ["201 Created", "400 Bad Request"]);
    assert_eq!(total_history(records), 2, "the first create and the batch's valid entry");
}

/// A behaviour check; run by [`crate::records_tests`]. A search may offer thousands of
/// alternatives (a user's reach over a thousand organizations, a long list of codes): the
/// answer is the same as for a short list.
pub fn searches_with_thousands_of_alternatives(records: &Records) {
    let wanted = create(records, patient_with_identifier("http://x", "wanted"));
    let many = |last: &str| {
        let mut values: Vec<String> = (0..1500).map(|i| format!("http://x|v{i}")).collect();
        values.push(format!("http://x|{last}"));
        format!("identifier={}", values.join(","))
    };
    let matched = records.create(patient("A"), Some(&many("wanted"))).unwrap();
    assert_eq!((matched.kind, matched.version.unwrap().id), (WriteKind::Matched, wanted));
    let families: Vec<String> = (0..1500).map(|i| format!("nobody{i}")).collect();
    let created = records.create(patient("B"), Some(&format!("family={}", families.join(",")))).unwrap();
    assert_eq!(created.kind, WriteKind::Created, "none of 1,500 names matches");
    let created = records.create(patient("C"), Some(&many("absent"))).unwrap();
    assert_eq!(created.kind, WriteKind::Created);
}

/// A snapshot at a cut shows each resource as it stood then, in id order, page by page,
/// whatever is written after the cut: updated resources in their old version, deleted ones
/// still there, new ones absent.
pub fn snapshots_show_the_store_as_it_stood_at_the_cut(records: &Records) {
    let backend = records.backend();
    let ids: Vec<String> =
        ["Ames", "Baker", "Cole", "Dunn", "Ellis"].iter().map(|f| create(records, patient(f))).collect();
    let observation = create(records, observation(&format!("Patient/{}", ids[0])));
    let cut = backend.latest_sequence().unwrap();
    assert!(cut > 0);

    let mut changed = patient("Ames-Changed");
    changed["id"] = json!(ids[0]);
    records.update("Patient", &ids[0], changed, None).unwrap();
    records.delete("Patient", &ids[1], None).unwrap();
    let added = create(records, patient("Fox"));
    assert!(backend.latest_sequence().unwrap() > cut);

    let mut seen = Vec::new();
    let mut after = String::new();
    loop {
        let (page, next) = backend.snapshot("Patient", cut, &after, 2).unwrap();
        assert!(page.len() <= 2);
        seen.extend(page);
        match next {
            Some(next) => after = next,
            None => break,
        }
    }
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(seen.iter().map(|v| v.id.clone()).collect::<Vec<_>>(), expected, "every patient of the cut, by id");
    assert!(!seen.iter().any(|v| v.id == added), "written after the cut");
    let ames = seen.iter().find(|v| v.id == ids[0]).unwrap();
    assert_eq!((ames.version, body(ames)["name"][0]["family"].clone()), (1, json!("Ames")));
    assert!(seen.iter().all(|v| v.sequence <= cut && v.body.is_some()));

    // Now, the deletion and the new patient show.
    let (now, _) = backend.snapshot("Patient", backend.latest_sequence().unwrap(), "", 100).unwrap();
    assert!(now.iter().any(|v| v.id == added) && !now.iter().any(|v| v.id == ids[1]));
    let (observations, next) = backend.snapshot("Observation", cut, "", 100).unwrap();
    assert_eq!((observations.len(), observations[0].id.clone(), next), (1, observation, None));
}

/// Job states are kept by id, replaced on save, listed by kind and removed.
pub fn job_states_are_kept(jobs: &dyn store::JobStore) {
    use store::StoredJob;
    let at = time::OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
    let job = |id: &str, kind: &str, state: &str, offset: i64| StoredJob {
        id: id.into(),
        kind: kind.into(),
        state: state.into(),
        updated_at: at + time::Duration::seconds(offset),
    };
    jobs.save_job(&job("b", "bulk-export", r#"{"step":1}"#, 2)).unwrap();
    jobs.save_job(&job("a", "bulk-export", r#"{"step":1}"#, 1)).unwrap();
    jobs.save_job(&job("c", "bulk-import", "{}", 0)).unwrap();
    jobs.save_job(&job("b", "bulk-export", r#"{"step":2}"#, 3)).unwrap();
    assert_eq!(jobs.job("b").unwrap(), Some(job("b", "bulk-export", r#"{"step":2}"#, 3)));
    assert_eq!(jobs.job("nope").unwrap(), None);
    let listed: Vec<String> = jobs.jobs("bulk-export").unwrap().into_iter().map(|j| j.id).collect();
    assert_eq!(listed, ["a", "b"]);
    assert!(jobs.remove_job("a").unwrap());
    assert!(!jobs.remove_job("a").unwrap());
    assert_eq!(jobs.jobs("bulk-export").unwrap().len(), 1);
    assert_eq!(jobs.jobs("bulk-import").unwrap().len(), 1);
}
