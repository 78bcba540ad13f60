//! PostgreSQL storage backend: the same tables as the SQLite backend (resources, history,
//! identifiers, search indexes) with `tsvector` full text, versioned migrations applied on
//! connect, and a pool of connections. Every unit of work runs in its own transaction and is
//! answered only after its `COMMIT` (with `synchronous_commit = on`, so after the WAL flush).
//!
//! The tables are laid out for sharding by patient (Citus), see the modules `layout` and `shard` and
//! `docs/scale-out.md`: patient-owned rows carry the patient's shard key, resources outside
//! the Patient compartment live in shared tables, and single-patient searches name the key.
//!
//! # Why writes are race-free without SERIALIZABLE
//!
//! A unit of work ([`Work`]) is a `FnOnce`: it cannot be run again after a serialization
//! failure, so SERIALIZABLE would turn races into errors the caller never sees in SQLite. The
//! transactions run READ COMMITTED and take locks before they read what they decide on:
//! `current` locks the resource row (`FOR NO KEY UPDATE`, which after a wait returns the newest
//! committed version) or, for a resource that does not exist yet, an advisory lock on its
//! `type/id`; identifier lookups that decide a write (conditional create, update, delete)
//! take an exclusive advisory lock per `(type, value)`, and the identifiers a version writes
//! and the lookups of conditional references take it shared; searches inside a transaction (conditional operations) take an exclusive
//! advisory lock on the resource type, against which every write takes it shared. Each read
//! that follows a lock is a new statement, so it sees everything committed before the lock.

mod audit;
pub mod auth;
mod conn;
mod index_rows;
mod jobs;
mod layout;
mod messages;
mod notify;
mod outbox;
mod queries;
mod replicas;
mod schema;
mod search_sql;
mod shard;
mod writer;

use conn::{Conn, Manager};
pub use jobs::PostgresJobStore;
pub use messages::PostgresMessageLog;
pub use notify::PostgresNotifications;
pub use outbox::PostgresOutbox;
pub use replicas::ReadRouting;
use replicas::Standbys;
use search::query::{Include, SearchQuery};
use std::time::Duration;
use store::{Backend, Error, HistoryQuery, ResourceVersion, Result, Work};

/// Most connections the pool opens.
const POOL_SIZE: u32 = 16;
/// How long a caller waits for a free connection.
const POOL_WAIT: Duration = Duration::from_secs(30);
/// The longest a statement may run before the server cancels it.
const STATEMENT_TIMEOUT: &str = "30s";

/// A [`Backend`] on a PostgreSQL database.
pub struct PostgresBackend {
    pool: r2d2::Pool<Manager>,
    standbys: Standbys,
}

impl PostgresBackend {
    /// Connects to the database at `url` (`postgres://USER@HOST:PORT/DB`) and brings its
    /// schema up to date.
    pub fn connect(url: &str) -> Result<PostgresBackend> {
        PostgresBackend::connect_with_replicas(url, &[])
    }

    /// Connects to the primary at `url` (migrating it) and to streaming-replication standbys
    /// at `replicas`, which then answer reads and searches (see the `replicas`
    /// module for read-your-writes).
    pub fn connect_with_replicas(url: &str, replicas: &[String]) -> Result<PostgresBackend> {
        let mut config: postgres::Config =
            url.parse().map_err(|_| Error::Storage("the PostgreSQL URL is not valid".into()))?;
        config.options(&format!("-c statement_timeout={STATEMENT_TIMEOUT} -c synchronous_commit=on"));
        config.application_name("continuum");
        let mut first = Manager::connect(&config)?;
        schema::migrate(&mut first)?;
        layout::distribute(&mut first)?;
        let standbys = Standbys::connect(replicas, &config)?;
        Ok(PostgresBackend { pool: pool(config), standbys })
    }

    /// How many reads standbys and the primary answered (both 0 without standbys).
    pub fn read_routing(&self) -> ReadRouting {
        self.standbys.routing()
    }

    /// Runs a read on a standby that has caught up with this process's writes, else on the
    /// primary.
    fn read<T>(&self, read: impl Fn(&mut Connection) -> Result<T>) -> Result<T> {
        self.standbys.read(&self.pool, read)
    }

    /// The schema version of the database (the number of migrations applied).
    pub fn schema_version(&self) -> Result<usize> {
        schema::applied(&mut *self.conn()?)
    }

    /// The schema version this program creates.
    pub fn latest_schema_version() -> usize {
        schema::latest()
    }

    /// The number of hash partitions of the patient-owned tables (0: not partitioned), as
    /// chosen when the sharded layout was created (`continuum.partitions`; see
    /// `docs/scale-out.md`).
    pub fn shard_partitions(&self) -> Result<u32> {
        layout::partitions(&mut *self.conn()?)
    }

    /// Brings the database at `url` to schema version `version` and no further (tests build
    /// older databases with it to check upgrades).
    #[doc(hidden)]
    pub fn migrate_to_version(url: &str, version: usize) -> Result<()> {
        let config: postgres::Config =
            url.parse().map_err(|_| Error::Storage("the PostgreSQL URL is not valid".into()))?;
        schema::migrate_to(&mut Manager::connect(&config)?, version)
    }

