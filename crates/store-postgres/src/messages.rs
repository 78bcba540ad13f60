//! The interface message log ([`store::MessageLog`]) in the `interface_message` table. Each call
//! is one statement on a pooled connection, committed on its own (autocommit, durable with
//! `synchronous_commit = on`): a message is logged before its effects are written, and the
//! interface's recovery settles rows left `received` by a crash.

use crate::queries::{Value, params};
use crate::{Connection, PostgresBackend, storage};
use postgres::Row;
use store::messages::{
    InboundPartner, MessageLog, MessageOutcome, MessageQuery, MessageStatus, NewMessage, StoredMessage,
};
use store::{Error, Result};
use time::OffsetDateTime;

/// Default number of messages a listing returns.
const DEFAULT_LIMIT: usize = 100;
/// Most messages a listing returns.
const MAX_LIMIT: usize = 10_000;

/// The message log of a PostgreSQL store.
pub struct PostgresMessageLog {
    pool: r2d2::Pool<crate::conn::Manager>,
}

impl PostgresBackend {
    /// The message log kept in this store's database.
    pub fn message_log(&self) -> PostgresMessageLog {
        PostgresMessageLog { pool: self.pool.clone() }
    }
}

impl PostgresMessageLog {
    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        f(&mut *crate::pooled(&self.pool)?)
    }
}

const COLUMNS: &str = "id, received_at, updated_at, sender, control_id, message_type, status, attempts, \
                       ack_code, error, patient, resources, duplicate_of, partner";

fn row_to_message(row: &Row, with_raw: bool) -> std::result::Result<StoredMessage, postgres::Error> {
    let status: String = row.try_get(6)?;
    let resources: Option<String> = row.try_get(11)?;
    let resources = resources.and_then(|r| serde_json::from_str::<Vec<String>>(&r).ok()).unwrap_or_default();
    let attempts: i32 = row.try_get(7)?;
    Ok(StoredMessage {
        id: row.try_get(0)?,
        received_at: search::from_micros(row.try_get(1)?).unwrap_or(OffsetDateTime::UNIX_EPOCH),
        updated_at: search::from_micros(row.try_get(2)?).unwrap_or(OffsetDateTime::UNIX_EPOCH),
        sender: row.try_get(3)?,
        control_id: row.try_get(4)?,
        message_type: row.try_get(5)?,
        status: MessageStatus::parse(&status).unwrap_or(MessageStatus::Received),
        attempts: u32::try_from(attempts).unwrap_or(0),
        outcome: MessageOutcome {
            ack_code: row.try_get::<_, Option<String>>(8)?.unwrap_or_default(),
            error: row.try_get(9)?,
            patient: row.try_get(10)?,
            resources,
            duplicate_of: row.try_get(12)?,
        },
        partner: row.try_get(13)?,
        raw: if with_raw { row.try_get(14)? } else { Vec::new() },
    })
}

impl MessageLog for PostgresMessageLog {
    fn receive(&self, message: &NewMessage<'_>) -> Result<i64> {
        let now = search::micros(OffsetDateTime::now_utc());
        self.with(|conn| {
            let row = conn
                .query_one(
                    "INSERT INTO interface_message (received_at, updated_at, sender, control_id, message_type, \
                     status, raw, partner) VALUES ($1, $1, $2, $3, $4, 'received', $5, $6) RETURNING id",
                    &[
                        &now,
                        &message.sender,
                        &message.control_id,
                        &message.message_type,
                        &message.raw,
                        &message.partner,
                    ],
                )
                .map_err(storage("log message"))?;
            row.try_get(0).map_err(storage("log message"))
        })
    }

    fn find_processed(&self, partner: &str, sender: &str, control_id: &str, except: i64) -> Result<Option<i64>> {
        self.with(|conn| {
            let row = conn
                .query_opt(
                    "SELECT id FROM interface_message WHERE partner = $1 AND sender = $2 AND control_id = $3 \
                     AND status = 'processed' AND id <> $4 ORDER BY id LIMIT 1",
                    &[&partner, &sender, &control_id, &except],
                )
                .map_err(storage("find message"))?;
            row.map(|r| r.try_get(0)).transpose().map_err(storage("find message"))
        })
    }

