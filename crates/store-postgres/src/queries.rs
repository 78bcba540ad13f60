//! The SQL shared by pooled reads and the write transactions.

use crate::shard::{self, Family};
use crate::{Connection, layout, storage};
use postgres::Row;
use postgres::types::ToSql;
use std::sync::Arc;
use store::{Change, Error, HistoryQuery, NewVersion, ResourceVersion, Result};

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
        last_updated: search::from_micros(row.try_get(3).map_err(&fail)?)
            .map_err(|_| Error::Storage("a stored time is out of range".into()))?,
        change: change_of(change)?,
        body: body.map(Arc::from),
        sequence: row.try_get(6).map_err(&fail)?,
    })
}

/// The concrete `table` of `resource_type`'s family.
fn table_of(resource_type: &str, table: &str) -> (Family, String) {
    let family = shard::family(resource_type);
    (family, layout::name(family, table))
}

/// ` AND shard_key = {placeholder}` when rows of `resource_type` with id `id` can only be in
/// that shard (a Patient's rows, whose key is its id); `""` otherwise.
fn patient_pin(resource_type: &str, placeholder: &str) -> String {
    if resource_type == "Patient" { format!(" AND shard_key = {placeholder}") } else { String::new() }
}

/// The latest version of a resource (a deletion included), locked per `lock`.
pub(crate) fn current(
    conn: &mut Connection,
    resource_type: &str,
    id: &str,
    lock: Lock,
) -> Result<Option<ResourceVersion>> {
    Ok(current_with_key(conn, resource_type, id, lock)?.map(|(v, _)| v))
}

/// [`current`] with the shard key of the current row (`""` for shared resources).
///
/// For a patient-owned type other than Patient the read spans every shard: the row's key is
/// what is looked for. That read, under the row lock or (for a resource not yet created) the
/// advisory lock on its `type/id`, is what keeps `(type, id)` unique across shards.
pub(crate) fn current_with_key(
    conn: &mut Connection,
    resource_type: &str,
    id: &str,
    lock: Lock,
) -> Result<Option<(ResourceVersion, String)>> {
    let fail = storage("read");
    let (family, table) = table_of(resource_type, "resource_current");
    let key = if family == Family::Patient { "shard_key" } else { "''::text" };
    let pin = patient_pin(resource_type, "$2");
    let locking = match lock {
        Lock::None => "",
        Lock::Write => " FOR NO KEY UPDATE",
        Lock::Reference => " FOR KEY SHARE",
    };
    let sql =
        format!("SELECT {VERSION_COLUMNS}, {key} FROM {table} WHERE resource_type = $1 AND id = $2{pin}{locking}");
    let keyed = |row: Option<Row>| -> Result<Option<(ResourceVersion, String)>> {
        match row {
            Some(row) => Ok(Some((version_row(&row)?, row.try_get(7).map_err(storage("read row"))?))),
            None => Ok(None),
        }
    };
    let row = conn.query_opt(&sql, &[&resource_type, &id]).map_err(&fail)?;
    if row.is_none() && lock == Lock::Write {
        // Nothing to lock yet: lock the key, then look again in a new snapshot, in case a
        // writer that held it has just created the resource (or moved it to another shard).
        let key = lock_key("resource", &format!("{resource_type}/{id}"));
        conn.execute("SELECT pg_advisory_xact_lock($1)", &[&key]).map_err(&fail)?;
        let again = conn.query_opt(&sql, &[&resource_type, &id]).map_err(&fail)?;
        return keyed(again);
    }
    keyed(row)
}

/// One exact version of a resource.
pub(crate) fn version(
    conn: &mut Connection,
    resource_type: &str,
    id: &str,
    version: u64,
) -> Result<Option<ResourceVersion>> {
    let (_, table) = table_of(resource_type, "resource_version");
    let pin = patient_pin(resource_type, "$2");
    let sql =
        format!("SELECT {VERSION_COLUMNS} FROM {table} WHERE resource_type = $1 AND id = $2 AND version = $3{pin}");
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
    let (_, table) = table_of(resource_type, "identifier_index");
    let rows = match system {
        Some(system) => conn.query(
            &format!(
                "SELECT DISTINCT id FROM {table} WHERE resource_type = $1 AND value = $2 AND system = $3 ORDER BY id"
            ),
            &[&resource_type, &value, &system],
        ),
        None => conn.query(
            &format!("SELECT DISTINCT id FROM {table} WHERE resource_type = $1 AND value = $2 ORDER BY id"),
            &[&resource_type, &value],
        ),
    }
    .map_err(&fail)?;
    rows.iter().map(|r| r.try_get(0).map_err(&fail)).collect()
}

