//! The job states ([`store::JobStore`]) in the `job` table, through a connection of their own
//! beside the writer thread's (a job saves its state a few times in its life; queueing that
//! behind resource writes would gain nothing). `synchronous=FULL`: a saved state is durable
//! when the call returns.

use crate::{BUSY_TIMEOUT, SqliteBackend, storage};
use rusqlite::{Connection, OptionalExtension, Row, params};
use std::path::Path;
use std::sync::Mutex;
use store::jobs::{JobStore, StoredJob};
use store::{Error, Result};

/// The job states of a SQLite store.
pub struct SqliteJobStore {
    conn: Mutex<Connection>,
}

impl SqliteBackend {
    /// The job states kept in this store's database.
    pub fn job_store(&self) -> Result<SqliteJobStore> {
        SqliteJobStore::open(self.path())
    }
}

impl SqliteJobStore {
    /// Opens the job states in the database file at `path`, whose schema is already migrated
    /// (open a [`SqliteBackend`] first).
    pub fn open(path: &Path) -> Result<SqliteJobStore> {
        let conn = Connection::open(path).map_err(storage("open job store"))?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(storage("open job store"))?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(storage("open job store"))?;
        Ok(SqliteJobStore { conn: Mutex::new(conn) })
    }

    fn with<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&conn)
    }
}

fn job_row(row: &Row<'_>) -> rusqlite::Result<StoredJob> {
    Ok(StoredJob {
        id: row.get(0)?,
        kind: row.get(1)?,
        state: row.get(2)?,
        updated_at: search::from_micros(row.get(3)?).unwrap_or(time::OffsetDateTime::UNIX_EPOCH),
    })
}

impl JobStore for SqliteJobStore {
    fn save_job(&self, job: &StoredJob) -> Result<()> {
        self.with(|conn| {
            conn.prepare_cached(
                "INSERT INTO job (id, kind, state, updated_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, state = excluded.state,
                 updated_at = excluded.updated_at",
            )
            .and_then(|mut stmt| stmt.execute(params![job.id, job.kind, job.state, search::micros(job.updated_at)]))
            .map_err(storage("save job"))?;
            Ok(())
        })
    }

    fn job(&self, id: &str) -> Result<Option<StoredJob>> {
        self.with(|conn| {
            conn.prepare_cached("SELECT id, kind, state, updated_at FROM job WHERE id = ?1")
                .and_then(|mut stmt| stmt.query_row([id], job_row).optional())
                .map_err(storage("read job"))
        })
    }

    fn jobs(&self, kind: &str) -> Result<Vec<StoredJob>> {
        self.with(|conn| {
            let mut stmt = conn
                .prepare_cached("SELECT id, kind, state, updated_at FROM job WHERE kind = ?1 ORDER BY updated_at, id")
                .map_err(storage("list jobs"))?;
            let rows = stmt.query_map([kind], job_row).map_err(storage("list jobs"))?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(|e| Error::Storage(format!("list jobs: {e}")))
        })
    }

    fn remove_job(&self, id: &str) -> Result<bool> {
        self.with(|conn| {
            let removed = conn.execute("DELETE FROM job WHERE id = ?1", [id]).map_err(storage("remove job"))?;
            Ok(removed > 0)
        })
    }
}
