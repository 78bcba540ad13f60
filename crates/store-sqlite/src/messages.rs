//! The interface message log ([`store::MessageLog`]) in the `interface_message` table.
//!
//! It has its own write connection beside the writer thread's: a log row is one small
//! statement, and routing it through the group-commit queue would make every message wait for
//! the resource writes of others. The connection runs with `synchronous=NORMAL` like the
//! writer: a log row is appended to the same WAL before the message's effects are, so the
//! writer's fsync that makes the effects durable (and lets the ACK go out) makes the row
//! durable too. A status change written after the effects may be lost in a crash; the
//! interface's recovery finds such rows still `received` and settles them.

use crate::{BUSY_TIMEOUT, SqliteBackend, storage};
use rusqlite::{Connection, OptionalExtension, Row, params};
use std::path::Path;
use std::sync::Mutex;
use store::messages::{
    InboundPartner, MessageLog, MessageOutcome, MessageQuery, MessageStatus, NewMessage, StoredMessage,
};
use store::{Error, Result};
use time::OffsetDateTime;

/// Default number of messages a listing returns.
const DEFAULT_LIMIT: usize = 100;
/// Most messages a listing returns.
const MAX_LIMIT: usize = 10_000;

/// The message log of a SQLite store.
pub struct SqliteMessageLog {
    conn: Mutex<Connection>,
}

impl SqliteBackend {
    /// The message log kept in this store's database.
    pub fn message_log(&self) -> Result<SqliteMessageLog> {
        SqliteMessageLog::open(self.path())
    }
}

impl SqliteMessageLog {
    /// Opens the log in the database file at `path`, whose schema is already migrated (open a
    /// [`SqliteBackend`] first).
    pub fn open(path: &Path) -> Result<SqliteMessageLog> {
        let conn = Connection::open(path).map_err(storage("open message log"))?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(storage("open message log"))?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(storage("open message log"))?;
        conn.set_prepared_statement_cache_capacity(16);
        Ok(SqliteMessageLog { conn: Mutex::new(conn) })
    }

    fn with<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&conn)
    }
}

const COLUMNS: &str = "id, received_at, updated_at, sender, control_id, message_type, status, attempts, \
                       ack_code, error, patient, resources, duplicate_of, partner";

fn row_to_message(row: &Row<'_>, with_raw: bool) -> rusqlite::Result<StoredMessage> {
    let status: String = row.get(6)?;
    let resources: Option<String> = row.get(11)?;
    let resources = resources.and_then(|r| serde_json::from_str::<Vec<String>>(&r).ok()).unwrap_or_default();
    Ok(StoredMessage {
        id: row.get(0)?,
        received_at: search::from_micros(row.get(1)?).unwrap_or(OffsetDateTime::UNIX_EPOCH),
        updated_at: search::from_micros(row.get(2)?).unwrap_or(OffsetDateTime::UNIX_EPOCH),
        sender: row.get(3)?,
        control_id: row.get(4)?,
        message_type: row.get(5)?,
        status: MessageStatus::parse(&status).unwrap_or(MessageStatus::Received),
        attempts: row.get(7)?,
        outcome: MessageOutcome {
            ack_code: row.get::<_, Option<String>>(8)?.unwrap_or_default(),
            error: row.get(9)?,
            patient: row.get(10)?,
            resources,
            duplicate_of: row.get(12)?,
        },
        partner: row.get(13)?,
        raw: if with_raw { row.get(14)? } else { Vec::new() },
    })
}

impl MessageLog for SqliteMessageLog {
    fn receive(&self, message: &NewMessage<'_>) -> Result<i64> {
        let now = search::micros(OffsetDateTime::now_utc());
        self.with(|conn| {
            let mut stmt = conn
                .prepare_cached(
                    "INSERT INTO interface_message (received_at, updated_at, sender, control_id, message_type, \
                     status, raw, partner) VALUES (?1, ?1, ?2, ?3, ?4, 'received', ?5, ?6)",
                )
                .map_err(storage("log message"))?;
            stmt.execute(params![
                now,
                message.sender,
                message.control_id,
                message.message_type,
                message.raw,
                message.partner
            ])
            .map_err(storage("log message"))?;
            Ok(conn.last_insert_rowid())
        })
    }

