//! The notification outbox ([`store::Notifications`]) in `notification`. Rows are queued inside
//! the write's own transaction ([`enqueue`]): an advisory lock per channel, held to the commit,
//! makes `MAX(number) + 1` race-free and numbers follow commit order. The senders' bookkeeping
//! is one autocommitted statement each.

use crate::queries::lock_key;
use crate::{Connection, PostgresBackend, storage};
use postgres::Row;
use store::Result;
use store::notify::{NewNotification, Notification, Notifications};
use store::outbox::OutboundStatus;
use time::OffsetDateTime;

/// Queues `notification` (inside the write's transaction); its number within its channel.
pub(crate) fn enqueue(conn: &mut Connection, notification: &NewNotification<'_>) -> Result<i64> {
    let now = search::micros(OffsetDateTime::now_utc());
    let key = lock_key("notification", notification.channel);
    conn.execute("SELECT pg_advisory_xact_lock($1)", &[&key]).map_err(storage("queue notification"))?;
    let row = conn
        .query_one(
            "INSERT INTO notification (channel, number, created_at, event, resource, patient, status, \
             next_attempt_at, updated_at, payload) \
             SELECT $1, COALESCE(MAX(number), 0) + 1, $2, $3, $4, $5, 'pending', $2, $2, $6 \
             FROM notification WHERE channel = $1 RETURNING number",
            &[
                &notification.channel,
                &now,
                &notification.event,
                &notification.resource,
                &notification.patient,
                &notification.payload,
            ],
        )
        .map_err(storage("queue notification"))?;
    row.try_get(0).map_err(storage("queue notification"))
}

/// The notification outbox of a PostgreSQL store.
pub struct PostgresNotifications {
    pool: r2d2::Pool<crate::conn::Manager>,
}

impl PostgresBackend {
    /// The notification outbox kept in this store's database.
    pub fn notifications(&self) -> PostgresNotifications {
        PostgresNotifications { pool: self.pool.clone() }
    }
}

impl PostgresNotifications {
    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        f(&mut *crate::pooled(&self.pool)?)
    }
}

const COLUMNS: &str = "id, channel, number, created_at, event, resource, patient, status, attempts, \
                       next_attempt_at, last_error, payload";

fn row_to_notification(row: &Row) -> std::result::Result<Notification, postgres::Error> {
    let status: String = row.try_get(7)?;
    let attempts: i32 = row.try_get(8)?;
    Ok(Notification {
        id: row.try_get(0)?,
        channel: row.try_get(1)?,
        number: row.try_get(2)?,
        created_at: search::from_micros(row.try_get(3)?).unwrap_or(OffsetDateTime::UNIX_EPOCH),
        event: row.try_get(4)?,
        resource: row.try_get(5)?,
        patient: row.try_get(6)?,
        status: OutboundStatus::parse(&status).unwrap_or(OutboundStatus::Pending),
        attempts: u32::try_from(attempts).unwrap_or(0),
        next_attempt_at: search::from_micros(row.try_get(9)?).unwrap_or(OffsetDateTime::UNIX_EPOCH),
        last_error: row.try_get(10)?,
        payload: row.try_get(11)?,
    })
}

fn rows_to_notifications(rows: &[Row], operation: &'static str) -> Result<Vec<Notification>> {
    rows.iter().map(row_to_notification).collect::<std::result::Result<Vec<_>, _>>().map_err(storage(operation))
}

