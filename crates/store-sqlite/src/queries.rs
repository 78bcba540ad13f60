//! The SQL, shared by the read connections and the writer's transaction. Statements are
//! prepared once per connection and cached.

use crate::storage;
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, Row, params, params_from_iter};
use std::sync::Arc;
use store::{Change, Error, HistoryQuery, NewVersion, ResourceVersion, Result};
use time::OffsetDateTime;

const VERSION_COLUMNS: &str = "resource_type, id, version, last_updated, change, body, sequence";

/// The time `row` keeps in `column` as Unix microseconds ([`search::micros`]).
fn time_at(row: &Row<'_>, column: usize) -> rusqlite::Result<OffsetDateTime> {
    search::from_micros(row.get(column)?)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Integer, Box::new(e)))
}

fn change_code(change: Change) -> &'static str {
    match change {
        Change::Created => "created",
        Change::Updated => "updated",
        Change::Deleted => "deleted",
    }
}

fn change_of(code: &str) -> rusqlite::Result<Change> {
    match code {
        "created" => Ok(Change::Created),
        "updated" => Ok(Change::Updated),
        "deleted" => Ok(Change::Deleted),
        _ => Err(rusqlite::Error::InvalidColumnType(4, "change".into(), rusqlite::types::Type::Text)),
    }
}

/// Column `index` as an unsigned number.
fn get_u64(row: &Row<'_>, index: usize) -> rusqlite::Result<u64> {
    let n: i64 = row.get(index)?;
    u64::try_from(n).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(index, n))
}

/// `n` as SQLite's integer.
fn to_sql(n: u64) -> Result<i64> {
    i64::try_from(n).map_err(|_| Error::invalid("a version number is out of range"))
}

/// A row of [`VERSION_COLUMNS`].
fn version_row(row: &Row<'_>) -> rusqlite::Result<ResourceVersion> {
    Ok(ResourceVersion {
        resource_type: row.get(0)?,
        id: row.get(1)?,
        version: get_u64(row, 2)?,
        last_updated: time_at(row, 3)?,
        change: change_of(row.get_ref(4)?.as_str()?)?,
        body: row.get_ref(5)?.as_str_or_null()?.map(Arc::from),
        sequence: row.get(6)?,
    })
}

/// The latest version of a resource (a deletion included).
pub(crate) fn current(conn: &Connection, resource_type: &str, id: &str) -> Result<Option<ResourceVersion>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT version, last_updated, change, body, sequence FROM resource_current
             WHERE resource_type = ?1 AND id = ?2",
        )
        .map_err(storage("read"))?;
    stmt.query_row(params![resource_type, id], |row| {
        Ok(ResourceVersion {
            resource_type: resource_type.to_string(),
            id: id.to_string(),
            version: get_u64(row, 0)?,
            last_updated: time_at(row, 1)?,
            change: change_of(row.get_ref(2)?.as_str()?)?,
            body: row.get_ref(3)?.as_str_or_null()?.map(Arc::from),
            sequence: row.get(4)?,
        })
    })
    .optional()
    .map_err(storage("read"))
}

/// The latest version number of a resource and whether it is deleted.
pub(crate) fn current_version(conn: &Connection, resource_type: &str, id: &str) -> Result<Option<(u64, bool)>> {
    let mut stmt = conn
        .prepare_cached("SELECT version, deleted FROM resource_current WHERE resource_type = ?1 AND id = ?2")
        .map_err(storage("read"))?;
    stmt.query_row(params![resource_type, id], |row| Ok((get_u64(row, 0)?, row.get(1)?)))
        .optional()
        .map_err(storage("read"))
}

/// One exact version of a resource.
pub(crate) fn version(
    conn: &Connection,
    resource_type: &str,
    id: &str,
    version: u64,
) -> Result<Option<ResourceVersion>> {
    let sql =
        format!("SELECT {VERSION_COLUMNS} FROM resource_version WHERE resource_type = ?1 AND id = ?2 AND version = ?3");
    let mut stmt = conn.prepare_cached(&sql).map_err(storage("vread"))?;
    stmt.query_row(params![resource_type, id, to_sql(version)?], version_row).optional().map_err(storage("vread"))
}

/// Ids of live resources with a matching identifier (`system: None` is any system).
pub(crate) fn find_by_identifier(
    conn: &Connection,
    resource_type: &str,
    system: Option<&str>,
    value: &str,
) -> Result<Vec<String>> {
    let mut stmt = match system {
        Some(_) => conn.prepare_cached(
            "SELECT DISTINCT id FROM identifier_index WHERE resource_type = ?1 AND value = ?2 AND system = ?3 ORDER BY id",
        ),
        None => conn.prepare_cached(
            "SELECT DISTINCT id FROM identifier_index WHERE resource_type = ?1 AND value = ?2 ORDER BY id",
        ),
    }
    .map_err(storage("identifier lookup"))?;
    let ids: rusqlite::Result<Vec<String>> = match system {
        Some(system) => {
            stmt.query_map(params![resource_type, value, system], |row| row.get(0)).and_then(|r| r.collect())
        }
        None => stmt.query_map(params![resource_type, value], |row| row.get(0)).and_then(|r| r.collect()),
    };
    ids.map_err(storage("identifier lookup"))
}