/// The shard key of the current row of a resource (`""` when shared or absent).
pub(crate) fn shard_key_of(conn: &mut Connection, resource_type: &str, id: &str) -> Result<String> {
    let (family, table) = table_of(resource_type, "resource_current");
    if family == Family::Shared {
        return Ok(String::new());
    }
    let pin = patient_pin(resource_type, "$2");
    let sql = format!("SELECT shard_key FROM {table} WHERE resource_type = $1 AND id = $2{pin}");
    let row = conn.query_opt(&sql, &[&resource_type, &id]).map_err(storage("read"))?;
    row.map(|r| r.try_get(0)).transpose().map(Option::unwrap_or_default).map_err(storage("read"))
}

/// Writes a version: history row, current row, identifier and index rows. `old_key` is the
/// shard key of the current row (for a version after the first). Returns its sequence, the
/// resource's row key and the shard key it now has (`""` for shared resources).
///
/// A patient-owned resource whose key changes (its patient changed) moves: its current row is
/// deleted and inserted again under the new key with the same row key, and so are its index
/// and identifier rows (Citus cannot update a distribution column in place; PostgreSQL would
/// move the row between partitions, which concurrent lockers see as a serialization failure).
/// History rows keep the key they were written with. A deletion keeps the key it had.
pub(crate) fn put(conn: &mut Connection, v: &NewVersion<'_>, old_key: &str) -> Result<(i64, i64, String)> {
    let last_updated = search::micros(v.last_updated);
    let version = to_sql(v.version)?;
    let change = change_code(v.change);
    let deleted = v.change == Change::Deleted;
    let family = shard::family(v.resource_type);
    let key = match (family, deleted) {
        (Family::Shared, _) => String::new(),
        (Family::Patient, true) => old_key.to_string(),
        (Family::Patient, false) => shard::shard_key(v.resource_type, v.id, v.index),
    };
    let patient = family == Family::Patient;
    let (kc, kv) = if patient { ("shard_key, ", "$7, ") } else { ("", "") };
    let history = layout::name(family, "resource_version");
    let mut values: Vec<&(dyn ToSql + Sync)> = vec![&v.resource_type, &v.id, &version, &last_updated, &change, &v.body];
    if patient {
        values.push(&key);
    }
    let row = conn
        .query_one(
            &format!(
                "INSERT INTO {history} ({kc}resource_type, id, version, last_updated, change, body)
                 VALUES ({kv}$1, $2, $3, $4, $5, $6) RETURNING sequence"
            ),
            &values,
        )
        .map_err(storage("write history"))?;
    let sequence: i64 = row.try_get(0).map_err(storage("write history"))?;
    let current = layout::name(family, "resource_current");
    let mut values: Vec<&(dyn ToSql + Sync)> =
        vec![&v.resource_type, &v.id, &version, &last_updated, &change, &deleted, &sequence, &v.body];
    let (kc, kv) = if patient { ("shard_key, ", "$9, ") } else { ("", "") };
    let moved = patient && v.version > 1 && key != old_key;
    let sql = if v.version == 1 {
        if patient {
            values.push(&key);
        }
        format!(
            "INSERT INTO {current} ({kc}resource_type, id, version, last_updated, change, deleted, sequence, body)
             VALUES ({kv}$1, $2, $3, $4, $5, $6, $7, $8) RETURNING rid"
        )
    } else if moved {
        values.push(&old_key);
        values.push(&key);
        format!(
            "WITH old AS (DELETE FROM {current} WHERE shard_key = $9 AND resource_type = $1 AND id = $2 RETURNING rid)
             INSERT INTO {current} (rid, shard_key, resource_type, id, version, last_updated, change, deleted,
                 sequence, body)
             SELECT rid, $10, $1, $2, $3, $4, $5, $6, $7, $8 FROM old RETURNING rid"
        )
    } else {
        let pin = if patient {
            values.push(&key);
            " AND shard_key = $9"
        } else {
            ""
        };
        format!(
            "UPDATE {current} SET version = $3, last_updated = $4, change = $5, deleted = $6,
                 sequence = $7, body = $8
             WHERE resource_type = $1 AND id = $2{pin} RETURNING rid"
        )
    };
    let row = conn.query_one(&sql, &values).map_err(storage("write current"))?;
    let rid: i64 = row.try_get(0).map_err(storage("write current"))?;
    let old = if v.version > 1 { Some(old_key) } else { None };
    crate::index_rows::replace(conn, family, rid, old, &key, v.index, v.full_text)?;
    let fail = storage("write identifiers");
    let identifiers = layout::name(family, "identifier_index");
    if let Some(old) = old {
        if patient {
            conn.execute(
                &format!("DELETE FROM {identifiers} WHERE shard_key = $3 AND resource_type = $1 AND id = $2"),
                &[&v.resource_type, &v.id, &old],
            )
        } else {
            conn.execute(
                &format!("DELETE FROM {identifiers} WHERE resource_type = $1 AND id = $2"),
                &[&v.resource_type, &v.id],
            )
        }
        .map_err(&fail)?;
    }
    if !v.identifiers.is_empty() {
        let systems: Vec<&str> = v.identifiers.iter().map(|(s, _)| s.as_deref().unwrap_or("")).collect();
        let ids: Vec<&str> = v.identifiers.iter().map(|(_, value)| value.as_str()).collect();
        let (kc, kv) = if patient { ("shard_key, ", "$5, ") } else { ("", "") };
        let mut values: Vec<&(dyn ToSql + Sync)> = vec![&v.resource_type, &ids, &systems, &v.id];
        if patient {
            values.push(&key);
        }
        conn.execute(
            &format!(
                "INSERT INTO {identifiers} ({kc}resource_type, value, system, id)
                 SELECT {kv}$1, value, system, $4 FROM unnest($2::text[], $3::text[]) AS i(value, system)
                 ON CONFLICT DO NOTHING"
            ),
            &values,
        )
        .map_err(&fail)?;
    }
    Ok((sequence, rid, key))
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
            if t == "Patient" {
                // A Patient's history is all in its own shard.
                conditions.push(format!("shard_key = ${}", values.len()));
            }
        }
    }
    if let Some(since) = query.since {
        values.push(Box::new(search::micros(since)));
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

/// The history table `query` reads: its type's family's, or the view of both.
fn history_table(query: &HistoryQuery) -> String {
    match &query.resource_type {
        Some(t) => table_of(t, "resource_version").1,
        None => "resource_version".to_string(),
    }
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
        "SELECT {VERSION_COLUMNS} FROM {}{filter} ORDER BY sequence DESC LIMIT ${}",
        history_table(query),
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
    let sql = format!("SELECT count(*) FROM {}{filter}", history_table(query));
    let row = conn.query_one(&sql, &params(&values)).map_err(storage("history"))?;
    to_u64(row.try_get(0).map_err(storage("history"))?)
}

/// The sequence of the latest version written (0 in an empty store). Sequences come from a
/// PostgreSQL sequence, taken when a version is written: a transaction still in flight may
/// commit a version below this cut after it is read, which a snapshot then includes (the
/// SQLite backend, with its single writer, has no such window).
pub(crate) fn latest_sequence(conn: &mut Connection) -> Result<i64> {
    let row = conn
        .query_one("SELECT COALESCE(MAX(sequence), 0)::bigint FROM resource_version", &[])
        .map_err(storage("snapshot"))?;
    row.try_get(0).map_err(storage("snapshot"))
}

/// A page of `resource_type` as it stood at sequence `as_of` (see `Backend::snapshot`): the
/// current rows in id order, and for those written since the cut, the latest version at or
/// below it from the history.
pub(crate) fn snapshot(
    conn: &mut Connection,
    resource_type: &str,
    as_of: i64,
    after_id: &str,
    count: usize,
) -> Result<(Vec<ResourceVersion>, Option<String>)> {
    let (_, current) = table_of(resource_type, "resource_current");
    let (_, history) = table_of(resource_type, "resource_version");
    let limit = i64::try_from(count.max(1)).unwrap_or(i64::MAX);
    let sql =
        format!("SELECT {VERSION_COLUMNS} FROM {current} WHERE resource_type = $1 AND id > $2 ORDER BY id LIMIT $3");
    let rows = conn.query(&sql, &[&resource_type, &after_id, &limit]).map_err(storage("snapshot"))?;
    let rows = rows.iter().map(version_row).collect::<Result<Vec<_>>>()?;
    let next = if rows.len() < count.max(1) { None } else { rows.last().map(|v| v.id.clone()) };
    let older = format!(
        "SELECT {VERSION_COLUMNS} FROM {history}
         WHERE resource_type = $1 AND id = $2 AND sequence <= $3 ORDER BY sequence DESC LIMIT 1"
    );
    let mut out = Vec::with_capacity(rows.len());
    for version in rows {
        let version = if version.sequence <= as_of {
            version
        } else {
            match conn.query_opt(&older, &[&resource_type, &version.id, &as_of]).map_err(storage("snapshot"))? {
                Some(row) => version_row(&row)?,
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
