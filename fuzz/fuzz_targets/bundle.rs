//! Bundle processing: any bytes that parse as JSON go through the one write path's Bundle
//! processing (`Records::process_bundle`: batch and transaction, all-or-nothing) against a
//! real SQLite store, kept in memory-backed storage (/dev/shm where there is one) so that the
//! commits' fsyncs do not dominate. A transaction that is refused must leave nothing behind.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use std::sync::{Arc, LazyLock};
use store::{Backend, Records};

struct Store {
    _dir: tempfile::TempDir,
    backend: Arc<store_sqlite::SqliteBackend>,
    records: Records,
}

static STORE: LazyLock<Store> = LazyLock::new(|| {
    let shm = std::path::Path::new("/dev/shm");
    let dir = if shm.is_dir() { tempfile::tempdir_in(shm) } else { tempfile::tempdir() }.expect("temporary directory");
    let backend = Arc::new(store_sqlite::SqliteBackend::open(dir.path()).expect("open the store"));
    let records = Records::new(backend.clone());
    // Something for references, conditional operations and updates to find.
    let patient = serde_json::json!({"resourceType": "Patient", "id": "p1", "name": [{"family": "Fuzz"}]});
    records.update("Patient", "p1", patient, None).expect("seed patient");
    Store { _dir: dir, backend, records }
});

fn live(backend: &store_sqlite::SqliteBackend) -> u64 {
    backend.count_by_type().expect("count").iter().map(|(_, n)| n).sum()
}

fuzz_target!(|data: &[u8]| {
    let Ok(bundle) = serde_json::from_slice::<Value>(data) else { return };
    let store = &*STORE;
    let is_transaction = bundle.get("type").and_then(Value::as_str) == Some("transaction");
    let before = is_transaction.then(|| live(&store.backend));
    let outcome = store.records.process_bundle(bundle);
    if let (Some(before), Err(_)) = (before, &outcome) {
        assert_eq!(before, live(&store.backend), "a refused transaction changed the store");
    }
});