/// Writes a version: history row, current row, identifier and index rows. Returns its
/// sequence and the resource's row key. (`OR FAIL`: see [`crate::index_rows::replace`].)
pub(crate) fn put(conn: &Connection, v: &NewVersion<'_>) -> Result<(i64, i64)> {
    let last_updated = search::micros(v.last_updated);
    let version = to_sql(v.version)?;
    let change = change_code(v.change);
    let deleted = v.change == Change::Deleted;
    let sequence = conn
        .prepare_cached(
            "INSERT OR FAIL INTO resource_version (resource_type, id, version, last_updated, change, body)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .and_then(|mut s| s.insert(params![v.resource_type, v.id, version, last_updated, change, v.body]))
        .map_err(storage("write history"))?;
    // Not an upsert: `ON CONFLICT DO UPDATE … RETURNING` made SQLite open a statement
    // journal per write, which cost a quarter of the writer's time. Version 1 means there is
    // no row yet; later versions update the row in place, which keeps its rowid (`rid`).
    let params = params![v.resource_type, v.id, version, last_updated, change, deleted, sequence, v.body];
    let rid: i64 = if v.version == 1 {
        conn.prepare_cached(
            "INSERT OR FAIL INTO resource_current (resource_type, id, version, last_updated, change, deleted, sequence, body)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )
        .and_then(|mut s| s.insert(params))
        .map_err(storage("write current"))?
    } else {
        let rid: i64 = conn
            .prepare_cached("SELECT rowid FROM resource_current WHERE resource_type = ?1 AND id = ?2")
            .and_then(|mut s| s.query_row(params![v.resource_type, v.id], |r| r.get(0)))
            .map_err(storage("write current"))?;
        conn.prepare_cached(
            "UPDATE OR FAIL resource_current SET version = ?3, last_updated = ?4, change = ?5, deleted = ?6,
                 sequence = ?7, body = ?8
             WHERE resource_type = ?1 AND id = ?2",
        )
        .and_then(|mut s| s.execute(params))
        .map_err(storage("write current"))?;
        rid
    };
    crate::index_rows::replace(conn, rid, v.version > 1, v.index)?;
    if v.version > 1 {
        conn.prepare_cached("DELETE FROM identifier_index WHERE resource_type = ?1 AND id = ?2")
            .and_then(|mut s| s.execute(params![v.resource_type, v.id]))
            .map_err(storage("write identifiers"))?;
    }
    if !v.identifiers.is_empty() {
        let mut stmt = conn
            .prepare_cached(
                "INSERT OR IGNORE INTO identifier_index (resource_type, value, system, id) VALUES (?1, ?2, ?3, ?4)",
            )
            .map_err(storage("write identifiers"))?;
        for (system, value) in v.identifiers {
            stmt.execute(params![v.resource_type, value, system.as_deref().unwrap_or(""), v.id])
                .map_err(storage("write identifiers"))?;
        }
    }
    Ok((sequence, rid))
}

/// `WHERE …` of a history query and its parameters; `paged` includes the paging cursor.
fn history_filter(query: &HistoryQuery, paged: bool) -> (String, Vec<SqlValue>) {
    let mut conditions = Vec::new();
    let mut values = Vec::new();
    if let Some(t) = &query.resource_type {
        values.push(SqlValue::Text(t.clone()));
        conditions.push(format!("resource_type = ?{}", values.len()));
        if let Some(id) = &query.id {
            values.push(SqlValue::Text(id.clone()));
            conditions.push(format!("id = ?{}", values.len()));
        }
    }
    if let Some(since) = query.since {
        values.push(SqlValue::Integer(search::micros(since)));
        conditions.push(format!("last_updated >= ?{}", values.len()));
    }
    if let (true, Some(before)) = (paged, query.before_sequence) {
        values.push(SqlValue::Integer(before));
        conditions.push(format!("sequence < ?{}", values.len()));
    }
    let filter = if conditions.is_empty() { String::new() } else { format!(" WHERE {}", conditions.join(" AND ")) };
    (filter, values)
}

/// History entries matching `query`, newest first.
pub(crate) fn history(conn: &Connection, query: &HistoryQuery) -> Result<Vec<ResourceVersion>> {
    if query.count == 0 {
        return Ok(Vec::new());
    }
    if query.id.is_some() && query.resource_type.is_none() {
        return Err(Error::invalid("instance history needs a resource type"));
    }
    let (filter, mut values) = history_filter(query, true);
    values.push(SqlValue::Integer(i64::try_from(query.count).unwrap_or(i64::MAX)));
    let sql = format!(
        "SELECT {VERSION_COLUMNS} FROM resource_version{filter} ORDER BY sequence DESC LIMIT ?{}",
        values.len()
    );
    let mut stmt = conn.prepare_cached(&sql).map_err(storage("history"))?;
    let rows = stmt.query_map(params_from_iter(values), version_row).map_err(storage("history"))?;
    rows.collect::<rusqlite::Result<_>>().map_err(storage("history"))
}

/// Versions with a sequence above `after`, oldest first, at most `count`.
pub(crate) fn versions_after(conn: &Connection, after: i64, count: usize) -> Result<Vec<ResourceVersion>> {
    let sql = format!("SELECT {VERSION_COLUMNS} FROM resource_version WHERE sequence > ?1 ORDER BY sequence LIMIT ?2");
    let mut stmt = conn.prepare_cached(&sql).map_err(storage("history"))?;
    let limit = i64::try_from(count).unwrap_or(i64::MAX);
    let rows = stmt.query_map(rusqlite::params![after, limit], version_row).map_err(storage("history"))?;
    rows.collect::<rusqlite::Result<_>>().map_err(storage("history"))
}

/// How many history entries match `query`, ignoring its paging.
pub(crate) fn history_total(conn: &Connection, query: &HistoryQuery) -> Result<u64> {
    let (filter, values) = history_filter(query, false);
    let sql = format!("SELECT COUNT(*) FROM resource_version{filter}");
    let mut stmt = conn.prepare_cached(&sql).map_err(storage("history"))?;
    stmt.query_row(params_from_iter(values), |row| get_u64(row, 0)).map_err(storage("history"))
}

/// The sequence of the latest version written (0 in an empty store). The single writer
/// assigns sequences in commit order, so every version at or below it is committed.
pub(crate) fn latest_sequence(conn: &Connection) -> Result<i64> {
    conn.prepare_cached("SELECT COALESCE(MAX(sequence), 0) FROM resource_version")
        .and_then(|mut stmt| stmt.query_row([], |row| row.get(0)))
        .map_err(storage("snapshot"))
}

/// A page of `resource_type` as it stood at sequence `as_of` (see `Backend::snapshot`): the
/// current rows in id order (the primary key's), and for those written since the cut, the
/// latest version at or below it from the history.
pub(crate) fn snapshot(
    conn: &Connection,
    resource_type: &str,
    as_of: i64,
    after_id: &str,
    count: usize,
) -> Result<(Vec<ResourceVersion>, Option<String>)> {
    let sql = format!(
        "SELECT {VERSION_COLUMNS} FROM resource_current WHERE resource_type = ?1 AND id > ?2 ORDER BY id LIMIT ?3"
    );
    let limit = i64::try_from(count.max(1)).unwrap_or(i64::MAX);
    let mut stmt = conn.prepare_cached(&sql).map_err(storage("snapshot"))?;
    let rows = stmt
        .query_map(rusqlite::params![resource_type, after_id, limit], version_row)
        .map_err(storage("snapshot"))?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(storage("snapshot"))?;
    let next = if rows.len() < count.max(1) { None } else { rows.last().map(|v| v.id.clone()) };
    let older = format!(
        "SELECT {VERSION_COLUMNS} FROM resource_version
         WHERE resource_type = ?1 AND id = ?2 AND sequence <= ?3 ORDER BY sequence DESC LIMIT 1"
    );
    let mut out = Vec::with_capacity(rows.len());
    for version in rows {
        let version = if version.sequence <= as_of {
            version
        } else {
            let mut stmt = conn.prepare_cached(&older).map_err(storage("snapshot"))?;
            match stmt
                .query_row(rusqlite::params![resource_type, version.id, as_of], version_row)
                .optional()
                .map_err(storage("snapshot"))?
            {
                Some(then) => then,
                None => continue,
            }
        };
        if !version.is_deleted() {
            out.push(version);
        }
    }
    Ok((out, next))
}

/// Number of live resources per type, by type name.
pub(crate) fn count_by_type(conn: &Connection) -> Result<Vec<(String, u64)>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT resource_type, COUNT(*) FROM resource_current WHERE deleted = 0
             GROUP BY resource_type ORDER BY resource_type",
        )
        .map_err(storage("count"))?;
    let rows = stmt.query_map([], |row| Ok((row.get(0)?, get_u64(row, 1)?))).map_err(storage("count"))?;
    rows.collect::<rusqlite::Result<_>>().map_err(storage("count"))
}

/// The current versions of the live resources among row keys `keys`, in that order.
pub(crate) fn fetch(conn: &Connection, keys: &[i64]) -> Result<Vec<(i64, ResourceVersion)>> {
    let sql = format!("SELECT {VERSION_COLUMNS} FROM resource_current WHERE rowid = ?1 AND deleted = 0");
    let mut stmt = conn.prepare_cached(&sql).map_err(storage("fetch"))?;
    let mut out = Vec::with_capacity(keys.len());
    for &key in keys {
        if let Some(v) = stmt.query_row([key], version_row).optional().map_err(storage("fetch"))? {
            out.push((key, v));
        }
    }
    Ok(out)
}