    fn find_processed(&self, partner: &str, sender: &str, control_id: &str, except: i64) -> Result<Option<i64>> {
        self.with(|conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT id FROM interface_message WHERE partner = ?1 AND sender = ?2 AND control_id = ?3 \
                     AND status = 'processed' AND id <> ?4 ORDER BY id LIMIT 1",
                )
                .map_err(storage("find message"))?;
            stmt.query_row(params![partner, sender, control_id, except], |r| r.get(0))
                .optional()
                .map_err(storage("find message"))
        })
    }

    fn finish(&self, id: i64, status: MessageStatus, outcome: &MessageOutcome) -> Result<()> {
        let now = search::micros(OffsetDateTime::now_utc());
        let resources = serde_json::to_string(&outcome.resources).map_err(|_| Error::Storage("log outcome".into()))?;
        self.with(|conn| {
            let mut stmt = conn
                .prepare_cached(
                    "UPDATE interface_message SET status = ?2, updated_at = ?3, attempts = attempts + 1, \
                     ack_code = ?4, error = ?5, patient = coalesce(?6, patient), resources = ?7, duplicate_of = ?8 \
                     WHERE id = ?1",
                )
                .map_err(storage("update message"))?;
            let changed = stmt
                .execute(params![
                    id,
                    status.as_str(),
                    now,
                    outcome.ack_code,
                    outcome.error,
                    outcome.patient,
                    resources,
                    outcome.duplicate_of
                ])
                .map_err(storage("update message"))?;
            if changed == 0 {
                return Err(Error::NotFound { resource_type: "message".into(), id: id.to_string() });
            }
            Ok(())
        })
    }

    fn count_by_status(&self) -> Result<Vec<(MessageStatus, u64)>> {
        self.with(|conn| count_by_status(conn, "interface_message", MessageStatus::parse))
    }

    fn put_inbound_partner(&self, partner: &InboundPartner) -> Result<()> {
        let addresses = serde_json::to_string(&partner.addresses).map_err(|_| Error::Storage("add partner".into()))?;
        let events =
            serde_json::to_string(&partner.allowed_events).map_err(|_| Error::Storage("add partner".into()))?;
        let now = search::micros(OffsetDateTime::now_utc());
        self.with(|conn| {
            conn.execute(
                "INSERT INTO interface_inbound_partner (name, addresses, allowed_events, created_at) \
                 VALUES (?1, ?2, ?3, ?4) ON CONFLICT (name) DO UPDATE SET addresses = excluded.addresses, \
                 allowed_events = excluded.allowed_events",
                params![partner.name, addresses, events, now],
            )
            .map(drop)
            .map_err(storage("add inbound partner"))
        })
    }

    fn inbound_partners(&self) -> Result<Vec<InboundPartner>> {
        self.with(|conn| {
            let mut stmt = conn
                .prepare_cached("SELECT name, addresses, allowed_events FROM interface_inbound_partner ORDER BY name")
                .map_err(storage("list inbound partners"))?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)))
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(storage("list inbound partners"))?;
            Ok(rows.into_iter().map(|(name, addresses, events)| inbound_partner(name, &addresses, &events)).collect())
        })
    }

    fn remove_inbound_partner(&self, name: &str) -> Result<bool> {
        self.with(|conn| {
            let removed = conn
                .execute("DELETE FROM interface_inbound_partner WHERE name = ?1", [name])
                .map_err(storage("remove inbound partner"))?;
            Ok(removed > 0)
        })
    }

    fn get(&self, id: i64) -> Result<Option<StoredMessage>> {
        self.with(|conn| {
            let sql = format!("SELECT {COLUMNS}, raw FROM interface_message WHERE id = ?1");
            let mut stmt = conn.prepare_cached(&sql).map_err(storage("read message"))?;
            stmt.query_row([id], |r| row_to_message(r, true)).optional().map_err(storage("read message"))
        })
    }

    fn list(&self, query: &MessageQuery) -> Result<Vec<StoredMessage>> {
        let mut conditions: Vec<String> = Vec::new();
        let mut values: Vec<rusqlite::types::Value> = Vec::new();
        let mut bind = |value: rusqlite::types::Value| {
            values.push(value);
            format!("?{}", values.len())
        };
        if !query.statuses.is_empty() {
            let list: Vec<String> = query.statuses.iter().map(|s| bind(s.as_str().to_string().into())).collect();
            conditions.push(format!("status IN ({})", list.join(", ")));
        }
        if let Some(patient) = &query.patient {
            conditions.push(format!("patient = {}", bind(patient.clone().into())));
        }
        if let Some(kind) = &query.message_type {
            if kind.contains('^') {
                conditions.push(format!("message_type = {}", bind(kind.clone().into())));
            } else {
                let p = bind(kind.clone().into());
                conditions
                    .push(format!("(message_type = {p} OR substr(message_type, 1, length({p}) + 1) = {p} || '^')"));
            }
        }
        if let Some(since) = query.since {
            conditions.push(format!("received_at >= {}", bind(search::micros(since).into())));
        }
        if let Some(before) = query.before_id {
            conditions.push(format!("id < {}", bind(before.into())));
        }
        let limit = if query.limit == 0 { DEFAULT_LIMIT } else { query.limit.min(MAX_LIMIT) };
        let filter = if conditions.is_empty() { String::new() } else { format!("WHERE {}", conditions.join(" AND ")) };
        let raw = if query.with_raw { ", raw" } else { "" };
        let sql = format!("SELECT {COLUMNS}{raw} FROM interface_message {filter} ORDER BY id DESC LIMIT {limit}");
        self.with(|conn| {
            let mut stmt = conn.prepare(&sql).map_err(storage("list messages"))?;
            let rows = stmt
                .query_map(rusqlite::params_from_iter(values.iter()), |r| row_to_message(r, query.with_raw))
                .map_err(storage("list messages"))?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(storage("list messages"))
        })
    }
}

/// An inbound partner from its stored columns (JSON arrays; unreadable ones are empty, which
/// allows nothing).
fn inbound_partner(name: String, addresses: &str, events: &str) -> InboundPartner {
    let list = |text: &str| serde_json::from_str::<Vec<String>>(text).unwrap_or_default();
    InboundPartner { name, addresses: list(addresses), allowed_events: list(events) }
}

/// Rows of `table` (the message log or the outbox) per `status`, as `parse` reads the status.
pub(crate) fn count_by_status<S>(
    conn: &Connection,
    table: &str,
    parse: impl Fn(&str) -> Option<S>,
) -> Result<Vec<(S, u64)>> {
    let mut stmt = conn
        .prepare_cached(&format!("SELECT status, count(*) FROM {table} GROUP BY status"))
        .map_err(storage("count by status"))?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
        .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
        .map_err(storage("count by status"))?;
    Ok(rows.into_iter().filter_map(|(s, n)| Some((parse(&s)?, n.unsigned_abs()))).collect())
}
