//! Writing a version's search index rows (and its full-text row) in the writer's transaction.

use crate::storage;
use rusqlite::{Connection, params};
use search::{FullText, IndexEntry, IndexValue};
use store::Result;

/// The index tables, each holding rows keyed by `rid`.
pub(crate) const TABLES: &[&str] = &[
    "search_string",
    "search_token",
    "search_reference",
    "search_date",
    "search_number",
    "search_quantity",
    "search_uri",
];

/// Replaces the index rows of resource row `rid` with `entries`. `existed`: the resource had
/// a version before, so old rows may need deleting.
///
/// Rows are inserted with `OR FAIL`: every unit of work runs in its own savepoint, which is
/// what undoes a failed write, so the per-statement journal that the default `ABORT` needs
/// would be pure cost (it was a quarter of the writer's time in a profile).
pub(crate) fn replace(conn: &Connection, rid: i64, existed: bool, entries: &[IndexEntry]) -> Result<()> {
    let fail = storage("write index");
    if existed {
        for table in TABLES {
            conn.prepare_cached(&format!("DELETE FROM {table} WHERE rid = ?1"))
                .and_then(|mut s| s.execute([rid]))
                .map_err(&fail)?;
        }
    }
    for entry in entries {
        insert(conn, rid, entry).map_err(&fail)?;
    }
    Ok(())
}

/// A change to the full-text index, applied once per group commit (see [`apply_text`]).
pub(crate) struct TextChange {
    pub rid: i64,
    pub existed: bool,
    pub text: Option<FullText>,
}

/// Applies full-text changes of the group's successful units of work, outside their
/// savepoints: FTS5 flushes its pending terms to disk at every savepoint boundary, which per
/// resource made a new index segment each time.
pub(crate) fn apply_text(conn: &Connection, changes: &[TextChange]) -> Result<()> {
    let fail = storage("write full text");
    for change in changes {
        if change.existed {
            conn.prepare_cached("DELETE FROM search_text WHERE rowid = ?1")
                .and_then(|mut s| s.execute([change.rid]))
                .map_err(&fail)?;
        }
        if let Some(text) = &change.text {
            conn.prepare_cached("INSERT OR FAIL INTO search_text (rowid, narrative, content) VALUES (?1, ?2, ?3)")
                .and_then(|mut s| s.execute(params![change.rid, text.narrative, text.content]))
                .map_err(&fail)?;
        }
    }
    Ok(())
}

fn insert(conn: &Connection, rid: i64, entry: &IndexEntry) -> rusqlite::Result<usize> {
    let (p, g) = (entry.param, entry.group);
    match &entry.value {
        IndexValue::String { normalized, exact } => conn
            .prepare_cached(
                "INSERT OR FAIL INTO search_string (rid, param, grp, normalized, exact) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![rid, p, g, normalized, exact]),
        IndexValue::Token { system, code, text } => conn
            .prepare_cached(
                "INSERT OR FAIL INTO search_token (rid, param, grp, system, code, text) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![rid, p, g, system, code, text]),
        IndexValue::Reference { target_type, target_id, version, url, identifier } => {
            let (id_system, id_value) = match identifier {
                Some((s, v)) => (s.as_deref(), Some(v.as_str())),
                None => (None, None),
            };
            conn.prepare_cached(
                "INSERT OR FAIL INTO search_reference (rid, param, grp, target_type, target_id, version, url, id_system, id_value)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![rid, p, g, target_type, target_id, version, url, id_system, id_value])
        }
        IndexValue::Date(range) => conn
            .prepare_cached("INSERT OR FAIL INTO search_date (rid, param, grp, low, high) VALUES (?1, ?2, ?3, ?4, ?5)")?
            .execute(params![rid, p, g, range.low, range.high]),
        IndexValue::Number(n) => conn
            .prepare_cached(
                "INSERT OR FAIL INTO search_number (rid, param, grp, value, low, high) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![rid, p, g, n.value, n.low, n.high]),
        IndexValue::Quantity { value, system, code, unit, canonical } => {
            let (cc, cv, cl, ch) = match canonical {
                Some((c, n)) => (Some(c.as_str()), Some(n.value), Some(n.low), Some(n.high)),
                None => (None, None, None, None),
            };
            conn.prepare_cached(
                "INSERT OR FAIL INTO search_quantity (rid, param, grp, value, low, high, system, code, unit,
                     canonical_code, canonical_value, canonical_low, canonical_high)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            )?
            .execute(params![
                rid,
                p,
                g,
                value.value,
                value.low,
                value.high,
                system,
                code,
                unit,
                cc,
                cv,
                cl,
                ch
            ])
        }
        IndexValue::Uri(uri) => conn
            .prepare_cached("INSERT OR FAIL INTO search_uri (rid, param, grp, uri) VALUES (?1, ?2, ?3, ?4)")?
            .execute(params![rid, p, g, uri]),
    }
}
