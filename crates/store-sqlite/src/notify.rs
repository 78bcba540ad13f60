//! The notification outbox ([`store::Notifications`]) in `notification`. Rows are queued by the
//! writer's transaction ([`enqueue`], called from a write hook), numbered within their channel
//! there: the single writer makes `MAX(number) + 1` race-free. The senders' bookkeeping runs on
//! this module's own connection, like the HL7 outbox's.

use crate::{BUSY_TIMEOUT, SqliteBackend, storage};
use rusqlite::{Connection, OptionalExtension, Row, params};
use std::path::Path;
use std::sync::Mutex;
use store::Result;
use store::notify::{NewNotification, Notification, Notifications};
use store::outbox::OutboundStatus;
use time::OffsetDateTime;

/// Queues `notification` (inside the writer's transaction); its number within its channel.
pub(crate) fn enqueue(conn: &Connection, notification: &NewNotification<'_>) -> Result<i64> {
    let now = search::micros(OffsetDateTime::now_utc());
    let number: i64 = conn
        .prepare_cached("SELECT COALESCE(MAX(number), 0) + 1 FROM notification WHERE channel = ?1")
        .and_then(|mut s| s.query_row([notification.channel], |r| r.get(0)))
        .map_err(storage("queue notification"))?;
    conn.prepare_cached(
        "INSERT INTO notification (channel, number, created_at, event, resource, patient, status, \
         next_attempt_at, updated_at, payload) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?3, ?3, ?7)",
    )
    .and_then(|mut s| {
        s.execute(params![
            notification.channel,
            number,
            now,
            notification.event,
            notification.resource,
            notification.patient,
            notification.payload
        ])
    })
    .map_err(storage("queue notification"))?;
    Ok(number)
}

/// The notification outbox of a SQLite store.
pub struct SqliteNotifications {
    conn: Mutex<Connection>,
}

impl SqliteBackend {
    /// The notification outbox kept in this store's database.
    pub fn notifications(&self) -> Result<SqliteNotifications> {
        SqliteNotifications::open(self.path())
    }
}

impl SqliteNotifications {
    /// Opens the outbox in the database file at `path`, whose schema is already migrated.
    pub fn open(path: &Path) -> Result<SqliteNotifications> {
        let conn = Connection::open(path).map_err(storage("open notifications"))?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(storage("open notifications"))?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(storage("open notifications"))?;
        conn.set_prepared_statement_cache_capacity(16);
        Ok(SqliteNotifications { conn: Mutex::new(conn) })
    }

    fn with<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&conn)
    }
}

const COLUMNS: &str = "id, channel, number, created_at, event, resource, patient, status, attempts, \
                       next_attempt_at, last_error, payload";

fn row_to_notification(row: &Row<'_>) -> rusqlite::Result<Notification> {
    let status: String = row.get(7)?;
    Ok(Notification {
        id: row.get(0)?,
        channel: row.get(1)?,
        number: row.get(2)?,
        created_at: search::from_micros(row.get(3)?).unwrap_or(OffsetDateTime::UNIX_EPOCH),
        event: row.get(4)?,
        resource: row.get(5)?,
        patient: row.get(6)?,
        status: OutboundStatus::parse(&status).unwrap_or(OutboundStatus::Pending),
        attempts: row.get(8)?,
        next_attempt_at: search::from_micros(row.get(9)?).unwrap_or(OffsetDateTime::UNIX_EPOCH),
        last_error: row.get(10)?,
        payload: row.get(11)?,
    })
}

