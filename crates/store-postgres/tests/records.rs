//! The behaviour of `store::Records` over the PostgreSQL backend: the shared checks of
//! `store-behaviour`, each on a scratch database of its own, then what only this backend has.
//!
//! These tests need a running PostgreSQL server: `CONTINUUM_TEST_POSTGRES` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`) names a database on it through which the
//! scratch databases are created and dropped. An unreachable server fails the tests.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a failed check panics, like assert!")]

use test_support::scratch;

use serde_json::json;
use std::sync::Arc;
use store::Records;
use store_behaviour::records::{body, count, create, patient, patient_with_identifier, total_history};
use store_postgres::PostgresBackend;

/// A fresh store on a new scratch database, dropped with the returned guard.
fn store() -> (scratch::Database, Records) {
    let database = scratch::Database::create();
    let backend = PostgresBackend::connect(&database.url).expect("connect to the scratch database");
    (database, Records::new(Arc::new(backend)))
}

store_behaviour::records_tests!(store);

#[test]
fn job_states_are_kept() {
    let database = scratch::Database::create();
    let backend = PostgresBackend::connect(&database.url).unwrap();
    store_behaviour::records::job_states_are_kept(&backend.job_store());
}

#[test]
fn message_log_keeps_messages_and_their_outcomes() {
    let database = scratch::Database::create();
    let backend = PostgresBackend::connect(&database.url).unwrap();
    store_behaviour::hl7_interface::message_log_keeps_messages_and_their_outcomes(&backend.message_log());
    store_behaviour::hl7_interface::inbound_partners_are_kept_by_name(&backend.message_log());
}

#[test]
fn outbox_queues_with_the_write_and_delivers_in_order() {
    let database = scratch::Database::create();
    let backend = Arc::new(PostgresBackend::connect(&database.url).unwrap());
    let outbox = backend.outbox();
    store_behaviour::hl7_interface::outbox_queues_with_the_write_and_delivers_in_order(&Records::new(backend), &outbox);
}

#[test]
fn hooks_run_as_a_list_inside_the_write_and_a_failing_hook_rolls_it_back() {
    let database = scratch::Database::create();
    let backend = Arc::new(PostgresBackend::connect(&database.url).unwrap());
    let outbox = backend.outbox();
    store_behaviour::hooks::hooks_run_as_a_list_inside_the_write_and_a_failing_hook_rolls_it_back(
        &Records::new(backend),
        &outbox,
    );
}

#[test]
fn the_commit_feed_announces_committed_versions_in_order() {
    let (_database, records) = store();
    store_behaviour::hooks::the_commit_feed_announces_committed_versions_in_order(&records);
}

#[test]
fn durable_across_reconnect() {
    let database = scratch::Database::create();
    let id = {
        let records = Records::new(Arc::new(PostgresBackend::connect(&database.url).unwrap()));
        let id = create(&records, patient_with_identifier("s", "1"));
        records.delete("Patient", &create(&records, patient("B")), None).unwrap();
        id
    };
    let backend = Arc::new(PostgresBackend::connect(&database.url).unwrap());
    assert_eq!(backend.schema_version().unwrap(), PostgresBackend::latest_schema_version());
    let records = Records::new(backend);
    assert_eq!(body(&records.read("Patient", &id).unwrap())["identifier"][0]["value"], json!("1"));
    assert_eq!(records.backend().find_by_identifier("Patient", Some("s"), "1").unwrap(), [id]);
    assert_eq!(total_history(&records), 3);
    assert_eq!(count(&records, "Patient"), 1);
}

#[test]
fn concurrent_conditional_creates_make_one_resource() {
    let (_database, records) = store();
    let outcomes: Vec<store::WriteKind> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let records = &records;
                scope.spawn(move || {
                    records
                        .create(patient_with_identifier("http://mrn", "42"), Some("identifier=http://mrn|42"))
                        .unwrap()
                        .kind
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(outcomes.iter().filter(|k| **k == store::WriteKind::Created).count(), 1, "{outcomes:?}");
    assert_eq!(count(&records, "Patient"), 1);
}

#[test]
fn processes_starting_together_on_an_empty_database_all_migrate_it() {
    let database = scratch::Database::create();
    let url = Arc::new(database.url.clone());
    let starts: Vec<_> = (0..8)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || PostgresBackend::connect(&url).map(|b| b.schema_version()))
        })
        .collect();
    for start in starts {
        let version = start.join().unwrap().expect("every process connects").unwrap();
        assert_eq!(version, PostgresBackend::latest_schema_version());
    }
}

#[test]
fn a_backend_dropped_inside_an_async_runtime_closes_its_connections_cleanly() {
    let database = scratch::Database::create();
    let backend = PostgresBackend::connect(&database.url).unwrap();
    let records = Records::new(Arc::new(backend));
    records.create(patient("Dropped"), None).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // As at a server's graceful stop: the last handle on the store goes on a runtime thread.
    runtime.block_on(async move { drop(records) });
}

#[test]
fn bundles_resolving_the_same_conditional_references_in_any_order_do_not_deadlock() {
    let (_database, records) = store();
    let records = Arc::new(records);
    for name in ["a", "b", "c"] {
        let practitioner = json!({"resourceType": "Practitioner",
            "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": name}]});
        records.create(practitioner, None).unwrap();
    }
    let workers: Vec<_> = (0..6)
        .map(|worker| {
            let records = records.clone();
            std::thread::spawn(move || {
                let mut order = ["a", "b", "c"];
                for round in 0..15 {
                    order.rotate_left((worker + round) % 3);
                    let entries: Vec<_> = order
                        .iter()
                        .map(|npi| {
                            json!({"request": {"method": "POST", "url": "Encounter"}, "resource": {
                                "resourceType": "Encounter", "status": "finished",
                                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                                "participant": [{"individual": {
                                    "reference": format!("Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|{npi}")}}]}})
                        })
                        .collect();
                    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
                    records.process_bundle(bundle).expect("a transaction resolving shared references commits");
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    assert_eq!(count(&records, "Encounter"), 6 * 15 * 3);
}

#[test]
fn bundles_writing_resources_with_the_same_identifiers_in_any_order_do_not_deadlock() {
    // As Synthea's bundles do: each writes its own copies of the same Organizations and the
    // same `claim-group` identifier value, in its own order.
    let (_database, records) = store();
    let records = Arc::new(records);
    let workers: Vec<_> = (0..6)
        .map(|worker| {
            let records = records.clone();
            std::thread::spawn(move || {
                let mut order = ["a", "b", "c"];
                for round in 0..15 {
                    order.rotate_left((worker + round) % 3);
                    let entries: Vec<_> = order
                        .iter()
                        .map(|value| {
                            json!({"request": {"method": "POST", "url": "Organization"}, "resource": {
                                "resourceType": "Organization", "name": "Shared",
                                "identifier": [{"system": "https://example.org/org", "value": value}]}})
                        })
                        .collect();
                    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
                    records.process_bundle(bundle).expect("a transaction writing shared identifiers commits");
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    assert_eq!(count(&records, "Organization"), 6 * 15 * 3);
}

#[test]
fn notifications_queue_with_the_write_and_deliver_in_order() {
    let database = scratch::Database::create();
    let backend = Arc::new(PostgresBackend::connect(&database.url).unwrap());
    let outbox = backend.notifications();
    store_behaviour::notify::notifications_queue_with_the_write_and_deliver_in_order(&Records::new(backend), &outbox);
}
