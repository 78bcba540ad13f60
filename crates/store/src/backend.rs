//! The contract a storage backend fulfils (SQLite now, PostgreSQL next).

use crate::Result;
use search::query::{Include, SearchQuery};
use std::sync::Arc;
use time::OffsetDateTime;

/// What a version did to its resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The version created the resource (first written, or written again after a deletion).
    Created,
    /// The version replaced the live resource's content.
    Updated,
    /// The version deleted the resource (it has no body).
    Deleted,
}

impl Change {
    /// The HTTP method that history bundles show for this change.
    pub fn method(self) -> &'static str {
        match self {
            Change::Created => "POST",
            Change::Updated => "PUT",
            Change::Deleted => "DELETE",
        }
    }
}

/// One stored version of a resource.
#[derive(Debug, Clone)]
pub struct ResourceVersion {
    /// The resource's type, e.g. `Patient`.
    pub resource_type: String,
    /// The resource's logical id.
    pub id: String,
    /// `meta.versionId`, from 1 upwards.
    pub version: u64,
    /// `meta.lastUpdated`.
    pub last_updated: OffsetDateTime,
    /// What this version did to the resource.
    pub change: Change,
    /// The resource as stored (compact JSON with `id` and `meta` filled in); `None` when deleted.
    pub body: Option<Arc<str>>,
    /// Position in the store's global history (increases with every write).
    pub sequence: i64,
}

impl ResourceVersion {
    /// Whether this version is a deletion.
    pub fn is_deleted(&self) -> bool {
        self.change == Change::Deleted
    }
}

/// A version about to be written inside a [`Transaction`].
#[derive(Debug)]
pub struct NewVersion<'a> {
    /// The resource's type, e.g. `Patient`.
    pub resource_type: &'a str,
    /// The resource's logical id.
    pub id: &'a str,
    /// `meta.versionId` of the new version: one more than the current one, or 1.
    pub version: u64,
    /// `meta.lastUpdated` of the new version.
    pub last_updated: OffsetDateTime,
    /// What the new version does to the resource.
    pub change: Change,
    /// The JSON to store (already carrying `id` and `meta`); `None` for a deletion.
    pub body: Option<&'a str>,
    /// `(system, value)` of each `identifier` of the resource, for conditional operations.
    pub identifiers: &'a [(Option<String>, String)],
    /// The search index rows of the new version (none for a deletion).
    pub index: &'a [search::IndexEntry],
    /// The text `_text` and `_content` search (none for a deletion).
    pub full_text: Option<&'a search::FullText>,
}

/// Which history to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct HistoryQuery {
    /// `None` for system-level history.
    pub resource_type: Option<String>,
    /// `None` for type- or system-level history.
    pub id: Option<String>,
    /// Only versions with `lastUpdated >= since`.
    pub since: Option<OffsetDateTime>,
    /// Only versions with a sequence below this (paging cursor).
    pub before_sequence: Option<i64>,
    /// At most this many versions.
    pub count: usize,
}

