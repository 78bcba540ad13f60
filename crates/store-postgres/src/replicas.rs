//! Reads on streaming-replication standbys, with read-your-writes.
//!
//! Writes always go to the primary. After each commit the backend notes the primary's WAL
//! insert position (`pg_current_wal_insert_lsn()`, at or past the end of the commit record).
//! A read goes to a standby only once that standby has replayed past the newest position this
//! process noted (`pg_last_wal_replay_lsn()`), otherwise to the primary: whoever wrote through
//! this server sees the write at once, and no reader of this server sees the store go back in
//! time. That is stricter than per-client read-your-writes, and needs no client identity in
//! the storage layer. A standby's replay position is cached and asked again only when a read
//! needs a newer one, so reads with no recent write cost no extra round trip. A standby that
//! cannot answer (down, or a query cancelled by a recovery conflict) sends the read to the
//! primary.

use crate::conn::Manager;
use crate::{Connection, pooled, storage};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use store::{Error, Result};

/// A standby and how far it is known to have replayed.
struct Standby {
    pool: r2d2::Pool<Manager>,
    replayed: AtomicU64,
}

/// How the reads of a backend were served.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadRouting {
    /// Reads answered by a standby.
    pub standby: u64,
    /// Reads answered by the primary although standbys are configured (not yet replayed, or
    /// a standby failed).
    pub primary: u64,
}

/// The standbys of a backend (none: every read goes to the primary).
#[derive(Default)]
pub(crate) struct Standbys {
    standbys: Vec<Standby>,
    next: AtomicUsize,
    /// The primary's WAL position after this process's latest commit.
    written: AtomicU64,
    on_standby: AtomicU64,
    on_primary: AtomicU64,
}

/// A WAL position as a number (`pg_lsn - '0/0'`).
const LSN_NUMBER: &str = "(pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::int8";
const REPLAYED_NUMBER: &str = "(coalesce(pg_last_wal_replay_lsn(), '0/0'::pg_lsn) - '0/0'::pg_lsn)::int8";

impl Standbys {
    /// Connects to each standby URL (checking that it is a standby) with `config`'s settings.
    pub(crate) fn connect(urls: &[String], base: &postgres::Config) -> Result<Standbys> {
        let mut standbys = Vec::with_capacity(urls.len());
        for url in urls {
            let mut config: postgres::Config =
                url.parse().map_err(|_| Error::Storage("a replica's PostgreSQL URL is not valid".into()))?;
            if let Some(options) = base.get_options() {
                config.options(options);
            }
            config.application_name("continuum-reader");
            let mut first = Manager::connect(&config)?;
            let row = first.query_one("SELECT pg_is_in_recovery()", &[]).map_err(storage("replica check"))?;
            let in_recovery: bool = row.try_get(0).map_err(storage("replica check"))?;
            if !in_recovery {
                return Err(Error::Storage(
                    "a --database-replica server is not a standby (pg_is_in_recovery() is false)".into(),
                ));
            }
            standbys.push(Standby { pool: crate::pool(config), replayed: AtomicU64::new(0) });
        }
        Ok(Standbys { standbys, ..Standbys::default() })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.standbys.is_empty()
    }

    /// Notes the primary's WAL position after a commit made on `conn` (only when there are
    /// standbys to keep up with).
    pub(crate) fn note_commit(&self, conn: &mut Connection) -> Result<()> {
        if self.standbys.is_empty() {
            return Ok(());
        }
        let row = conn.query_one(&format!("SELECT {LSN_NUMBER}"), &[]).map_err(storage("wal position"))?;
        let lsn: i64 = row.try_get(0).map_err(storage("wal position"))?;
        self.written.fetch_max(lsn as u64, Ordering::SeqCst);
        Ok(())
    }

    /// Runs `read` on a standby that has replayed this process's writes, else on `primary`.
    pub(crate) fn read<T>(
        &self,
        primary: &r2d2::Pool<Manager>,
        read: impl Fn(&mut Connection) -> Result<T>,
    ) -> Result<T> {
        if self.standbys.is_empty() {
            return read(&mut *pooled(primary)?);
        }
        let needed = self.written.load(Ordering::SeqCst);
        let first = self.next.fetch_add(1, Ordering::Relaxed);
        for i in 0..self.standbys.len() {
            let standby = &self.standbys[(first + i) % self.standbys.len()];
            let Ok(mut conn) = pooled(&standby.pool) else { continue };
            if standby.replayed.load(Ordering::SeqCst) < needed {
                let Ok(row) = conn.query_one(&format!("SELECT {REPLAYED_NUMBER}"), &[]) else { continue };
                let Ok(replayed) = row.try_get::<_, i64>(0) else { continue };
                standby.replayed.fetch_max(replayed as u64, Ordering::SeqCst);
                if (replayed as u64) < needed {
                    continue;
                }
            }
            if let Ok(answer) = read(&mut conn) {
                self.on_standby.fetch_add(1, Ordering::Relaxed);
                return Ok(answer);
            }
        }
        self.on_primary.fetch_add(1, Ordering::Relaxed);
        read(&mut *pooled(primary)?)
    }

    pub(crate) fn routing(&self) -> ReadRouting {
        ReadRouting {
            standby: self.on_standby.load(Ordering::Relaxed),
            primary: self.on_primary.load(Ordering::Relaxed),
        }
    }
}