    /// The plan PostgreSQL makes for [`Backend::search`] of `query` (`EXPLAIN`'s text), for
    /// tests that check which tables and partitions a search reads.
    #[doc(hidden)]
    pub fn explain_search(&self, query: &SearchQuery, limit: usize) -> Result<String> {
        search_sql::explain(&mut *self.conn()?, query, limit)
    }

    fn conn(&self) -> Result<r2d2::PooledConnection<Manager>> {
        pooled(&self.pool)
    }
}

impl Backend for PostgresBackend {
    fn current(&self, resource_type: &str, id: &str) -> Result<Option<ResourceVersion>> {
        self.read(|conn| queries::current(conn, resource_type, id, queries::Lock::None))
    }

    fn version(&self, resource_type: &str, id: &str, version: u64) -> Result<Option<ResourceVersion>> {
        self.read(|conn| queries::version(conn, resource_type, id, version))
    }

    fn history(&self, query: &HistoryQuery) -> Result<Vec<ResourceVersion>> {
        self.read(|conn| queries::history(conn, query))
    }

    fn history_total(&self, query: &HistoryQuery) -> Result<u64> {
        self.read(|conn| queries::history_total(conn, query))
    }

    fn refresh_statistics(&self) -> Result<()> {
        self.conn()?.batch("ANALYZE").map_err(storage("analyze"))
    }

    fn versions_after(&self, after_sequence: i64, count: usize) -> Result<Vec<ResourceVersion>> {
        self.read(|conn| queries::versions_after(conn, after_sequence, count))
    }

    fn find_by_identifier(&self, resource_type: &str, system: Option<&str>, value: &str) -> Result<Vec<String>> {
        self.read(|conn| queries::find_by_identifier(conn, resource_type, system, value))
    }

    fn count_by_type(&self) -> Result<Vec<(String, u64)>> {
        self.read(queries::count_by_type)
    }

    fn latest_sequence(&self) -> Result<i64> {
        // From the primary: a standby may not have replayed the latest commits.
        queries::latest_sequence(&mut *crate::pooled(&self.pool)?)
    }

    fn snapshot(
        &self,
        resource_type: &str,
        as_of: i64,
        after_id: &str,
        count: usize,
    ) -> Result<(Vec<ResourceVersion>, Option<String>)> {
        queries::snapshot(&mut *crate::pooled(&self.pool)?, resource_type, as_of, after_id, count)
    }

    fn search(&self, query: &SearchQuery, limit: usize) -> Result<Vec<i64>> {
        self.read(|conn| search_sql::search(conn, query, limit))
    }

    fn search_count(&self, query: &SearchQuery) -> Result<u64> {
        self.read(|conn| search_sql::count(conn, query))
    }

    fn include(&self, keys: &[i64], include: &Include) -> Result<Vec<i64>> {
        self.read(|conn| search_sql::include(conn, keys, include))
    }

    fn revinclude(&self, keys: &[i64], include: &Include) -> Result<Vec<i64>> {
        self.read(|conn| search_sql::revinclude(conn, keys, include))
    }

    fn fetch(&self, keys: &[i64]) -> Result<Vec<(i64, ResourceVersion)>> {
        self.read(|conn| queries::fetch(conn, keys))
    }

    fn execute(&self, work: Work) -> Result<()> {
        let mut conn = self.conn()?;
        writer::execute(&mut conn, work)?;
        if !self.standbys.is_empty() {
            // The answer waits for the position to be noted, so its reader routes by it.
            self.standbys.note_commit(&mut conn)?;
        }
        Ok(())
    }
}

/// A `Storage` error for a failed `operation`. Only the SQLSTATE goes into it: server messages
/// can quote values, and values may be patient data.
pub(crate) fn storage(operation: &'static str) -> impl Fn(postgres::Error) -> Error {
    move |e| match e.code() {
        Some(code) => Error::Storage(format!("{operation}: PostgreSQL {}", code.code())),
        None if e.is_closed() => Error::Unavailable(format!("{operation}: the database connection closed")),
        None => Error::Storage(format!("{operation}: database error")),
    }
}

/// A pool of connections opened with `config`.
pub(crate) fn pool(config: postgres::Config) -> r2d2::Pool<Manager> {
    r2d2::Pool::builder()
        .max_size(POOL_SIZE)
        .min_idle(Some(0))
        .connection_timeout(POOL_WAIT)
        .build_unchecked(Manager::new(config))
}

/// A connection from `pool` (the backend's, shared by the message log and the outbox).
pub(crate) fn pooled(pool: &r2d2::Pool<Manager>) -> Result<r2d2::PooledConnection<Manager>> {
    pool.get().map_err(|_| Error::Unavailable("no database connection is available".into()))
}

/// Keeps the type of [`Conn`] visible to the modules that take it.
pub(crate) type Connection = Conn;
