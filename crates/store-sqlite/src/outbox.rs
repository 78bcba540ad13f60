//! The interface outbox ([`store::Outbox`]) and partner list in `interface_outbox` and
//! `interface_partner`. Rows are queued by the writer's transaction ([`enqueue`], called from a
//! write hook); the sender's bookkeeping runs on this module's own connection, like the message
//! log's: one small statement each, not worth a place in the group-commit queue. A delivery
//! mark lost in a crash only means the message is sent once more (at-least-once).

use crate::{BUSY_TIMEOUT, SqliteBackend, storage};
use rusqlite::{Connection, Row, params};
use std::path::Path;
use std::sync::Mutex;
use store::Result;
use store::outbox::{NewOutbound, OutboundMessage, OutboundQuery, OutboundStatus, Outbox, Partner};
use time::OffsetDateTime;

/// Default number of messages a listing returns.
const DEFAULT_LIMIT: usize = 100;
/// Most messages a listing returns.
const MAX_LIMIT: usize = 10_000;

/// Partners that take `event` (inside the writer's transaction).
pub(crate) fn partners_for(conn: &Connection, event: &str) -> Result<Vec<String>> {
    let mut stmt = conn
        .prepare_cached("SELECT name FROM interface_partner WHERE instr(events, ',' || ?1 || ',') > 0 ORDER BY name")
        .map_err(storage("outbound partners"))?;
    let rows = stmt.query_map([event], |r| r.get(0)).map_err(storage("outbound partners"))?;
    rows.collect::<rusqlite::Result<Vec<String>>>().map_err(storage("outbound partners"))
}

/// Queues `message` for each of its partners (inside the writer's transaction).
pub(crate) fn enqueue(conn: &Connection, message: &NewOutbound<'_>) -> Result<()> {
    let now = search::micros(OffsetDateTime::now_utc());
    let mut stmt = conn
        .prepare_cached(
            "INSERT INTO interface_outbox (partner, created_at, event, message_type, control_id, resource, patient, \
             status, next_attempt_at, updated_at, payload) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending', ?2, ?2, ?8)",
        )
        .map_err(storage("queue outbound"))?;
    for partner in message.partners {
        stmt.execute(params![
            partner,
            now,
            message.event,
            message.message_type,
            message.control_id,
            message.resource,
            message.patient,
            message.payload
        ])
        .map_err(storage("queue outbound"))?;
    }
    Ok(())
}

/// The outbox of a SQLite store.
pub struct SqliteOutbox {
    conn: Mutex<Connection>,
}

impl SqliteBackend {
    /// The outbox kept in this store's database.
    pub fn outbox(&self) -> Result<SqliteOutbox> {
        SqliteOutbox::open(self.path())
    }
}

impl SqliteOutbox {
    /// Opens the outbox in the database file at `path`, whose schema is already migrated.
    pub fn open(path: &Path) -> Result<SqliteOutbox> {
        let conn = Connection::open(path).map_err(storage("open outbox"))?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(storage("open outbox"))?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(storage("open outbox"))?;
        conn.set_prepared_statement_cache_capacity(16);
        Ok(SqliteOutbox { conn: Mutex::new(conn) })
    }

    fn with<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&conn)
    }
}

const COLUMNS: &str = "id, partner, created_at, event, message_type, control_id, resource, patient, status, \
                       attempts, next_attempt_at, last_error";

fn row_to_message(row: &Row<'_>, with_payload: bool) -> rusqlite::Result<OutboundMessage> {
    let status: String = row.get(8)?;
    Ok(OutboundMessage {
        id: row.get(0)?,
        partner: row.get(1)?,
        created_at: search::from_micros(row.get(2)?).unwrap_or(OffsetDateTime::UNIX_EPOCH),
        event: row.get(3)?,
        message_type: row.get(4)?,
        control_id: row.get(5)?,
        resource: row.get(6)?,
        patient: row.get(7)?,
        status: OutboundStatus::parse(&status).unwrap_or(OutboundStatus::Pending),
        attempts: row.get(9)?,
        next_attempt_at: search::from_micros(row.get(10)?).unwrap_or(OffsetDateTime::UNIX_EPOCH),
        last_error: row.get(11)?,
        payload: if with_payload { row.get(12)? } else { String::new() },
    })
}

impl Outbox for SqliteOutbox {
    fn put_partner(&self, partner: &Partner) -> Result<()> {
        let events = format!(",{},", partner.events.join(","));
        let now = search::micros(OffsetDateTime::now_utc());
        self.with(|conn| {
            conn.execute(
                "INSERT INTO interface_partner (name, address, events, created_at) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (name) DO UPDATE SET address = excluded.address, events = excluded.events",
                params![partner.name, partner.address, events, now],
            )
            .map(drop)
            .map_err(storage("add partner"))
        })
    }

