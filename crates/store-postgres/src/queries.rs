//! The SQL shared by pooled reads and the write transactions.

use crate::conn::Params;
use crate::{Connection, storage};
use postgres::Row;
use postgres::types::ToSql;
use std::sync::Arc;
use store::{Change, Error, HistoryQuery, NewVersion, ResourceVersion, Result};
use time::OffsetDateTime;

const VERSION_COLUMNS: &str = "resource_type, id, version, last_updated, change, body, sequence";

/// How a read inside a write transaction locks what it reads.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lock {
    /// A plain read (outside write transactions).
    None,
    /// The resource is about to be written: lock its row, or its key if it has none yet.
    Write,
    /// The resource is referenced: keep it from being removed until commit.
    Reference,
}

/// Unix microseconds of `t` (what the tables keep).
pub(crate) fn to_micros(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000) as i64
}

fn from_micros(micros: i64) -> Result<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1_000)
        .map_err(|_| Error::Storage("a stored time is out of range".into()))
}

fn change_code(change: Change) -> &'static str {
    match change {
        Change::Created => "created",
        Change::Updated => "updated",
        Change::Deleted => "deleted",
    }
}

fn change_of(code: &str) -> Result<Change> {
    match code {
        "created" => Ok(Change::Created),
        "updated" => Ok(Change::Updated),
        "deleted" => Ok(Change::Deleted),
        _ => Err(Error::Storage("a stored change is unknown".into())),
    }
}

fn to_u64(n: i64) -> Result<u64> {
    u64::try_from(n).map_err(|_| Error::Storage("a stored number is out of range".into()))
}

/// `n` as PostgreSQL's `bigint`.
fn to_sql(n: u64) -> Result<i64> {
    i64::try_from(n).map_err(|_| Error::invalid("a version number is out of range"))
}

/// An advisory lock key for `text` (a hash: a collision only makes two writers wait).
pub(crate) fn lock_key(kind: &str, text: &str) -> i64 {
    // FNV-1a, 64 bits: stable across processes and releases, unlike `DefaultHasher`.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in kind.bytes().chain([0]).chain(text.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash as i64
}

/// The lock key of one identifier value of a resource type (any system).
pub(crate) fn identifier_key(resource_type: &str, value: &str) -> i64 {
    lock_key("identifier", &format!("{resource_type}|{value}"))
}

/// A row of [`VERSION_COLUMNS`].
fn version_row(row: &Row) -> Result<ResourceVersion> {
    let fail = storage("read row");
    let change: &str = row.try_get(4).map_err(&fail)?;
    let body: Option<&str> = row.try_get(5).map_err(&fail)?;
    Ok(ResourceVersion {
        resource_type: row.try_get(0).map_err(&fail)?,
        id: row.try_get(1).map_err(&fail)?,
        version: to_u64(row.try_get(2).map_err(&fail)?)?,
        last_updated: from_micros(row.try_get(3).map_err(&fail)?)?,
        change: change_of(change)?,
        body: body.map(Arc::from),
        sequence: row.try_get(6).map_err(&fail)?,
    })
}

/// The latest version of a resource (a deletion included), locked per `lock`.
pub(crate) fn current(
    conn: &mut Connection,
    resource_type: &str,
    id: &str,
    lock: Lock,
) -> Result<Option<ResourceVersion>> {
    let fail = storage("read");
    let sql = match lock {
        Lock::None => format!("SELECT {VERSION_COLUMNS} FROM resource_current WHERE resource_type = $1 AND id = $2"),
        Lock::Write => format!(
            "SELECT {VERSION_COLUMNS} FROM resource_current WHERE resource_type = $1 AND id = $2 FOR NO KEY UPDATE"
        ),
        Lock::Reference => {
            format!("SELECT {VERSION_COLUMNS} FROM resource_current WHERE resource_type = $1 AND id = $2 FOR KEY SHARE")
        }
    };
    let row = conn.query_opt(&sql, &[&resource_type, &id]).map_err(&fail)?;
    if row.is_none() && lock == Lock::Write {
        // Nothing to lock yet: lock the key, then look again in a new snapshot, in case a
        // writer that held it has just created the resource.
        let key = lock_key("resource", &format!("{resource_type}/{id}"));
        conn.execute("SELECT pg_advisory_xact_lock($1)", &[&key]).map_err(&fail)?;
        let again = conn.query_opt(&sql, &[&resource_type, &id]).map_err(&fail)?;
        return again.as_ref().map(version_row).transpose();
    }
    row.as_ref().map(version_row).transpose()
}

