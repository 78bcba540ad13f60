//! The timeline on a real store: walking it page by page shows every entry of the patient once,
//! newest first, even where a laboratory panel's results share one instant across a page
//! boundary; the filters narrow it; sources come from the resource, its Provenance or its visit.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a failed check panics, like assert!")]

use access::{Door, Who};
use chart::timeline::{self, Cursor, Filters};
use serde_json::{Value, json};
use std::sync::Arc;
use store::Records;

fn store() -> (tempfile::TempDir, Records) {
    let dir = tempfile::tempdir().unwrap();
    let backend = store_sqlite::SqliteBackend::open(dir.path()).unwrap();
    (dir, Records::new(Arc::new(backend)))
}

fn create(records: &Records, resource: Value) -> String {
    records.create(resource, None).unwrap().version.unwrap().id
}

/// Every page of `patient`'s timeline under `filters`, walked by cursor.
fn walk(access: &access::Access, patient: &str, filters: &Filters) -> Vec<timeline::Entry> {
    let mut filters = filters.clone();
    let mut seen = Vec::new();
    for _ in 0..100 {
        let page = timeline::page(access, patient, &filters).unwrap();
        assert!(page.entries.len() <= timeline::PAGE);
        seen.extend(page.entries);
        match page.next {
            Some(cursor) => {
                // The cursor goes through a page link and back.
                filters.before = Some(Cursor::parse(&cursor.to_text()).unwrap());
            }
            None => return seen,
        }
    }
    panic!("the timeline never ended");
}

#[test]
fn every_entry_once_newest_first_across_pages_and_instants_shared_by_a_panel() {
    let (_dir, records) = store();
    let patient = create(&records, json!({"resourceType": "Patient", "gender": "female"}));
    let clinic = create(&records, json!({"resourceType": "Organization", "name": "Riverside Clinic"}));
    let lab = create(&records, json!({"resourceType": "Organization", "name": "Hilltop Lab"}));
    let visit = create(
        &records,
        json!({"resourceType": "Encounter", "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "subject": {"reference": format!("Patient/{patient}")},
            "period": {"start": "2021-05-01T09:00:00Z", "end": "2021-05-01T10:00:00Z"},
            "serviceProvider": {"reference": format!("Organization/{clinic}")}}),
    );
    // Three panels of 45 results each: two in one second (fractions apart), one a year before;
    // more at one instant than a page holds.
    let instants = ["2021-05-01T09:30:00.500Z", "2021-05-01T09:30:00Z", "2020-02-02T08:00:00Z"];
    let mut results = Vec::new();
    for (i, at) in instants.iter().cycle().take(135).enumerate() {
        let id = create(
            &records,
            json!({"resourceType": "Observation", "status": "final",
                "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
                "code": {"coding": [{"system": "http://loinc.org", "code": "2339-0"}], "text": format!("Glucose {i}")},
                "subject": {"reference": format!("Patient/{patient}")},
                "encounter": {"reference": format!("Encounter/{visit}")},
                "effectiveDateTime": at,
                "valueQuantity": {"value": 90 + i, "unit": "mg/dL", "system": "http://unitsofmeasure.org", "code": "mg/dL"}}),
        );
        results.push(id);
    }
    // The lab, not the visit's clinic, is the source of one result (its Provenance says so).
    create(
        &records,
        json!({"resourceType": "Provenance", "recorded": "2021-05-01T10:00:00Z",
            "target": [{"reference": format!("Observation/{}", results[2])}],
            "agent": [{"who": {"reference": format!("Organization/{lab}")}}]}),
    );
    // Another patient's result never shows.
    let other = create(&records, json!({"resourceType": "Patient", "gender": "male"}));
    create(
        &records,
        json!({"resourceType": "Observation", "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
            "code": {"text": "Not hers"}, "subject": {"reference": format!("Patient/{other}")},
            "effectiveDateTime": "2021-05-01T09:30:00.500Z"}),
    );

    let access = Door::open(records.clone()).enter(Who::Anyone);
    let entries = walk(&access, &patient, &Filters::default());
    let references: Vec<&str> = entries.iter().map(|e| e.reference.as_str()).collect();
    assert_eq!(entries.len(), 136, "135 results and the visit");
    let unique: std::collections::BTreeSet<&str> = references.iter().copied().collect();
    assert_eq!(unique.len(), entries.len(), "no entry shown twice");
    assert!(
        entries.windows(2).all(|w| (w[0].at, &w[0].reference) > (w[1].at, &w[1].reference)),
        "strictly newest first"
    );
    assert!(!references.iter().any(|r| r.contains(&other)));
    let source = |reference: &str| entries.iter().find(|e| e.reference == reference).unwrap().organization.clone();
    assert_eq!(source(&format!("Observation/{}", results[2])).as_deref(), Some("Hilltop Lab"));
    assert_eq!(source(&format!("Observation/{}", results[0])).as_deref(), Some("Riverside Clinic"));
    assert_eq!(source(&format!("Encounter/{visit}")).as_deref(), Some("Riverside Clinic"));

    // Filters: one kind, a date range, one organization.
    let visits = walk(&access, &patient, &Filters::from_query([("type", "encounter")]).unwrap());
    assert_eq!(visits.iter().map(|e| e.reference.clone()).collect::<Vec<_>>(), [format!("Encounter/{visit}")]);
    let last_year = walk(&access, &patient, &Filters::from_query([("to", "2020-12-31")]).unwrap());
    assert_eq!(last_year.len(), 45);
    assert!(last_year.iter().all(|e| e.at.year() == 2020));
    let from_lab =
        walk(&access, &patient, &Filters::from_query([("org", format!("Organization/{lab}").as_str())]).unwrap());
    assert_eq!(
        from_lab.iter().map(|e| e.reference.clone()).collect::<Vec<_>>(),
        [format!("Observation/{}", results[2])]
    );
}

