//! SQLite storage backend: one file (`continuum.db`) in WAL mode, a writer thread that
//! group-commits units of work and a syncer thread that makes each commit durable (fsync of
//! the WAL) before its callers are answered, a checkpointer, and a small pool of read-only
//! connections for reads.

mod audit;
pub mod auth;
mod checkpoint;
mod index_rows;
mod jobs;
mod messages;
mod notify;
mod outbox;
mod queries;
mod schema;
mod search_sql;
mod writer;

use crossbeam_channel::Sender;
use rusqlite::{Connection, OpenFlags};
use search::query::{Include, SearchQuery};
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use store::{Backend, Error, HistoryQuery, ResourceVersion, Result, Work};
use writer::Job;

pub use jobs::SqliteJobStore;
pub use messages::SqliteMessageLog;
pub use notify::SqliteNotifications;
pub use outbox::SqliteOutbox;

/// Name of the database file inside the data directory.
pub const DATABASE_FILE: &str = "continuum.db";

/// How long a connection waits for a lock held by another connection or process.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Page cache of the write connection, in KiB (a negative `cache_size`).
const WRITER_CACHE_KIB: i64 = 64 * 1024;
/// Page cache of each read connection, in KiB.
const READER_CACHE_KIB: i64 = 16 * 1024;
/// WAL size (pages) at which the writer checkpoints itself, should the checkpointer lag.
const WRITER_AUTOCHECKPOINT: i64 = 10_000;

/// A [`Backend`] on a SQLite database.
pub struct SqliteBackend {
    path: PathBuf,
    writer: Option<(Sender<Job>, JoinHandle<()>)>,
    /// Declared after `writer`, so it stops after the writer has finished.
    _checkpointer: checkpoint::Checkpointer,
    readers: Pool,
}

impl SqliteBackend {
    /// Opens (creating if needed) `dir/continuum.db`, bringing its schema up to date.
    pub fn open(dir: &Path) -> Result<SqliteBackend> {
        std::fs::create_dir_all(dir).map_err(|e| Error::Storage(format!("cannot create the data directory: {e}")))?;
        let path = dir.join(DATABASE_FILE);
        let mut conn = Connection::open(&path).map_err(storage("open"))?;
        configure_writer(&conn)?;
        schema::migrate(&mut conn)?;
        let wal = open_wal(dir, &path)?;
        let checkpointer = checkpoint::Checkpointer::spawn(&path)?;
        let writer = writer::spawn(conn, wal).map_err(|e| Error::Storage(format!("cannot start the writer: {e}")))?;
        let readers = std::thread::available_parallelism().map_or(4, |n| n.get() * 2);
        Ok(SqliteBackend {
            readers: Pool::new(path.clone(), readers),
            path,
            writer: Some(writer),
            _checkpointer: checkpointer,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs SQLite's `PRAGMA quick_check`; `Storage` error with its findings unless all is well.
    pub fn check_integrity(&self) -> Result<()> {
        let conn = self.readers.get()?;
        let mut stmt = conn.prepare("PRAGMA quick_check").map_err(storage("integrity check"))?;
        let findings: Vec<String> =
            stmt.query_map([], |row| row.get(0)).and_then(|rows| rows.collect()).map_err(storage("integrity check"))?;
        if findings == ["ok"] {
            Ok(())
        } else {
            Err(Error::Storage(format!("integrity check failed: {}", findings.join("; "))))
        }
    }

    /// The schema version of the open database (the number of migrations applied).
    pub fn schema_version(&self) -> Result<usize> {
        let conn = self.readers.get()?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(storage("schema"))?;
        Ok(usize::try_from(version).unwrap_or(0))
    }

    /// Interrupts each search statement that runs longer than `timeout` (`None`: never) with an
    /// `Unavailable` error, so that a search the HTTP edge has given up on stops holding a read
    /// connection and a CPU. Reads by id, history and the writer are not limited.
    pub fn set_search_timeout(&self, timeout: Option<Duration>) {
        let millis = timeout.map_or(0, |t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX).max(1));
        self.readers.search_timeout_ms.store(millis, Ordering::Relaxed);
    }

    /// A read connection of the pool.
    pub(crate) fn reader(&self) -> Result<Pooled<'_>> {
        self.readers.get()
    }

    /// The schema version this program creates.
    pub fn latest_schema_version() -> usize {
        schema::latest()
    }

    fn send(&self, work: Work) -> Result<crossbeam_channel::Receiver<Result<()>>> {
        let (reply, receiver) = crossbeam_channel::bounded(1);
        let (sender, _) = self.writer.as_ref().ok_or_else(stopped)?;
        sender.send(Job { work, reply }).map_err(|_| stopped())?;
        Ok(receiver)
    }
}

fn stopped() -> Error {
    Error::Unavailable("the store's writer has stopped".into())
}

impl Drop for SqliteBackend {
    /// Lets the writer finish what is queued, then waits for it.
    fn drop(&mut self) {
        if let Some((sender, handle)) = self.writer.take() {
            drop(sender);
            let _ = handle.join();
        }
    }
}

impl Backend for SqliteBackend {
    fn current(&self, resource_type: &str, id: &str) -> Result<Option<ResourceVersion>> {
        queries::current(&*self.readers.get()?, resource_type, id)
    }