/// One exact version of a resource.
pub(crate) fn version(
    conn: &mut Connection,
    resource_type: &str,
    id: &str,
    version: u64,
) -> Result<Option<ResourceVersion>> {
    let sql =
        format!("SELECT {VERSION_COLUMNS} FROM resource_version WHERE resource_type = $1 AND id = $2 AND version = $3");
    let row = conn.query_opt(&sql, &[&resource_type, &id, &to_sql(version)?]).map_err(storage("vread"))?;
    row.as_ref().map(version_row).transpose()
}

/// Ids of live resources with a matching identifier (`system: None` is any system).
pub(crate) fn find_by_identifier(
    conn: &mut Connection,
    resource_type: &str,
    system: Option<&str>,
    value: &str,
) -> Result<Vec<String>> {
    let fail = storage("identifier lookup");
    let rows = match system {
        Some(system) => conn.query(
            "SELECT DISTINCT id FROM identifier_index WHERE resource_type = $1 AND value = $2 AND system = $3 ORDER BY id",
            &[&resource_type, &value, &system],
        ),
        None => conn.query(
            "SELECT DISTINCT id FROM identifier_index WHERE resource_type = $1 AND value = $2 ORDER BY id",
            &[&resource_type, &value],
        ),
    }
    .map_err(&fail)?;
    rows.iter().map(|r| r.try_get(0).map_err(&fail)).collect()
}

/// Writes a version: history row, current row, identifier and index rows. Returns its
/// sequence and the resource's row key.
pub(crate) fn put(conn: &mut Connection, v: &NewVersion<'_>) -> Result<(i64, i64)> {
    let last_updated = to_micros(v.last_updated);
    let version = to_sql(v.version)?;
    let change = change_code(v.change);
    let deleted = v.change == Change::Deleted;
    let row = conn
        .query_one(
            "INSERT INTO resource_version (resource_type, id, version, last_updated, change, body)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING sequence",
            &[&v.resource_type, &v.id, &version, &last_updated, &change, &v.body],
        )
        .map_err(storage("write history"))?;
    let sequence: i64 = row.try_get(0).map_err(storage("write history"))?;
    let params: Params<'_> = &[&v.resource_type, &v.id, &version, &last_updated, &change, &deleted, &sequence, &v.body];
    let row = if v.version == 1 {
        conn.query_one(
            "INSERT INTO resource_current (resource_type, id, version, last_updated, change, deleted, sequence, body)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING rid",
            params,
        )
    } else {
        conn.query_one(
            "UPDATE resource_current SET version = $3, last_updated = $4, change = $5, deleted = $6,
                 sequence = $7, body = $8
             WHERE resource_type = $1 AND id = $2 RETURNING rid",
            params,
        )
    }
    .map_err(storage("write current"))?;
    let rid: i64 = row.try_get(0).map_err(storage("write current"))?;
    crate::index_rows::replace(conn, rid, v.version > 1, v.index, v.full_text)?;
    let fail = storage("write identifiers");
    if v.version > 1 {
        conn.execute("DELETE FROM identifier_index WHERE resource_type = $1 AND id = $2", &[&v.resource_type, &v.id])
            .map_err(&fail)?;
    }
    for (system, value) in v.identifiers {
        conn.execute(
            "INSERT INTO identifier_index (resource_type, value, system, id) VALUES ($1, $2, $3, $4)
             ON CONFLICT DO NOTHING",
            &[&v.resource_type, value, &system.as_deref().unwrap_or(""), &v.id],
        )
        .map_err(&fail)?;
    }
    Ok((sequence, rid))
}

/// A bound value of a dynamically built statement.
pub(crate) type Value = Box<dyn ToSql + Sync + Send>;

