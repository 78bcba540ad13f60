//! The audit trail in SQLite: `audit_event` rows chained by hash, `audit_chain` the head
//! (see `store::audit`). Appends run on the writer thread, inside the unit of work of the
//! write they describe or in one of their own, so the single writer orders the chain.

use crate::{SqliteBackend, storage};
use rusqlite::{Connection, Row, params};
use store::audit::{AuditEntry, AuditKey, AuditLog, AuditQuery, NewAuditEntry, chain_hash, recorded_at};
use store::{Backend, Result, Work};

/// Appends `entries` after the head, inside the caller's transaction, keyed with `key` when
/// given.
pub(crate) fn append(conn: &Connection, entries: &[NewAuditEntry], key: Option<&AuditKey>) -> Result<()> {
    let (mut sequence, mut previous): (i64, String) = conn
        .prepare_cached("SELECT sequence, hash FROM audit_chain WHERE id = 1")
        .and_then(|mut s| s.query_row([], |r| Ok((r.get(0)?, r.get(1)?))))
        .map_err(storage("audit head"))?;
    let mut insert = conn
        .prepare_cached(
            "INSERT INTO audit_event (sequence, recorded, patient, agent, action, outcome, event, previous_hash, hash)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )
        .map_err(storage("audit append"))?;
    for entry in entries {
        sequence += 1;
        let hash = chain_hash(key, &previous, sequence, entry);
        insert
            .execute(params![
                sequence,
                search::micros(entry.recorded),
                entry.patient,
                entry.agent,
                entry.action,
                entry.outcome,
                entry.event,
                previous,
                hash
            ])
            .map_err(storage("audit append"))?;
        previous = hash;
    }
    conn.prepare_cached("UPDATE audit_chain SET sequence = ?1, hash = ?2 WHERE id = 1")
        .and_then(|mut s| s.execute(params![sequence, previous]))
        .map_err(storage("audit head"))?;
    Ok(())
}

const COLUMNS: &str = "sequence, recorded, patient, agent, action, outcome, event, previous_hash, hash";

fn row_to_entry(row: &Row<'_>) -> rusqlite::Result<(i64, i64, NewAuditEntryParts)> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        NewAuditEntryParts {
            patient: row.get(2)?,
            agent: row.get(3)?,
            action: row.get(4)?,
            outcome: row.get(5)?,
            event: row.get(6)?,
            previous_hash: row.get(7)?,
            hash: row.get(8)?,
        },
    ))
}

struct NewAuditEntryParts {
    patient: Option<String>,
    agent: String,
    action: String,
    outcome: String,
    event: String,
    previous_hash: String,
    hash: String,
}

fn entry((sequence, recorded, p): (i64, i64, NewAuditEntryParts)) -> Result<AuditEntry> {
    Ok(AuditEntry {
        sequence,
        entry: NewAuditEntry {
            recorded: recorded_at(recorded)?,
            patient: p.patient,
            agent: p.agent,
            action: p.action,
            outcome: p.outcome,
            event: p.event,
        },
        previous_hash: p.previous_hash,
        hash: p.hash,
    })
}

impl AuditLog for SqliteBackend {
    fn append(&self, entries: &[NewAuditEntry], key: Option<&AuditKey>) -> Result<()> {
        let entries = entries.to_vec();
        let key = key.cloned();
        let work: Work = Box::new(move |tx| tx.append_audit(&entries, key.as_ref()));
        self.execute(work)
    }

    fn search(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>> {
        let conn = self.reader()?;
        let mut sql = format!("SELECT {COLUMNS} FROM audit_event WHERE 1 = 1");
        let mut values: Vec<rusqlite::types::Value> = Vec::new();
        if let Some(patient) = &query.patient {
            values.push(patient.clone().into());
            sql.push_str(&format!(" AND patient = ?{}", values.len()));
        }
        if let Some(agent) = &query.agent {
            values.push(agent.clone().into());
            sql.push_str(&format!(" AND agent = ?{}", values.len()));
        }
        if let Some(since) = query.since {
            values.push(search::micros(since).into());
            sql.push_str(&format!(" AND recorded >= ?{}", values.len()));
        }
        if let Some(until) = query.until {
            values.push(search::micros(until).into());
            sql.push_str(&format!(" AND recorded < ?{}", values.len()));
        }
        if let Some(before) = query.before_sequence {
            values.push(before.into());
            sql.push_str(&format!(" AND sequence < ?{}", values.len()));
        }
        values.push((query.count as i64).into());
        sql.push_str(&format!(" ORDER BY sequence DESC LIMIT ?{}", values.len()));
        let mut statement = conn.prepare(&sql).map_err(storage("audit search"))?;
        let rows = statement
            .query_map(rusqlite::params_from_iter(values), row_to_entry)
            .map_err(storage("audit search"))?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(storage("audit search"))?;
        rows.into_iter().map(entry).collect()
    }

    fn entries_after(&self, after: i64, count: usize) -> Result<Vec<AuditEntry>> {
        let conn = self.reader()?;
        let mut statement = conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM audit_event WHERE sequence > ?1 ORDER BY sequence LIMIT ?2"
            ))
            .map_err(storage("audit read"))?;
        let rows = statement
            .query_map(params![after, count as i64], row_to_entry)
            .map_err(storage("audit read"))?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(storage("audit read"))?;
        rows.into_iter().map(entry).collect()
    }

    fn head(&self) -> Result<Option<(i64, String)>> {
        let conn = self.reader()?;
        let (sequence, hash): (i64, String) = conn
            .query_row("SELECT sequence, hash FROM audit_chain WHERE id = 1", [], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(storage("audit head"))?;
        Ok((sequence > 0).then_some((sequence, hash)))
    }
}