fn limit_of(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// `prefix` as a `LIKE` pattern matching what starts with it.
fn prefix_pattern(prefix: &str) -> String {
    let mut pattern = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

impl Notifications for PostgresNotifications {
    fn enqueue(&self, notification: &NewNotification<'_>) -> Result<i64> {
        self.with(|conn| {
            conn.batch("BEGIN").map_err(storage("queue notification"))?;
            match enqueue(conn, notification) {
                Ok(number) => {
                    conn.batch("COMMIT").map_err(storage("queue notification"))?;
                    Ok(number)
                }
                Err(e) => {
                    let _ = conn.batch("ROLLBACK");
                    Err(e)
                }
            }
        })
    }

    fn due(&self, now: OffsetDateTime, channel_prefix: &str, limit: usize) -> Result<Vec<Notification>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM notification AS n WHERE status = 'pending' AND next_attempt_at <= $1 \
             AND channel LIKE $2 \
             AND NOT EXISTS (SELECT 1 FROM notification AS e WHERE e.status = 'pending' \
             AND e.channel = n.channel AND e.id < n.id AND e.next_attempt_at > $1) ORDER BY id LIMIT $3"
        );
        let pattern = prefix_pattern(channel_prefix);
        self.with(|conn| {
            let rows = conn
                .query(&sql, &[&search::micros(now), &pattern, &limit_of(limit)])
                .map_err(storage("due notifications"))?;
            rows_to_notifications(&rows, "due notifications")
        })
    }

    fn delivered(&self, id: i64) -> Result<()> {
        let now = search::micros(OffsetDateTime::now_utc());
        self.with(|conn| {
            conn.execute(
                "UPDATE notification SET status = 'delivered', attempts = attempts + 1, last_error = NULL, \
                 updated_at = $2 WHERE id = $1",
                &[&id, &now],
            )
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
            conn.execute(
                "UPDATE notification SET status = $2, attempts = attempts + 1, last_error = $3, \
                 next_attempt_at = $4, updated_at = $5 WHERE id = $1",
                &[&id, &status, &error, &next, &now],
            )
            .map(drop)
            .map_err(storage("notification failed"))
        })
    }

    fn events(&self, channel: &str, from: i64, to: i64, limit: usize) -> Result<Vec<Notification>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM notification WHERE channel = $1 AND number BETWEEN $2 AND $3 \
             ORDER BY number LIMIT $4"
        );
        self.with(|conn| {
            let rows =
                conn.query(&sql, &[&channel, &from, &to, &limit_of(limit)]).map_err(storage("notification events"))?;
            rows_to_notifications(&rows, "notification events")
        })
    }

    fn latest_number(&self, channel: &str) -> Result<i64> {
        self.with(|conn| {
            let row = conn
                .query_one("SELECT COALESCE(MAX(number), 0) FROM notification WHERE channel = $1", &[&channel])
                .map_err(storage("latest notification"))?;
            row.try_get(0).map_err(storage("latest notification"))
        })
    }

    fn retry_now(&self, channel: &str) -> Result<u64> {
        let now = search::micros(OffsetDateTime::now_utc());
        self.with(|conn| {
            conn.execute(
                "UPDATE notification SET next_attempt_at = $2, updated_at = $2 WHERE channel = $1 AND status = 'pending'",
                &[&channel, &now],
            )
            .map_err(storage("retry notifications"))
        })
    }

    fn drop_pending(&self, channel: &str) -> Result<u64> {
        self.with(|conn| {
            conn.execute(
                "UPDATE notification SET status = 'dead', last_error = 'dropped', updated_at = $2 \
                 WHERE channel = $1 AND status = 'pending'",
                &[&channel, &search::micros(OffsetDateTime::now_utc())],
            )
            .map_err(storage("drop notifications"))
        })
    }

    fn count_by_status(&self, channel_prefix: &str) -> Result<Vec<(OutboundStatus, u64)>> {
        let pattern = prefix_pattern(channel_prefix);
        self.with(|conn| {
            let rows = conn
                .query("SELECT status, COUNT(*) FROM notification WHERE channel LIKE $1 GROUP BY status", &[&pattern])
                .map_err(storage("count notifications"))?;
            let mut counts: Vec<(OutboundStatus, u64)> = OutboundStatus::ALL.iter().map(|s| (*s, 0)).collect();
            for row in rows {
                let status: String = row.try_get(0).map_err(storage("count notifications"))?;
                let n: i64 = row.try_get(1).map_err(storage("count notifications"))?;
                if let Some(slot) = counts.iter_mut().find(|(s, _)| Some(*s) == OutboundStatus::parse(&status)) {
                    slot.1 = u64::try_from(n).unwrap_or(0);
                }
            }
            Ok(counts)
        })
    }
}
