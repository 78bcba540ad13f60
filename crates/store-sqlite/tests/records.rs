//! The behaviour of `store::Records` over the SQLite backend: the shared checks of
//! `store-behaviour` (CRUD, versions, conditional operations, patch, history, referential
//! integrity, Bundles, concurrent writers), then what only this backend has (durability
//! across reopening the file).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a failed check panics, like assert!")]

use serde_json::json;
use std::sync::Arc;
use store::Records;
use store_behaviour::records::{body, count, create, patient, patient_with_identifier, total_history};
use store_sqlite::SqliteBackend;
use tempfile::TempDir;

/// A fresh store in a temporary directory.
fn store() -> (TempDir, Records) {
    let dir = tempfile::tempdir().unwrap();
    let backend = SqliteBackend::open(dir.path()).unwrap();
    (dir, Records::new(Arc::new(backend)))
}

store_behaviour::records_tests!(store);

#[test]
fn message_log_keeps_messages_and_their_outcomes() {
    let dir = tempfile::tempdir().unwrap();
    let backend = SqliteBackend::open(dir.path()).unwrap();
    store_behaviour::hl7_interface::message_log_keeps_messages_and_their_outcomes(&backend.message_log().unwrap());
    store_behaviour::hl7_interface::inbound_partners_are_kept_by_name(&backend.message_log().unwrap());
}

#[test]
fn job_states_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let backend = SqliteBackend::open(dir.path()).unwrap();
    store_behaviour::records::job_states_are_kept(&backend.job_store().unwrap());
}

#[test]
fn outbox_queues_with_the_write_and_delivers_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Arc::new(SqliteBackend::open(dir.path()).unwrap());
    let outbox = backend.outbox().unwrap();
    store_behaviour::hl7_interface::outbox_queues_with_the_write_and_delivers_in_order(&Records::new(backend), &outbox);
}

#[test]
fn hooks_run_as_a_list_inside_the_write_and_a_failing_hook_rolls_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Arc::new(SqliteBackend::open(dir.path()).unwrap());
    let outbox = backend.outbox().unwrap();
    store_behaviour::hooks::hooks_run_as_a_list_inside_the_write_and_a_failing_hook_rolls_it_back(
        &Records::new(backend),
        &outbox,
    );
}

#[test]
fn the_commit_feed_announces_committed_versions_in_order() {
    let (_dir, records) = store();
    store_behaviour::hooks::the_commit_feed_announces_committed_versions_in_order(&records);
}

#[test]
fn durable_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let id = {
        let backend = Arc::new(SqliteBackend::open(dir.path()).unwrap());
        let records = Records::new(backend.clone());
        let id = create(&records, patient_with_identifier("s", "1"));
        records.delete("Patient", &create(&records, patient("B")), None).unwrap();
        id
    };
    let backend = Arc::new(SqliteBackend::open(dir.path()).unwrap());
    backend.check_integrity().unwrap();
    assert_eq!(backend.schema_version().unwrap(), SqliteBackend::latest_schema_version());
    let records = Records::new(backend);
    assert_eq!(body(&records.read("Patient", &id).unwrap())["identifier"][0]["value"], json!("1"));
    assert_eq!(records.backend().find_by_identifier("Patient", Some("s"), "1").unwrap(), [id]);
    assert_eq!(total_history(&records), 3);
    assert_eq!(count(&records, "Patient"), 1);
}

#[test]
fn notifications_queue_with_the_write_and_deliver_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Arc::new(SqliteBackend::open(dir.path()).unwrap());
    let outbox = backend.notifications().unwrap();
    store_behaviour::notify::notifications_queue_with_the_write_and_deliver_in_order(&Records::new(backend), &outbox);
}