    fn remove_partner(&self, name: &str) -> Result<bool> {
        self.with(|conn| {
            let removed = conn
                .execute("DELETE FROM interface_partner WHERE name = ?1", [name])
                .map_err(storage("remove partner"))?;
            conn.execute("DELETE FROM interface_outbox WHERE partner = ?1 AND status = 'pending'", [name])
                .map_err(storage("remove partner"))?;
            Ok(removed > 0)
        })
    }

    fn count_by_status(&self) -> Result<Vec<(OutboundStatus, u64)>> {
        self.with(|conn| crate::messages::count_by_status(conn, "interface_outbox", OutboundStatus::parse))
    }

    fn partners(&self) -> Result<Vec<Partner>> {
        self.with(|conn| {
            let mut stmt = conn
                .prepare_cached("SELECT name, address, events FROM interface_partner ORDER BY name")
                .map_err(storage("list partners"))?;
            let rows = stmt
                .query_map([], |r| {
                    let events: String = r.get(2)?;
                    Ok(Partner {
                        name: r.get(0)?,
                        address: r.get(1)?,
                        events: events.split(',').filter(|e| !e.is_empty()).map(str::to_string).collect(),
                    })
                })
                .map_err(storage("list partners"))?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(storage("list partners"))
        })
    }

    fn due(&self, now: OffsetDateTime, limit: usize) -> Result<Vec<OutboundMessage>> {
        self.with(|conn| {
            let sql = format!(
                "SELECT {COLUMNS}, payload FROM interface_outbox AS o WHERE status = 'pending' AND next_attempt_at <= ?1 \
                 AND NOT EXISTS (SELECT 1 FROM interface_outbox AS e WHERE e.status = 'pending' \
                 AND e.partner = o.partner AND e.id < o.id AND e.next_attempt_at > ?1) ORDER BY id LIMIT ?2"
            );
            let mut stmt = conn.prepare_cached(&sql).map_err(storage("due outbound"))?;
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let rows = stmt
                .query_map(params![search::micros(now), limit], |r| row_to_message(r, true))
                .map_err(storage("due outbound"))?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(storage("due outbound"))
        })
    }

    fn delivered(&self, id: i64) -> Result<()> {
        let now = search::micros(OffsetDateTime::now_utc());
        self.with(|conn| {
            conn.prepare_cached(
                "UPDATE interface_outbox SET status = 'delivered', attempts = attempts + 1, last_error = NULL, \
                 updated_at = ?2 WHERE id = ?1",
            )
            .and_then(|mut s| s.execute(params![id, now]))
            .map(drop)
            .map_err(storage("outbound delivered"))
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
                "UPDATE interface_outbox SET status = ?2, attempts = attempts + 1, last_error = ?3, \
                 next_attempt_at = ?4, updated_at = ?5 WHERE id = ?1",
            )
            .and_then(|mut s| s.execute(params![id, status, error, next, now]))
            .map(drop)
            .map_err(storage("outbound failed"))
        })
    }

    fn list(&self, query: &OutboundQuery) -> Result<Vec<OutboundMessage>> {
        let mut conditions: Vec<String> = Vec::new();
        let mut values: Vec<rusqlite::types::Value> = Vec::new();
        if !query.statuses.is_empty() {
            let list: Vec<String> = query
                .statuses
                .iter()
                .map(|s| {
                    values.push(s.as_str().to_string().into());
                    format!("?{}", values.len())
                })
                .collect();
            conditions.push(format!("status IN ({})", list.join(", ")));
        }
        if let Some(partner) = &query.partner {
            values.push(partner.clone().into());
            conditions.push(format!("partner = ?{}", values.len()));
        }
        let limit = if query.limit == 0 { DEFAULT_LIMIT } else { query.limit.min(MAX_LIMIT) };
        let filter = if conditions.is_empty() { String::new() } else { format!("WHERE {}", conditions.join(" AND ")) };
        let sql = format!("SELECT {COLUMNS} FROM interface_outbox {filter} ORDER BY id DESC LIMIT {limit}");
        self.with(|conn| {
            let mut stmt = conn.prepare(&sql).map_err(storage("list outbound"))?;
            let rows = stmt
                .query_map(rusqlite::params_from_iter(values.iter()), |r| row_to_message(r, false))
                .map_err(storage("list outbound"))?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(storage("list outbound"))
        })
    }
}