/// Reads and writes inside one database transaction. Everything written through one
/// `Transaction` commits together or not at all.
pub trait Transaction {
    /// The latest version of a resource (a deletion included), if it ever existed.
    fn current(&mut self, resource_type: &str, id: &str) -> Result<Option<ResourceVersion>>;
    /// Ids of the live (not deleted) resources of `resource_type` with a matching identifier;
    /// `system: None` matches any system.
    fn find_by_identifier(&mut self, resource_type: &str, system: Option<&str>, value: &str) -> Result<Vec<String>>;
    /// [`Transaction::find_by_identifier`] for a lookup that only reads (a conditional
    /// reference): nothing is created from its answer, so a backend that locks the identifier
    /// may lock it shared, and lookups of the same identifiers in different orders by
    /// concurrent transactions cannot deadlock.
    fn find_by_identifier_to_read(
        &mut self,
        resource_type: &str,
        system: Option<&str>,
        value: &str,
    ) -> Result<Vec<String>> {
        self.find_by_identifier(resource_type, system, value)
    }
    /// One exact version of a resource, as seen inside this transaction.
    fn version(&mut self, resource_type: &str, id: &str, version: u64) -> Result<Option<ResourceVersion>>;
    /// The latest version number of a resource and whether it is deleted, without its body
    /// (what reference checks need).
    fn current_version(&mut self, resource_type: &str, id: &str) -> Result<Option<(u64, bool)>> {
        Ok(self.current(resource_type, id)?.map(|v| (v.version, v.is_deleted())))
    }
    /// Ids of the live resources matching `query` as seen inside this transaction, at most
    /// `limit` (conditional operations with search parameters).
    fn search_ids(&mut self, query: &SearchQuery, limit: usize) -> Result<Vec<String>> {
        let _ = (query, limit);
        Err(crate::Error::NotSupported("search inside a transaction on this backend".into()))
    }
    /// Keeps, of the live resources `ids` of `resource_type` that a conditional operation
    /// matched, those the acting caller may see (all of them unless an access guard wraps
    /// the transaction).
    fn visible(&mut self, resource_type: &str, ids: Vec<String>) -> Result<Vec<String>> {
        let _ = resource_type;
        Ok(ids)
    }
    /// Writes a new version: a history row, the current row, and its index rows. Returns the
    /// version's position in the global history (its `sequence`).
    fn put(&mut self, version: &NewVersion<'_>) -> Result<i64>;
    /// Names of the outbound partners that take trigger `event` (none on backends without an
    /// outbox).
    fn outbound_partners(&mut self, event: &str) -> Result<Vec<String>> {
        let _ = event;
        Ok(Vec::new())
    }
    /// Appends audit entries to the chain, committed with this transaction (called once, at
    /// the end of a unit of work, so that the chain's lock is the last one it takes); their
    /// hashes are keyed with `key` when given ([`crate::audit::chain_hash`]).
    fn append_audit(
        &mut self,
        entries: &[crate::audit::NewAuditEntry],
        key: Option<&crate::audit::AuditKey>,
    ) -> Result<()> {
        let _ = (entries, key);
        Err(crate::Error::NotSupported("an audit trail on this backend".into()))
    }
    /// Queues an outbound message for its partners, committed with this transaction.
    fn enqueue_outbound(&mut self, message: &crate::outbox::NewOutbound<'_>) -> Result<()> {
        let _ = message;
        Err(crate::Error::NotSupported("an outbox on this backend".into()))
    }
    /// Queues a notification, committed with this transaction; its number within its channel.
    fn enqueue_notification(&mut self, notification: &crate::notify::NewNotification<'_>) -> Result<i64> {
        let _ = notification;
        Err(crate::Error::NotSupported("a notification outbox on this backend".into()))
    }
}

/// A unit of work run inside one transaction by [`Backend::execute`].
pub type Work = Box<dyn FnOnce(&mut dyn Transaction) -> Result<()> + Send>;

/// A storage backend. Reads may run on many threads at once; writes are [`Work`] items that the
/// backend runs each in its own all-or-nothing transaction (or savepoint within a group commit),
/// returning only once the effect is durable.
pub trait Backend: Send + Sync + 'static {
    /// The latest version of a resource (a deletion included).
    fn current(&self, resource_type: &str, id: &str) -> Result<Option<ResourceVersion>>;
    /// One exact version of a resource.
    fn version(&self, resource_type: &str, id: &str, version: u64) -> Result<Option<ResourceVersion>>;
    /// History entries matching `query`, newest first, at most `query.count`.
    fn history(&self, query: &HistoryQuery) -> Result<Vec<ResourceVersion>>;
    /// How many history entries match `query` (ignoring `count` and `before_sequence`).
    fn history_total(&self, query: &HistoryQuery) -> Result<u64>;
    /// Refreshes the planner's statistics after a bulk load (PostgreSQL plans a freshly
    /// loaded store's searches from empty statistics until autovacuum gets to it; searches
    /// were 10x slower). Nothing by default.
    fn refresh_statistics(&self) -> Result<()> {
        Ok(())
    }
    /// Every version of every resource with a sequence above `after_sequence`, oldest first,
    /// at most `count` (copying a whole store with its history, e.g. `continuum migrate`).
    fn versions_after(&self, after_sequence: i64, count: usize) -> Result<Vec<ResourceVersion>>;
    /// Ids of live resources of `resource_type` with a matching identifier.
    fn find_by_identifier(&self, resource_type: &str, system: Option<&str>, value: &str) -> Result<Vec<String>>;
    /// The sequence of the latest committed version (0 in an empty store): the cut of a
    /// consistent [`snapshot`](Backend::snapshot).
    fn latest_sequence(&self) -> Result<i64>;
    /// One page of the resources of `resource_type` as they stood at the cut `as_of` (a
    /// [`latest_sequence`](Backend::latest_sequence)): those live then, each in its version
    /// current then, in id order after `after_id` (`""` for the first page), looking at up to
    /// `count` resources. A resource written since the cut is read from its history, so writes
    /// going on change nothing a snapshot pages through. Returns the versions and the id to
    /// page on from (`None`: no resource of the type is left).
    fn snapshot(
        &self,
        resource_type: &str,
        as_of: i64,
        after_id: &str,
        count: usize,
    ) -> Result<(Vec<ResourceVersion>, Option<String>)>;
    /// Number of live resources per resource type.
    fn count_by_type(&self) -> Result<Vec<(String, u64)>>;
    /// Keys of the live resources matching `query`, in result order (its `_sort`, then
    /// insertion), at most `limit`. A key is the backend's stable handle on a resource.
    fn search(&self, query: &SearchQuery, limit: usize) -> Result<Vec<i64>>;
    /// How many live resources match `query`.
    fn search_count(&self, query: &SearchQuery) -> Result<u64>;
    /// Keys of the live resources that the `keys` resources reference through `include`.
    fn include(&self, keys: &[i64], include: &Include) -> Result<Vec<i64>>;
    /// Keys of the live `include.source_type` resources that reference the `keys` resources.
    fn revinclude(&self, keys: &[i64], include: &Include) -> Result<Vec<i64>>;
    /// The current versions of the live resources among `keys`, in the order given.
    fn fetch(&self, keys: &[i64]) -> Result<Vec<(i64, ResourceVersion)>>;
    /// Runs `work` in a transaction and commits it durably; an error from `work` leaves no trace.
    fn execute(&self, work: Work) -> Result<()>;
    /// Runs independent `works` (each all-or-nothing on its own, like [`Backend::execute`]) and
    /// returns their results in order; backends that group commits run them in as few commits
    /// as they can.
    fn execute_all(&self, works: Vec<Work>) -> Vec<Result<()>> {
        works.into_iter().map(|work| self.execute(work)).collect()
    }
}

/// Shared handle to a backend.
pub type SharedBackend = Arc<dyn Backend>;
