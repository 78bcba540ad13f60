//! Write hooks and the commit feed, proven on every backend: hooks run as a list inside the
//! write's own transaction (what they do commits or rolls back with it), and the feed
//! announces each committed version once, after commit, in order per resource.

use crate::hl7_interface::announcing;
use crate::records::{create, patient};
use serde_json::json;
use std::sync::{Arc, Mutex};
use store::outbox::{OutboundQuery, Partner, WriteHook};
use store::{Change, ErrorKind, NewVersion, Outbox, Records, ResourceVersion, Transaction};

/// Notes each Patient version it sees, after checking inside the transaction that the version
/// just put is already the current one there (so it runs inside the write's transaction).
struct SeesItsWrite(Arc<Mutex<Vec<String>>>);

impl WriteHook for SeesItsWrite {
    fn wants(&self, resource_type: &str) -> bool {
        resource_type == "Patient"
    }

    fn written(
        &self,
        tx: &mut dyn Transaction,
        _previous: Option<&ResourceVersion>,
        new: &NewVersion<'_>,
        _sequence: i64,
    ) -> store::Result<()> {
        let current = tx.current(new.resource_type, new.id)?.map(|v| v.version);
        assert_eq!(current, Some(new.version), "the hook sees the version being written as current");
        self.0.lock().unwrap().push(format!("{}/{}", new.id, new.version));
        Ok(())
    }
}

/// Refuses every Patient written with the family name "Refused".
struct RefusesSome;

impl WriteHook for RefusesSome {
    fn wants(&self, resource_type: &str) -> bool {
        resource_type == "Patient"
    }

    fn written(
        &self,
        _tx: &mut dyn Transaction,
        _previous: Option<&ResourceVersion>,
        new: &NewVersion<'_>,
        _sequence: i64,
    ) -> store::Result<()> {
        if new.body.is_some_and(|b| b.contains("\"Refused\"")) {
            return Err(store::Error::Unprocessable(vec![fhir::Issue::error(
                fhir::IssueCode::BusinessRule,
                "refused by a hook",
            )]));
        }
        Ok(())
    }
}

/// Two hooks on one write both run inside its transaction, in the order they were added; a
/// third hook that fails rolls the write back with what the first two did in it (the outbox
/// row the first queued).
pub fn hooks_run_as_a_list_inside_the_write_and_a_failing_hook_rolls_it_back(records: &Records, outbox: &dyn Outbox) {
    outbox
        .put_partner(&Partner { name: "hie".into(), address: "127.0.0.1:2575".into(), events: vec!["A08".into()] })
        .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let records = announcing(records).with_hook(Arc::new(SeesItsWrite(seen.clone()))).with_hook(Arc::new(RefusesSome));
    let id = create(&records, patient("Kept"));
    assert_eq!(*seen.lock().unwrap(), [format!("{id}/1")], "the second hook ran");
    assert_eq!(outbox.list(&OutboundQuery::default()).unwrap().len(), 1, "the first hook queued its row");

    let refused = records.create(patient("Refused"), None).unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::Unprocessable, "the hook's error is the write's");
    assert_eq!(seen.lock().unwrap().len(), 2, "the hooks before the failing one ran");
    assert_eq!(outbox.list(&OutboundQuery::default()).unwrap().len(), 1, "the first hook's row rolled back");
    let query =
        search::query::SearchQuery::parse(Some("Patient"), &[("family".into(), "Refused".into())], false).unwrap();
    assert!(records.search(&query, 10).unwrap().matches.is_empty(), "the refused write left nothing");
}

/// The feed of committed changes: every committed version once, with its version, versions of
/// one resource in order even when written from several threads at once; nothing for a write
/// that failed; listeners are told before the writer's call returns.
pub fn the_commit_feed_announces_committed_versions_in_order(records: &Records) {
    let feed = records.changes().subscribe(1024);
    let id = create(records, patient("Feed"));
    let threads: Vec<_> = (0..4)
        .map(|n| {
            let records = records.clone();
            let id = id.clone();
            std::thread::spawn(move || {
                for k in 0..5 {
                    let mut next = patient(&format!("Feed{n}x{k}"));
                    next["id"] = json!(id);
                    records.update("Patient", &id, next, None).unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert!(records.create(json!({"resourceType": "Patient", "gender": "no"}), None).is_err());
    records.delete("Patient", &id, None).unwrap();
    let mut versions = Vec::new();
    while let Ok(changes) = feed.try_recv() {
        for change in changes.iter() {
            assert_eq!((change.resource_type.as_str(), change.id.as_str()), ("Patient", id.as_str()));
            versions.push((change.version, change.change));
        }
    }
    let expected: Vec<(u64, Change)> = (1..=22)
        .map(|v| {
            let change = match v {
                1 => Change::Created,
                22 => Change::Deleted,
                _ => Change::Updated,
            };
            (v, change)
        })
        .collect();
    assert_eq!(versions, expected, "each version once, in order, after its commit; none for the failed write");
}
