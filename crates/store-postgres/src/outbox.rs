//! The interface outbox ([`store::Outbox`]) and partner list in `interface_outbox` and
//! `interface_partner`. Rows are queued inside the write's own transaction ([`enqueue`], called
//! from a write hook), so a committed change is always announced; the sender's bookkeeping is
//! one autocommitted statement each. A delivery mark lost in a crash only means the message is
//! sent once more (at-least-once).

use crate::queries::{Value, params};
use crate::{Connection, PostgresBackend, storage};
use postgres::Row;
use store::Result;
use store::outbox::{NewOutbound, OutboundMessage, OutboundQuery, OutboundStatus, Outbox, Partner};
use time::OffsetDateTime;

/// Default number of messages a listing returns.
const DEFAULT_LIMIT: usize = 100;
/// Most messages a listing returns.
const MAX_LIMIT: usize = 10_000;

/// Partners that take `event` (inside the write's transaction).
pub(crate) fn partners_for(conn: &mut Connection, event: &str) -> Result<Vec<String>> {
    let pattern = format!(",{event},");
    let rows = conn
        .query("SELECT name FROM interface_partner WHERE strpos(events, $1) > 0 ORDER BY name", &[&pattern])
        .map_err(storage("outbound partners"))?;
    rows.iter().map(|r| r.try_get(0)).collect::<std::result::Result<_, _>>().map_err(storage("outbound partners"))
}

/// Queues `message` for each of its partners (inside the write's transaction), in the shard of
/// the patient it announces (`''` for none).
pub(crate) fn enqueue(conn: &mut Connection, message: &NewOutbound<'_>) -> Result<()> {
    let now = search::micros(OffsetDateTime::now_utc());
    let partners: Vec<&str> = message.partners.iter().map(String::as_str).collect();
    conn.execute(
        "INSERT INTO interface_outbox (shard_key, partner, created_at, event, message_type, control_id, resource, \
         patient, status, next_attempt_at, updated_at, payload) \
         SELECT coalesce($7, ''), p, $2, $3, $4, $5, $6, $7, 'pending', $2, $2, $8 FROM unnest($1::text[]) WITH ORDINALITY AS t(p, n) \
         ORDER BY n",
        &[
            &partners,
            &now,
            &message.event,
            &message.message_type,
            &message.control_id,
            &message.resource,
            &message.patient,
            &message.payload,
        ],
    )
    .map(drop)
    .map_err(storage("queue outbound"))
}

/// The outbox of a PostgreSQL store.
pub struct PostgresOutbox {
    pool: r2d2::Pool<crate::conn::Manager>,
}

impl PostgresBackend {
    /// The outbox kept in this store's database.
    pub fn outbox(&self) -> PostgresOutbox {
        PostgresOutbox { pool: self.pool.clone() }
    }
}

impl PostgresOutbox {
    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        f(&mut *crate::pooled(&self.pool)?)
    }
}

const COLUMNS: &str = "id, partner, created_at, event, message_type, control_id, resource, patient, status, \
                       attempts, next_attempt_at, last_error";

fn row_to_message(row: &Row, with_payload: bool) -> std::result::Result<OutboundMessage, postgres::Error> {
    let status: String = row.try_get(8)?;
    let attempts: i32 = row.try_get(9)?;
    Ok(OutboundMessage {
        id: row.try_get(0)?,
        partner: row.try_get(1)?,
        created_at: search::from_micros(row.try_get(2)?).unwrap_or(OffsetDateTime::UNIX_EPOCH),
        event: row.try_get(3)?,
        message_type: row.try_get(4)?,
        control_id: row.try_get(5)?,
        resource: row.try_get(6)?,
        patient: row.try_get(7)?,
        status: OutboundStatus::parse(&status).unwrap_or(OutboundStatus::Pending),
        attempts: u32::try_from(attempts).unwrap_or(0),
        next_attempt_at: search::from_micros(row.try_get(10)?).unwrap_or(OffsetDateTime::UNIX_EPOCH),
        last_error: row.try_get(11)?,
        payload: if with_payload { row.try_get(12)? } else { String::new() },
    })
}

fn rows_to_messages(rows: &[Row], with_payload: bool, operation: &'static str) -> Result<Vec<OutboundMessage>> {
    rows.iter()
        .map(|r| row_to_message(r, with_payload))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(storage(operation))
}