    fn version(&self, resource_type: &str, id: &str, version: u64) -> Result<Option<ResourceVersion>> {
        queries::version(&*self.readers.get()?, resource_type, id, version)
    }

    fn history(&self, query: &HistoryQuery) -> Result<Vec<ResourceVersion>> {
        queries::history(&*self.readers.get()?, query)
    }

    fn history_total(&self, query: &HistoryQuery) -> Result<u64> {
        queries::history_total(&*self.readers.get()?, query)
    }

    fn versions_after(&self, after_sequence: i64, count: usize) -> Result<Vec<ResourceVersion>> {
        queries::versions_after(&*self.readers.get()?, after_sequence, count)
    }

    fn find_by_identifier(&self, resource_type: &str, system: Option<&str>, value: &str) -> Result<Vec<String>> {
        queries::find_by_identifier(&*self.readers.get()?, resource_type, system, value)
    }

    fn count_by_type(&self) -> Result<Vec<(String, u64)>> {
        queries::count_by_type(&*self.readers.get()?)
    }

    fn latest_sequence(&self) -> Result<i64> {
        queries::latest_sequence(&*self.readers.get()?)
    }

    fn snapshot(
        &self,
        resource_type: &str,
        as_of: i64,
        after_id: &str,
        count: usize,
    ) -> Result<(Vec<ResourceVersion>, Option<String>)> {
        queries::snapshot(&*self.readers.get()?, resource_type, as_of, after_id, count)
    }

    fn search(&self, query: &SearchQuery, limit: usize) -> Result<Vec<i64>> {
        search_sql::search(&*self.readers.get_for_search()?, query, limit)
    }

    fn search_count(&self, query: &SearchQuery) -> Result<u64> {
        search_sql::count(&*self.readers.get_for_search()?, query)
    }

    fn include(&self, keys: &[i64], include: &Include) -> Result<Vec<i64>> {
        search_sql::include(&*self.readers.get_for_search()?, keys, include)
    }

    fn revinclude(&self, keys: &[i64], include: &Include) -> Result<Vec<i64>> {
        search_sql::revinclude(&*self.readers.get_for_search()?, keys, include)
    }

    fn fetch(&self, keys: &[i64]) -> Result<Vec<(i64, ResourceVersion)>> {
        queries::fetch(&*self.readers.get()?, keys)
    }

    fn execute(&self, work: Work) -> Result<()> {
        self.send(work)?.recv().map_err(|_| stopped())?
    }

    fn execute_all(&self, works: Vec<Work>) -> Vec<Result<()>> {
        // Enqueue everything first so that the writer can put them in one commit.
        let pending: Vec<_> = works.into_iter().map(|work| self.send(work)).collect();
        pending.into_iter().map(|p| p.and_then(|r| r.recv().map_err(|_| stopped())?)).collect()
    }
}

fn configure_writer(conn: &Connection) -> Result<()> {
    let mode: String =
        conn.pragma_update_and_check(None, "journal_mode", "wal", |row| row.get(0)).map_err(storage("configure"))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::Storage(format!("the database cannot use WAL mode (it is in {mode} mode)")));
    }
    // NORMAL: COMMIT appends to the WAL without an fsync; the writer's syncer thread fsyncs
    // the WAL before any caller hears of its commit (see writer.rs for why that is durable).
    // Checkpoints still sync the WAL before copying it and the database after.
    conn.pragma_update(None, "synchronous", "NORMAL").map_err(storage("configure"))?;
    conn.pragma_update(None, "foreign_keys", true).map_err(storage("configure"))?;
    // Each unit of work runs in a savepoint, whose undo pages go to a statement journal: in
    // memory rather than a temporary file (pure overhead; the WAL is what makes it durable).
    conn.pragma_update(None, "temp_store", "MEMORY").map_err(storage("configure"))?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(storage("configure"))?;
    conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB).map_err(storage("configure"))?;
    // The checkpointer thread keeps the WAL short; commits then only append and fsync.
    conn.pragma_update(None, "wal_autocheckpoint", WRITER_AUTOCHECKPOINT).map_err(storage("configure"))?;
    conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024).map_err(storage("configure"))?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

/// The WAL of the database at `path`, opened for the syncer's fsyncs. The write connection
/// has already used the database (migrations), so SQLite has created the file; the data
/// directory is fsynced once so that the WAL's and the database's directory entries are
/// durable too, which an fsync of the files alone does not promise on every file system.
fn open_wal(dir: &Path, path: &Path) -> Result<std::fs::File> {
    let mut name = path.as_os_str().to_owned();
    name.push("-wal");
    let wal = std::fs::File::open(&name).map_err(|e| Error::Storage(format!("cannot open the WAL: {}", e.kind())))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::Storage(format!("cannot sync the data directory: {}", e.kind())))?;
    Ok(wal)
}

