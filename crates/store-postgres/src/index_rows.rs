//! Writing a version's search index rows and its full-text row, in its transaction.

use crate::{Connection, storage};
use search::{FullText, IndexEntry, IndexValue};
use store::Result;
use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// The index tables, each holding rows keyed by `rid`.
const TABLES: &[&str] = &[
    "search_string",
    "search_token",
    "search_reference",
    "search_date",
    "search_number",
    "search_quantity",
    "search_uri",
    "search_text",
];

/// Replaces the index rows of resource row `rid` with `entries` and `text`. `existed`: the
/// resource had a version before, so old rows may need deleting.
pub(crate) fn replace(
    conn: &mut Connection,
    rid: i64,
    existed: bool,
    entries: &[IndexEntry],
    text: Option<&FullText>,
) -> Result<()> {
    let fail = storage("write index");
    if existed {
        for table in TABLES {
            conn.execute(&format!("DELETE FROM {table} WHERE rid = $1"), &[&rid]).map_err(&fail)?;
        }
    }
    for entry in entries {
        insert(conn, rid, entry).map_err(&fail)?;
    }
    if let Some(text) = text {
        conn.execute(
            "INSERT INTO search_text (rid, narrative, content)
             VALUES ($1, to_tsvector('simple', $2), to_tsvector('simple', $3))",
            &[&rid, &fold(&text.narrative), &fold(&text.content)],
        )
        .map_err(storage("write full text"))?;
    }
    Ok(())
}

/// `text` without diacritics (as SQLite's `remove_diacritics`), for the full-text index and
/// its queries; the `simple` configuration then lower-cases and splits words.
pub(crate) fn fold(text: &str) -> String {
    text.nfkd().filter(|c| !is_combining_mark(*c)).collect()
}

fn insert(conn: &mut Connection, rid: i64, entry: &IndexEntry) -> std::result::Result<u64, postgres::Error> {
    let (p, g) = (entry.param, entry.group);
    match &entry.value {
        IndexValue::String { normalized, exact } => conn.execute(
            "INSERT INTO search_string (rid, param, grp, normalized, exact) VALUES ($1, $2, $3, $4, $5)",
            &[&rid, &p, &g, normalized, exact],
        ),
        IndexValue::Token { system, code, text } => conn.execute(
            "INSERT INTO search_token (rid, param, grp, system, code, text) VALUES ($1, $2, $3, $4, $5, $6)",
            &[&rid, &p, &g, system, code, text],
        ),
        IndexValue::Reference { target_type, target_id, version, url, identifier } => {
            let (id_system, id_value) = match identifier {
                Some((s, v)) => (s.as_deref(), Some(v.as_str())),
                None => (None, None),
            };
            conn.execute(
                "INSERT INTO search_reference (rid, param, grp, target_type, target_id, version, url, id_system, id_value)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                &[&rid, &p, &g, target_type, target_id, version, url, &id_system, &id_value],
            )
        }
        IndexValue::Date(range) => conn.execute(
            "INSERT INTO search_date (rid, param, grp, low, high) VALUES ($1, $2, $3, $4, $5)",
            &[&rid, &p, &g, &range.low, &range.high],
        ),
        IndexValue::Number(n) => conn.execute(
            "INSERT INTO search_number (rid, param, grp, value, low, high) VALUES ($1, $2, $3, $4, $5, $6)",
            &[&rid, &p, &g, &n.value, &n.low, &n.high],
        ),
        IndexValue::Quantity { value, system, code, unit, canonical } => {
            let (cc, cv, cl, ch) = match canonical {
                Some((c, n)) => (Some(c.as_str()), Some(n.value), Some(n.low), Some(n.high)),
                None => (None, None, None, None),
            };
            conn.execute(
                "INSERT INTO search_quantity (rid, param, grp, value, low, high, system, code, unit,
                     canonical_code, canonical_value, canonical_low, canonical_high)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                &[&rid, &p, &g, &value.value, &value.low, &value.high, system, code, unit, &cc, &cv, &cl, &ch],
            )
        }
        IndexValue::Uri(uri) => {
            conn.execute("INSERT INTO search_uri (rid, param, grp, uri) VALUES ($1, $2, $3, $4)", &[&rid, &p, &g, uri])
        }
    }
}