/// `WHERE …` of a history query and its parameters; `paged` includes the paging cursor.
fn history_filter(query: &HistoryQuery, paged: bool) -> (String, Vec<Value>) {
    let mut conditions = Vec::new();
    let mut values: Vec<Value> = Vec::new();
    if let Some(t) = &query.resource_type {
        values.push(Box::new(t.clone()));
        conditions.push(format!("resource_type = ${}", values.len()));
        if let Some(id) = &query.id {
            values.push(Box::new(id.clone()));
            conditions.push(format!("id = ${}", values.len()));
        }
    }
    if let Some(since) = query.since {
        values.push(Box::new(to_micros(since)));
        conditions.push(format!("last_updated >= ${}", values.len()));
    }
    if let (true, Some(before)) = (paged, query.before_sequence) {
        values.push(Box::new(before));
        conditions.push(format!("sequence < ${}", values.len()));
    }
    let filter = if conditions.is_empty() { String::new() } else { format!(" WHERE {}", conditions.join(" AND ")) };
    (filter, values)
}

/// The values as statement parameters.
pub(crate) fn params(values: &[Value]) -> Vec<&(dyn ToSql + Sync)> {
    values.iter().map(|v| v.as_ref() as &(dyn ToSql + Sync)).collect()
}

/// History entries matching `query`, newest first.
pub(crate) fn history(conn: &mut Connection, query: &HistoryQuery) -> Result<Vec<ResourceVersion>> {
    if query.count == 0 {
        return Ok(Vec::new());
    }
    if query.id.is_some() && query.resource_type.is_none() {
        return Err(Error::invalid("instance history needs a resource type"));
    }
    let (filter, mut values) = history_filter(query, true);
    values.push(Box::new(i64::try_from(query.count).unwrap_or(i64::MAX)));
    let sql = format!(
        "SELECT {VERSION_COLUMNS} FROM resource_version{filter} ORDER BY sequence DESC LIMIT ${}",
        values.len()
    );
    let rows = conn.query(&sql, &params(&values)).map_err(storage("history"))?;
    rows.iter().map(version_row).collect()
}

/// Versions with a sequence above `after`, oldest first, at most `count`.
pub(crate) fn versions_after(conn: &mut Connection, after: i64, count: usize) -> Result<Vec<ResourceVersion>> {
    let sql = format!("SELECT {VERSION_COLUMNS} FROM resource_version WHERE sequence > $1 ORDER BY sequence LIMIT $2");
    let limit = i64::try_from(count).unwrap_or(i64::MAX);
    let rows = conn.query(&sql, &[&after, &limit]).map_err(storage("history"))?;
    rows.iter().map(version_row).collect()
}

/// How many history entries match `query`, ignoring its paging.
pub(crate) fn history_total(conn: &mut Connection, query: &HistoryQuery) -> Result<u64> {
    let (filter, values) = history_filter(query, false);
    let sql = format!("SELECT count(*) FROM resource_version{filter}");
    let row = conn.query_one(&sql, &params(&values)).map_err(storage("history"))?;
    to_u64(row.try_get(0).map_err(storage("history"))?)
}

/// Number of live resources per type, by type name.
pub(crate) fn count_by_type(conn: &mut Connection) -> Result<Vec<(String, u64)>> {
    let fail = storage("count");
    let rows = conn
        .query(
            "SELECT resource_type, count(*) FROM resource_current WHERE NOT deleted
             GROUP BY resource_type ORDER BY resource_type",
            &[],
        )
        .map_err(&fail)?;
    rows.iter().map(|r| Ok((r.try_get(0).map_err(&fail)?, to_u64(r.try_get(1).map_err(&fail)?)?))).collect()
}

/// The current versions of the live resources among row keys `keys`, in that order.
pub(crate) fn fetch(conn: &mut Connection, keys: &[i64]) -> Result<Vec<(i64, ResourceVersion)>> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let fail = storage("fetch");
    let sql = format!("SELECT {VERSION_COLUMNS}, rid FROM resource_current WHERE rid = ANY($1) AND NOT deleted");
    let rows = conn.query(&sql, &[&keys]).map_err(&fail)?;
    let mut found = std::collections::HashMap::with_capacity(rows.len());
    for row in &rows {
        let rid: i64 = row.try_get(7).map_err(&fail)?;
        found.insert(rid, version_row(row)?);
    }
    Ok(keys.iter().filter_map(|k| found.get(k).map(|v| (*k, v.clone()))).collect())
}
