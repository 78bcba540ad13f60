//! Units of work, each in its own READ COMMITTED transaction on a pooled connection,
//! answered after `COMMIT` (durable: `synchronous_commit = on`). See the crate's docs for the
//! locks that make optimistic locking and conditional operations race-free.

use crate::queries::{self, Lock, identifier_key, lock_key};
use crate::{Connection, storage};
use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use store::{Error, NewVersion, ResourceVersion, Result, Transaction, Work};

/// Runs `work` in a transaction on `conn` and commits it; on error nothing of it remains.
pub(crate) fn execute(conn: &mut Connection, work: Work) -> Result<()> {
    conn.batch("BEGIN ISOLATION LEVEL READ COMMITTED").map_err(storage("begin"))?;
    let mut tx = WriteTx { conn, keys: HashMap::new() };
    let result = catch_unwind(AssertUnwindSafe(|| work(&mut tx)))
        .unwrap_or_else(|_| Err(Error::Storage("a unit of work panicked".into())));
    match result {
        Ok(()) => match conn.batch("COMMIT") {
            Ok(()) => Ok(()),
            Err(e) => {
                let _ = conn.batch("ROLLBACK");
                Err(storage("commit")(e))
            }
        },
        Err(e) => {
            conn.batch("ROLLBACK").map_err(storage("rollback"))?;
            Err(e)
        }
    }
}

/// A write transaction's view of the store.
struct WriteTx<'c> {
    conn: &'c mut Connection,
    /// Shard keys of the current rows read or written so far, by `type/id` (a write needs the
    /// key of the row it replaces; this saves reading it again).
    keys: HashMap<String, String>,
}

impl WriteTx<'_> {
    /// Takes the locks a write of `v` needs: the type's, shared (against searches inside
    /// conditional operations), and one per identifier value, shared too: it makes a
    /// conditional create or update deciding on that identifier (which locks it exclusively)
    /// wait for this write's commit, or this write for its commit, while plain writers of the
    /// same identifier (concurrent bundles writing the same Organization, or Synthea's shared
    /// `claim-group` value) pass each other instead of deadlocking on the order they take them.
    fn lock_for_put(&mut self, v: &NewVersion<'_>) -> Result<()> {
        let mut keys: Vec<i64> =
            v.identifiers.iter().map(|(_, value)| identifier_key(v.resource_type, value)).collect();
        keys.sort_unstable();
        keys.dedup();
        let type_key = lock_key("type", v.resource_type);
        self.conn
            .execute(
                "SELECT pg_advisory_xact_lock_shared($1::int8)
                 UNION ALL SELECT pg_advisory_xact_lock_shared(k) FROM unnest($2::int8[]) AS k",
                &[&type_key, &keys],
            )
            .map_err(storage("lock"))?;
        Ok(())
    }
}

impl Transaction for WriteTx<'_> {
    fn current(&mut self, resource_type: &str, id: &str) -> Result<Option<ResourceVersion>> {
        let found = queries::current_with_key(self.conn, resource_type, id, Lock::Write)?;
        Ok(found.map(|(v, key)| {
            self.keys.insert(format!("{resource_type}/{id}"), key);
            v
        }))
    }

    fn find_by_identifier(&mut self, resource_type: &str, system: Option<&str>, value: &str) -> Result<Vec<String>> {
        let key = identifier_key(resource_type, value);
        self.conn.execute("SELECT pg_advisory_xact_lock($1)", &[&key]).map_err(storage("lock"))?;
        queries::find_by_identifier(self.conn, resource_type, system, value)
    }

    fn find_by_identifier_to_read(
        &mut self,
        resource_type: &str,
        system: Option<&str>,
        value: &str,
    ) -> Result<Vec<String>> {
        // Shared: it keeps writers of a matching resource out until commit, as the exclusive
        // lock does, but lets concurrent readers of the same identifiers (bundles resolving
        // the same Practitioners and Organizations in different orders) pass each other.
        let key = identifier_key(resource_type, value);
        self.conn.execute("SELECT pg_advisory_xact_lock_shared($1)", &[&key]).map_err(storage("lock"))?;
        queries::find_by_identifier(self.conn, resource_type, system, value)
    }

    fn version(&mut self, resource_type: &str, id: &str, version: u64) -> Result<Option<ResourceVersion>> {
        queries::version(self.conn, resource_type, id, version)
    }

    fn current_version(&mut self, resource_type: &str, id: &str) -> Result<Option<(u64, bool)>> {
        let current = queries::current_with_key(self.conn, resource_type, id, Lock::Reference)?;
        Ok(current.map(|(v, key)| {
            self.keys.insert(format!("{resource_type}/{id}"), key);
            (v.version, v.is_deleted())
        }))
    }

    fn put(&mut self, version: &NewVersion<'_>) -> Result<i64> {
        self.lock_for_put(version)?;
        let name = format!("{}/{}", version.resource_type, version.id);
        let old_key = match (version.version > 1, self.keys.get(&name)) {
            (false, _) => String::new(),
            (true, Some(key)) => key.clone(),
            (true, None) => queries::shard_key_of(self.conn, version.resource_type, version.id)?,
        };
        let (sequence, _rid, key) = queries::put(self.conn, version, &old_key)?;
        self.keys.insert(name, key);
        Ok(sequence)
    }

    fn search_ids(&mut self, query: &search::query::SearchQuery, limit: usize) -> Result<Vec<String>> {
        for ty in &query.types {
            let key = lock_key("type", ty);
            self.conn.execute("SELECT pg_advisory_xact_lock($1)", &[&key]).map_err(storage("lock"))?;
        }
        crate::search_sql::search_ids(self.conn, query, limit)
    }

    fn outbound_partners(&mut self, event: &str) -> Result<Vec<String>> {
        crate::outbox::partners_for(self.conn, event)
    }

    fn append_audit(
        &mut self,
        entries: &[store::audit::NewAuditEntry],
        key: Option<&store::audit::AuditKey>,
    ) -> Result<()> {
        crate::audit::append(self.conn, entries, key)
    }

    fn enqueue_outbound(&mut self, message: &store::outbox::NewOutbound<'_>) -> Result<()> {
        crate::outbox::enqueue(self.conn, message)
    }

    fn enqueue_notification(&mut self, notification: &store::notify::NewNotification<'_>) -> Result<i64> {
        crate::notify::enqueue(self.conn, notification)
    }
}