impl Outbox for PostgresOutbox {
    fn put_partner(&self, partner: &Partner) -> Result<()> {
        let events = format!(",{},", partner.events.join(","));
        let now = search::micros(OffsetDateTime::now_utc());
        self.with(|conn| {
            conn.execute(
                "INSERT INTO interface_partner (name, address, events, created_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (name) DO UPDATE SET address = excluded.address, events = excluded.events",
                &[&partner.name, &partner.address, &events, &now],
            )
            .map(drop)
            .map_err(storage("add partner"))
        })
    }

    fn remove_partner(&self, name: &str) -> Result<bool> {
        self.with(|conn| {
            conn.batch("BEGIN").map_err(storage("remove partner"))?;
            let removed = conn
                .execute("DELETE FROM interface_partner WHERE name = $1", &[&name])
                .and_then(|removed| {
                    conn.execute("DELETE FROM interface_outbox WHERE partner = $1 AND status = 'pending'", &[&name])?;
                    Ok(removed)
                })
                .and_then(|removed| conn.batch("COMMIT").map(|()| removed));
            match removed {
                Ok(removed) => Ok(removed > 0),
                Err(e) => {
                    let _ = conn.batch("ROLLBACK");
                    Err(storage("remove partner")(e))
                }
            }
        })
    }

    fn count_by_status(&self) -> Result<Vec<(OutboundStatus, u64)>> {
        self.with(|conn| crate::messages::count_by_status(conn, "interface_outbox", OutboundStatus::parse))
    }

    fn partners(&self) -> Result<Vec<Partner>> {
        self.with(|conn| {
            let rows = conn
                .query("SELECT name, address, events FROM interface_partner ORDER BY name", &[])
                .map_err(storage("list partners"))?;
            rows.iter()
                .map(|r| {
                    let events: String = r.try_get(2)?;
                    Ok(Partner {
                        name: r.try_get(0)?,
                        address: r.try_get(1)?,
                        events: events.split(',').filter(|e| !e.is_empty()).map(str::to_string).collect(),
                    })
                })
                .collect::<std::result::Result<Vec<_>, postgres::Error>>()
                .map_err(storage("list partners"))
        })
    }

    fn due(&self, now: OffsetDateTime, limit: usize) -> Result<Vec<OutboundMessage>> {
        let sql = format!(
            "SELECT {COLUMNS}, payload FROM interface_outbox AS o WHERE status = 'pending' AND next_attempt_at <= $1 \
             AND NOT EXISTS (SELECT 1 FROM interface_outbox AS e WHERE e.status = 'pending' \
             AND e.partner = o.partner AND e.id < o.id AND e.next_attempt_at > $1) ORDER BY id LIMIT $2"
        );
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with(|conn| {
            let rows = conn.query(&sql, &[&search::micros(now), &limit]).map_err(storage("due outbound"))?;
            rows_to_messages(&rows, true, "due outbound")
        })
    }

    fn delivered(&self, id: i64) -> Result<()> {
        let now = search::micros(OffsetDateTime::now_utc());
        self.with(|conn| {
            conn.execute(
                "UPDATE interface_outbox SET status = 'delivered', attempts = attempts + 1, last_error = NULL, \
                 updated_at = $2 WHERE id = $1",
                &[&id, &now],
            )
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
            conn.execute(
                "UPDATE interface_outbox SET status = $2, attempts = attempts + 1, last_error = $3, \
                 next_attempt_at = $4, updated_at = $5 WHERE id = $1",
                &[&id, &status, &error, &next, &now],
            )
            .map(drop)
            .map_err(storage("outbound failed"))
        })
    }

    fn list(&self, query: &OutboundQuery) -> Result<Vec<OutboundMessage>> {
        let mut conditions: Vec<String> = Vec::new();
        let mut values: Vec<Value> = Vec::new();
        if !query.statuses.is_empty() {
            let list: Vec<String> = query.statuses.iter().map(|s| s.as_str().to_string()).collect();
            values.push(Box::new(list));
            conditions.push(format!("status = ANY(${}::text[])", values.len()));
        }
        if let Some(partner) = &query.partner {
            values.push(Box::new(partner.clone()));
            conditions.push(format!("partner = ${}", values.len()));
        }
        let limit = if query.limit == 0 { DEFAULT_LIMIT } else { query.limit.min(MAX_LIMIT) };
        let filter = if conditions.is_empty() { String::new() } else { format!("WHERE {}", conditions.join(" AND ")) };
        let sql = format!("SELECT {COLUMNS} FROM interface_outbox {filter} ORDER BY id DESC LIMIT {limit}");
        self.with(|conn| {
            let rows = conn.query(&sql, &params(&values)).map_err(storage("list outbound"))?;
            rows_to_messages(&rows, false, "list outbound")
        })
    }
}
