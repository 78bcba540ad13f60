//! The audit trail in PostgreSQL: `audit_event` rows chained by hash, `audit_chain` the head
//! (see `store::audit`). An append locks the head row (`UPDATE … RETURNING`) until its
//! transaction ends, which orders the chain; a write appends its entries last, so the head's
//! lock is the last one its transaction takes and is held only until its commit.
//!
//! `audit_event` is patient-owned (its `shard_key` is the patient concerned, `''` for none);
//! `audit_chain` is a one-row shared table.

use crate::{Connection, PostgresBackend, storage};
use store::audit::{AuditEntry, AuditKey, AuditLog, AuditQuery, NewAuditEntry, chain_hash, recorded_at};
use store::{Backend, Result, Work};

/// The audit tables (schema version 5), in the layout of the database.
pub(crate) fn create(conn: &mut Connection) -> Result<()> {
    let partitions = crate::layout::partitions(conn)?;
    let fail = storage("migration");
    let by = if partitions > 0 { " PARTITION BY HASH (shard_key)" } else { "" };
    let mut sql = format!(
        r#"CREATE TABLE audit_event (
            shard_key     TEXT COLLATE "C" NOT NULL,
            sequence      BIGINT NOT NULL,
            recorded      BIGINT NOT NULL,
            patient       TEXT COLLATE "C",
            agent         TEXT COLLATE "C" NOT NULL,
            action        TEXT NOT NULL,
            outcome       TEXT NOT NULL,
            event         TEXT NOT NULL,
            previous_hash TEXT NOT NULL,
            hash          TEXT NOT NULL,
            PRIMARY KEY (shard_key, sequence)
        ){by};
        "#
    );
    for i in 0..partitions {
        sql.push_str(&format!(
            "CREATE TABLE audit_event_p{i} PARTITION OF audit_event FOR VALUES WITH (MODULUS {partitions}, REMAINDER {i});\n"
        ));
    }
    sql.push_str(
        "CREATE INDEX audit_event_sequence ON audit_event (sequence);
         CREATE INDEX audit_event_patient ON audit_event (patient, sequence) WHERE patient IS NOT NULL;
         CREATE INDEX audit_event_agent ON audit_event (agent, sequence);
         CREATE INDEX audit_event_recorded ON audit_event (recorded);
         CREATE TABLE audit_chain (
             id       INTEGER PRIMARY KEY CHECK (id = 1),
             sequence BIGINT NOT NULL,
             hash     TEXT NOT NULL
         );
         INSERT INTO audit_chain VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');",
    );
    conn.batch(&sql).map_err(&fail)
}

/// Appends `entries` after the head, inside the caller's transaction, keyed with `key` when
/// given.
pub(crate) fn append(conn: &mut Connection, entries: &[NewAuditEntry], key: Option<&AuditKey>) -> Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    let count = entries.len() as i64;
    let row = conn
        .query_one(
            "UPDATE audit_chain SET sequence = sequence + $1 WHERE id = 1 RETURNING sequence - $1, hash",
            &[&count],
        )
        .map_err(storage("audit head"))?;
    let mut sequence: i64 = row.get(0);
    let mut previous: String = row.get(1);
    let insert = "INSERT INTO audit_event (shard_key, sequence, recorded, patient, agent, action, outcome, event, previous_hash, hash)
                  VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";
    for entry in entries {
        sequence += 1;
        let hash = chain_hash(key, &previous, sequence, entry);
        let key = entry.patient.clone().unwrap_or_default();
        conn.execute(
            insert,
            &[
                &key,
                &sequence,
                &search::micros(entry.recorded),
                &entry.patient,
                &entry.agent,
                &entry.action,
                &entry.outcome,
                &entry.event,
                &previous,
                &hash,
            ],
        )
        .map_err(storage("audit append"))?;
        previous = hash;
    }
    conn.execute("UPDATE audit_chain SET hash = $1 WHERE id = 1", &[&previous]).map_err(storage("audit head"))?;
    Ok(())
}

const COLUMNS: &str = "sequence, recorded, patient, agent, action, outcome, event, previous_hash, hash";

fn entry(row: &postgres::Row) -> Result<AuditEntry> {
    Ok(AuditEntry {
        sequence: row.get(0),
        entry: NewAuditEntry {
            recorded: recorded_at(row.get(1))?,
            patient: row.get(2),
            agent: row.get(3),
            action: row.get(4),
            outcome: row.get(5),
            event: row.get(6),
        },
        previous_hash: row.get(7),
        hash: row.get(8),
    })
}

impl AuditLog for PostgresBackend {
    fn append(&self, entries: &[NewAuditEntry], key: Option<&AuditKey>) -> Result<()> {
        let entries = entries.to_vec();
        let key = key.cloned();
        let work: Work = Box::new(move |tx| tx.append_audit(&entries, key.as_ref()));
        self.execute(work)
    }

    fn search(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>> {
        // The trail is read from the primary: an administrator's view must be current.
        let mut conn = self.conn()?;
        let mut sql = format!("SELECT {COLUMNS} FROM audit_event WHERE TRUE");
        let mut values: Vec<Box<dyn postgres::types::ToSql + Sync>> = Vec::new();
        if let Some(patient) = &query.patient {
            values.push(Box::new(patient.clone()));
            sql.push_str(&format!(" AND shard_key = ${n} AND patient = ${n}", n = values.len()));
        }
        if let Some(agent) = &query.agent {
            values.push(Box::new(agent.clone()));
            sql.push_str(&format!(" AND agent = ${}", values.len()));
        }
        if let Some(since) = query.since {
            values.push(Box::new(search::micros(since)));
            sql.push_str(&format!(" AND recorded >= ${}", values.len()));
        }
        if let Some(until) = query.until {
            values.push(Box::new(search::micros(until)));
            sql.push_str(&format!(" AND recorded < ${}", values.len()));
        }
        if let Some(before) = query.before_sequence {
            values.push(Box::new(before));
            sql.push_str(&format!(" AND sequence < ${}", values.len()));
        }
        values.push(Box::new(query.count as i64));
        sql.push_str(&format!(" ORDER BY sequence DESC LIMIT ${}", values.len()));
        let params: Vec<&(dyn postgres::types::ToSql + Sync)> = values.iter().map(|v| v.as_ref()).collect();
        let rows = conn.query(&sql, &params).map_err(storage("audit search"))?;
        rows.iter().map(entry).collect()
    }

    fn entries_after(&self, after: i64, count: usize) -> Result<Vec<AuditEntry>> {
        let mut conn = self.conn()?;
        let rows = conn
            .query(
                &format!("SELECT {COLUMNS} FROM audit_event WHERE sequence > $1 ORDER BY sequence LIMIT $2"),
                &[&after, &(count as i64)],
            )
            .map_err(storage("audit read"))?;
        rows.iter().map(entry).collect()
    }

    fn head(&self) -> Result<Option<(i64, String)>> {
        let mut conn = self.conn()?;
        let row = conn
            .query_one("SELECT sequence, hash FROM audit_chain WHERE id = 1", &[])
            .map_err(storage("audit head"))?;
        let sequence: i64 = row.get(0);
        Ok((sequence > 0).then(|| (sequence, row.get(1))))
    }
}