/// A `Storage` error for a failed `operation`. Only the SQLite error code goes into it: SQLite
/// messages can quote values, and values may be patient data.
pub(crate) fn storage(operation: &'static str) -> impl Fn(rusqlite::Error) -> Error {
    move |e| match e.sqlite_error_code() {
        // Only the search timeout's progress handler interrupts statements.
        Some(rusqlite::ErrorCode::OperationInterrupted) => {
            Error::Unavailable("the search ran past this server's time limit".into())
        }
        Some(code) => Error::Storage(format!("{operation}: SQLite {code:?}")),
        None => Error::Storage(format!("{operation}: {}", error_class(&e))),
    }
}

fn error_class(e: &rusqlite::Error) -> &'static str {
    match e {
        rusqlite::Error::QueryReturnedNoRows => "no rows",
        rusqlite::Error::FromSqlConversionFailure(..) | rusqlite::Error::InvalidColumnType(..) => {
            "unexpected stored value"
        }
        rusqlite::Error::IntegralValueOutOfRange(..) => "number out of range",
        rusqlite::Error::Utf8Error(..) => "stored text is not UTF-8",
        _ => "database error",
    }
}

/// Read-only connections, opened on demand and kept for reuse (with their cached statements).
/// A plain mutex-guarded stack: SQLite connections to a local file need no health checks or
/// timeouts, so a pooling crate would add a dependency and nothing else.
struct Pool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    max_idle: usize,
    /// How long a search statement may run, in milliseconds (0: no limit).
    search_timeout_ms: AtomicU64,
}

/// SQLite virtual-machine steps between two looks at a search's deadline.
const PROGRESS_STEPS: std::ffi::c_int = 1000;

impl Pool {
    fn new(path: PathBuf, max_idle: usize) -> Self {
        Pool { path, idle: Mutex::new(Vec::new()), max_idle, search_timeout_ms: AtomicU64::new(0) }
    }

    fn get(&self) -> Result<Pooled<'_>> {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match idle {
            Some(conn) => conn,
            None => self.open()?,
        };
        Ok(Pooled { pool: self, conn: Some(conn), timed: false })
    }

    /// A connection whose statements are interrupted once the search timeout has passed: a
    /// progress handler compares the clock with a deadline every [`PROGRESS_STEPS`] steps, and
    /// is removed again when the connection goes back to the pool.
    fn get_for_search(&self) -> Result<Pooled<'_>> {
        let mut pooled = self.get()?;
        let millis = self.search_timeout_ms.load(Ordering::Relaxed);
        if millis > 0 {
            let deadline = Instant::now() + Duration::from_millis(millis);
            pooled
                .progress_handler(PROGRESS_STEPS, Some(move || Instant::now() >= deadline))
                .map_err(storage("search deadline"))?;
            pooled.timed = true;
        }
        Ok(pooled)
    }

    fn open(&self) -> Result<Connection> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
        let conn = Connection::open_with_flags(&self.path, flags).map_err(storage("open reader"))?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(storage("open reader"))?;
        conn.pragma_update(None, "query_only", true).map_err(storage("open reader"))?;
        conn.pragma_update(None, "cache_size", -READER_CACHE_KIB).map_err(storage("open reader"))?;
        conn.set_prepared_statement_cache_capacity(64);
        Ok(conn)
    }
}

/// A connection borrowed from the [`Pool`]; goes back when dropped.
struct Pooled<'a> {
    pool: &'a Pool,
    conn: Option<Connection>,
    /// Whether a search deadline is installed.
    timed: bool,
}

impl Deref for Pooled<'_> {
    type Target = Connection;

    #[allow(clippy::expect_used, reason = "`conn` is taken only by `drop`: present until then")]
    fn deref(&self) -> &Connection {
        self.conn.as_ref().expect("present until dropped")
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            if self.timed {
                let _ = conn.progress_handler(0, None::<fn() -> bool>);
            }
            let mut idle = self.pool.idle.lock().unwrap_or_else(|p| p.into_inner());
            if idle.len() < self.pool.max_idle {
                idle.push(conn);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENDLESS: &str = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c";

    #[test]
    fn a_search_past_its_timeout_is_interrupted() {
        let dir = tempfile::tempdir().unwrap();
        let backend = SqliteBackend::open(dir.path()).unwrap();
        backend.set_search_timeout(Some(Duration::from_millis(50)));
        let started = Instant::now();
        let conn = backend.readers.get_for_search().unwrap();
        let result = conn.query_row(ENDLESS, [], |r| r.get::<_, i64>(0)).map_err(storage("search"));
        assert!(matches!(result, Err(Error::Unavailable(_))), "{result:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
        drop(conn);
        // Back in the pool, the connection has no deadline left.
        let conn = backend.readers.get().unwrap();
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(
            conn.query_row("SELECT count(*) FROM (SELECT 1 UNION ALL SELECT 2)", [], |r| r.get::<_, i64>(0)).unwrap(),
            2
        );
    }
}