#[test]
fn the_timeline_of_a_linked_record_shows_the_whole_person() {
    let (_dir, records) = store();
    let hospital = create(&records, json!({"resourceType": "Organization", "name": "General Hospital"}));
    let clinic = create(&records, json!({"resourceType": "Organization", "name": "Corner Clinic"}));
    let here = create(
        &records,
        json!({"resourceType": "Patient", "managingOrganization": {"reference": format!("Organization/{clinic}")}}),
    );
    let there = create(
        &records,
        json!({"resourceType": "Patient", "managingOrganization": {"reference": format!("Organization/{hospital}")}}),
    );
    let stranger = create(&records, json!({"resourceType": "Patient"}));
    // The patient index's link (one way is enough to follow it from `here`).
    let linked = json!({"resourceType": "Patient", "id": here, "managingOrganization": {"reference": format!("Organization/{clinic}")},
        "link": [{"other": {"reference": format!("Patient/{there}")}, "type": "seealso"}]});
    records.update("Patient", &here, linked, None).unwrap();
    let observation = |patient: &str, organization: &str, when: &str, what: &str| {
        create(
            &records,
            json!({"resourceType": "Observation", "status": "final", "code": {"text": what},
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
            "subject": {"reference": format!("Patient/{patient}")}, "effectiveDateTime": when,
            "performer": [{"reference": format!("Organization/{organization}")}]}),
        )
    };
    let own = observation(&here, &clinic, "2024-05-01T10:00:00Z", "Weight");
    let theirs = observation(&there, &hospital, "2024-06-01T10:00:00Z", "HbA1c");
    observation(&stranger, &hospital, "2024-07-01T10:00:00Z", "Someone else's");
    let access = Door::open(records.clone()).enter(Who::Anyone);
    let seen = walk(&access, &here, &Filters::default());
    let references: Vec<&str> = seen.iter().map(|e| e.reference.as_str()).collect();
    assert!(references.contains(&format!("Observation/{own}").as_str()), "{references:?}");
    assert!(
        references.contains(&format!("Observation/{theirs}").as_str()),
        "the linked record's result: {references:?}"
    );
    assert_eq!(references.iter().filter(|r| r.starts_with("Observation/")).count(), 2, "nothing of anyone else");
    let source = seen.iter().find(|e| e.reference == format!("Observation/{theirs}")).unwrap();
    assert_eq!(source.organization.as_deref(), Some("General Hospital"), "each fact keeps its source");
}