    fn finish(&self, id: i64, status: MessageStatus, outcome: &MessageOutcome) -> Result<()> {
        let now = search::micros(OffsetDateTime::now_utc());
        let resources = serde_json::to_string(&outcome.resources).map_err(|_| Error::Storage("log outcome".into()))?;
        self.with(|conn| {
            let changed = conn
                .execute(
                    "UPDATE interface_message SET status = $2, updated_at = $3, attempts = attempts + 1, \
                     ack_code = $4, error = $5, patient = coalesce($6, patient), resources = $7, duplicate_of = $8 \
                     WHERE id = $1",
                    &[
                        &id,
                        &status.as_str(),
                        &now,
                        &outcome.ack_code,
                        &outcome.error,
                        &outcome.patient,
                        &resources,
                        &outcome.duplicate_of,
                    ],
                )
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
                 VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO UPDATE SET addresses = excluded.addresses, \
                 allowed_events = excluded.allowed_events",
                &[&partner.name, &addresses, &events, &now],
            )
            .map(drop)
            .map_err(storage("add inbound partner"))
        })
    }

    fn inbound_partners(&self) -> Result<Vec<InboundPartner>> {
        self.with(|conn| {
            let rows = conn
                .query("SELECT name, addresses, allowed_events FROM interface_inbound_partner ORDER BY name", &[])
                .map_err(storage("list inbound partners"))?;
            let list = |text: &str| serde_json::from_str::<Vec<String>>(text).unwrap_or_default();
            let mut partners = Vec::with_capacity(rows.len());
            for row in rows {
                let name: String = row.try_get(0).map_err(storage("list inbound partners"))?;
                let addresses: String = row.try_get(1).map_err(storage("list inbound partners"))?;
                let events: String = row.try_get(2).map_err(storage("list inbound partners"))?;
                partners.push(InboundPartner { name, addresses: list(&addresses), allowed_events: list(&events) });
            }
            Ok(partners)
        })
    }

    fn remove_inbound_partner(&self, name: &str) -> Result<bool> {
        self.with(|conn| {
            let removed = conn
                .execute("DELETE FROM interface_inbound_partner WHERE name = $1", &[&name])
                .map_err(storage("remove inbound partner"))?;
            Ok(removed > 0)
        })
    }

    fn get(&self, id: i64) -> Result<Option<StoredMessage>> {
        self.with(|conn| {
            let sql = format!("SELECT {COLUMNS}, raw FROM interface_message WHERE id = $1");
            let row = conn.query_opt(&sql, &[&id]).map_err(storage("read message"))?;
            row.map(|r| row_to_message(&r, true)).transpose().map_err(storage("read message"))
        })
    }

    fn list(&self, query: &MessageQuery) -> Result<Vec<StoredMessage>> {
        let mut conditions: Vec<String> = Vec::new();
        let mut values: Vec<Value> = Vec::new();
        let mut bind = |value: Value| {
            values.push(value);
            format!("${}", values.len())
        };
        if !query.statuses.is_empty() {
            let list: Vec<String> = query.statuses.iter().map(|s| s.as_str().to_string()).collect();
            conditions.push(format!("status = ANY({}::text[])", bind(Box::new(list))));
        }
        if let Some(patient) = &query.patient {
            conditions.push(format!("patient = {}", bind(Box::new(patient.clone()))));
        }
        if let Some(kind) = &query.message_type {
            if kind.contains('^') {
                conditions.push(format!("message_type = {}", bind(Box::new(kind.clone()))));
            } else {
                let p = bind(Box::new(kind.clone()));
                let prefix = bind(Box::new(format!("{kind}^")));
                conditions.push(format!("(message_type = {p} OR left(message_type, length({prefix})) = {prefix})"));
            }
        }
        if let Some(since) = query.since {
            conditions.push(format!("received_at >= {}", bind(Box::new(search::micros(since)))));
        }
        if let Some(before) = query.before_id {
            conditions.push(format!("id < {}", bind(Box::new(before))));
        }
        let limit = if query.limit == 0 { DEFAULT_LIMIT } else { query.limit.min(MAX_LIMIT) };
        let filter = if conditions.is_empty() { String::new() } else { format!("WHERE {}", conditions.join(" AND ")) };
        let raw = if query.with_raw { ", raw" } else { "" };
        let sql = format!("SELECT {COLUMNS}{raw} FROM interface_message {filter} ORDER BY id DESC LIMIT {limit}");
        self.with(|conn| {
            let rows = conn.query(&sql, &params(&values)).map_err(storage("list messages"))?;
            rows.iter()
                .map(|r| row_to_message(r, query.with_raw))
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(storage("list messages"))
        })
    }
}

/// Rows of `table` (the message log or the outbox) per `status`, as `parse` reads the status.
pub(crate) fn count_by_status<S>(
    conn: &mut Connection,
    table: &str,
    parse: impl Fn(&str) -> Option<S>,
) -> Result<Vec<(S, u64)>> {
    let rows = conn
        .query(&format!("SELECT status, count(*) FROM {table} GROUP BY status"), &[])
        .map_err(storage("count by status"))?;
    let mut counts = Vec::new();
    for row in rows {
        let status: String = row.try_get(0).map_err(storage("count by status"))?;
        let n: i64 = row.try_get(1).map_err(storage("count by status"))?;
        if let Some(status) = parse(&status) {
            counts.push((status, n.unsigned_abs()));
        }
    }
    Ok(counts)
}