fn limit_of(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

impl Notifications for SqliteNotifications {
    fn enqueue(&self, notification: &NewNotification<'_>) -> Result<i64> {
        self.with(|conn| {
            let tx = conn.unchecked_transaction().map_err(storage("queue notification"))?;
            let number = enqueue(&tx, notification)?;
            tx.commit().map_err(storage("queue notification"))?;
            Ok(number)
        })
    }

    fn due(&self, now: OffsetDateTime, channel_prefix: &str, limit: usize) -> Result<Vec<Notification>> {
        self.with(|conn| {
            let sql = format!(
                "SELECT {COLUMNS} FROM notification AS n WHERE status = 'pending' AND next_attempt_at <= ?1 \
                 AND substr(channel, 1, length(?2)) = ?2 \
                 AND NOT EXISTS (SELECT 1 FROM notification AS e WHERE e.status = 'pending' \
                 AND e.channel = n.channel AND e.id < n.id AND e.next_attempt_at > ?1) ORDER BY id LIMIT ?3"
            );
            let mut stmt = conn.prepare_cached(&sql).map_err(storage("due notifications"))?;
            let rows = stmt
                .query_map(params![search::micros(now), channel_prefix, limit_of(limit)], row_to_notification)
                .map_err(storage("due notifications"))?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(storage("due notifications"))
        })
    }

    fn delivered(&self, id: i64) -> Result<()> {
        let now = search::micros(OffsetDateTime::now_utc());
        self.with(|conn| {
            conn.prepare_cached(
                "UPDATE notification SET status = 'delivered', attempts = attempts + 1, last_error = NULL, \
                 updated_at = ?2 WHERE id = ?1",
            )
            .and_then(|mut s| s.execute(params![id, now]))
            .map(drop)
            .map_err(storage("notification delivered"))
        })
    }

    fn attempt_failed(&self, id: i64, error: &str, retry_at: Option<OffsetDateTime>) -> Result<()> {
        let now = search::micros(OffsetDateTime::now_utc());
        let (status, next) = match retry_at {
            Some(at) => ("pending", search::micros(at)),
            None => ("dead", now),
        };
        self.with(|conn| {
            conn.prepare_cached(
                "UPDATE notification SET status = ?2, attempts = attempts + 1, last_error = ?3, \
                 next_attempt_at = ?4, updated_at = ?5 WHERE id = ?1",
            )
            .and_then(|mut s| s.execute(params![id, status, error, next, now]))
            .map(drop)
            .map_err(storage("notification failed"))
        })
    }

    fn events(&self, channel: &str, from: i64, to: i64, limit: usize) -> Result<Vec<Notification>> {
        self.with(|conn| {
            let sql = format!(
                "SELECT {COLUMNS} FROM notification WHERE channel = ?1 AND number BETWEEN ?2 AND ?3 \
                 ORDER BY number LIMIT ?4"
            );
            let mut stmt = conn.prepare_cached(&sql).map_err(storage("notification events"))?;
            let rows = stmt
                .query_map(params![channel, from, to, limit_of(limit)], row_to_notification)
                .map_err(storage("notification events"))?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(storage("notification events"))
        })
    }

    fn latest_number(&self, channel: &str) -> Result<i64> {
        self.with(|conn| {
            conn.prepare_cached("SELECT MAX(number) FROM notification WHERE channel = ?1")
                .and_then(|mut s| s.query_row([channel], |r| r.get::<_, Option<i64>>(0)).optional())
                .map(|n| n.flatten().unwrap_or(0))
                .map_err(storage("latest notification"))
        })
    }

    fn retry_now(&self, channel: &str) -> Result<u64> {
        let now = search::micros(OffsetDateTime::now_utc());
        self.with(|conn| {
            conn.prepare_cached(
                "UPDATE notification SET next_attempt_at = ?2, updated_at = ?2 \
                 WHERE channel = ?1 AND status = 'pending'",
            )
            .and_then(|mut s| s.execute(params![channel, now]))
            .map(|n| n as u64)
            .map_err(storage("retry notifications"))
        })
    }

    fn drop_pending(&self, channel: &str) -> Result<u64> {
        self.with(|conn| {
            conn.prepare_cached(
                "UPDATE notification SET status = 'dead', last_error = 'dropped', updated_at = ?2 \
                 WHERE channel = ?1 AND status = 'pending'",
            )
            .and_then(|mut s| s.execute(params![channel, search::micros(OffsetDateTime::now_utc())]))
            .map(|n| n as u64)
            .map_err(storage("drop notifications"))
        })
    }

    fn count_by_status(&self, channel_prefix: &str) -> Result<Vec<(OutboundStatus, u64)>> {
        self.with(|conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT status, COUNT(*) FROM notification WHERE substr(channel, 1, length(?1)) = ?1 \
                     GROUP BY status",
                )
                .map_err(storage("count notifications"))?;
            let rows = stmt
                .query_map([channel_prefix], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
                .map_err(storage("count notifications"))?;
            let mut counts: Vec<(OutboundStatus, u64)> = OutboundStatus::ALL.iter().map(|s| (*s, 0)).collect();
            for row in rows {
                let (status, n) = row.map_err(storage("count notifications"))?;
                if let Some(slot) = counts.iter_mut().find(|(s, _)| Some(*s) == OutboundStatus::parse(&status)) {
                    slot.1 = n as u64;
                }
            }
            Ok(counts)
        })
    }
}
