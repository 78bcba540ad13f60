//! Writing a version's search index rows and its full-text row, in its transaction.

use crate::layout::{self, INDEX_TABLES};
use crate::shard::Family;
use crate::{Connection, storage};
use postgres::types::ToSql;
use search::{FullText, IndexEntry, IndexValue};
use store::Result;
use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// Replaces the index rows of resource row `rid` (of `family`) with `entries` and `text`.
/// `old`: the shard key the rows had, when the resource had a version before (so old rows may
/// need deleting); `key`: the shard key the new rows get (patient-owned tables only). One
/// statement per table that gets rows (their values passed as arrays and `unnest`ed), not one
/// per row: round trips, not the server, are the cost of a write here.
pub(crate) fn replace(
    conn: &mut Connection,
    family: Family,
    rid: i64,
    old: Option<&str>,
    key: &str,
    entries: &[IndexEntry],
    text: Option<&FullText>,
) -> Result<()> {
    let fail = storage("write index");
    let patient = family == Family::Patient;
    if let Some(old) = old {
        let pin = if patient { " AND shard_key = $2" } else { "" };
        let deletes: Vec<String> = INDEX_TABLES
            .iter()
            .enumerate()
            .map(|(i, t)| format!("d{i} AS (DELETE FROM {} WHERE rid = $1{pin})", layout::name(family, t)))
            .collect();
        let sql = format!("WITH {} SELECT 1", deletes.join(", "));
        if patient { conn.execute(&sql, &[&rid, &old]) } else { conn.execute(&sql, &[&rid]) }.map_err(&fail)?;
    }
    let target = Target { family, key };
    Columns::of(entries).insert(conn, &target, rid).map_err(&fail)?;
    if let Some(text) = text {
        let (kc, kv) = if patient { ("shard_key, ", "$4, ") } else { ("", "") };
        let sql = format!(
            "INSERT INTO {} ({kc}rid, narrative, content)
             VALUES ({kv}$1, to_tsvector('simple', $2), to_tsvector('simple', $3))",
            layout::name(family, "search_text")
        );
        let (narrative, content) = (fold(&text.narrative), fold(&text.content));
        if patient {
            conn.execute(&sql, &[&rid, &narrative, &content, &key])
        } else {
            conn.execute(&sql, &[&rid, &narrative, &content])
        }
        .map_err(storage("write full text"))?;
    }
    Ok(())
}

/// Where index rows go: the family's tables, with the shard key for patient-owned ones.
struct Target<'k> {
    family: Family,
    key: &'k str,
}

impl Target<'_> {
    /// Runs `INSERT INTO <family>_<table> (<shard_key,> rid, <columns>) SELECT <key,> $1, * FROM
    /// unnest(<arrays>)` with `params` after `$1` = `rid`.
    fn insert(
        &self,
        conn: &mut Connection,
        table: &str,
        columns: &str,
        arrays: &str,
        rid: i64,
        params: &[&(dyn ToSql + Sync)],
    ) -> std::result::Result<(), postgres::Error> {
        let mut values: Vec<&(dyn ToSql + Sync)> = vec![&rid];
        values.extend_from_slice(params);
        let (kc, kv) = if self.family == Family::Patient {
            values.push(&self.key);
            ("shard_key, ", format!("${}::text, ", values.len()))
        } else {
            ("", String::new())
        };
        let table = layout::name(self.family, table);
        let sql =
            format!("INSERT INTO {table} ({kc}rid, param, grp, {columns}) SELECT {kv}$1, * FROM unnest({arrays})");
        conn.execute(&sql, &values).map(drop)
    }
}

/// `text` without diacritics (as SQLite's `remove_diacritics`), for the full-text index and
/// its queries; the `simple` configuration then lower-cases and splits words.
pub(crate) fn fold(text: &str) -> String {
    text.nfkd().filter(|c| !is_combining_mark(*c)).collect()
}

/// The parameter keys and composite groups of one table's rows.
#[derive(Default)]
struct Keys {
    param: Vec<i64>,
    grp: Vec<Option<i64>>,
}

impl Keys {
    fn push(&mut self, entry: &IndexEntry) {
        self.param.push(entry.param);
        self.grp.push(entry.group);
    }
}

/// Appends one row's `values` to their columns.
fn push<T, const N: usize>(columns: &mut [Vec<T>; N], values: [T; N]) {
    for (column, value) in columns.iter_mut().zip(values) {
        column.push(value);
    }
}

/// The index rows of one version, column by column per table.
#[derive(Default)]
struct Columns<'a> {
    string: Keys,
    string_values: [Vec<&'a str>; 2],
    token: Keys,
    token_values: [Vec<Option<&'a str>>; 3],
    reference: Keys,
    reference_values: [Vec<Option<&'a str>>; 6],
    date: Keys,
    date_values: [Vec<i64>; 2],
    number: Keys,
    number_values: [Vec<f64>; 3],
    quantity: Keys,
    quantity_values: [Vec<f64>; 3],
    quantity_units: [Vec<Option<&'a str>>; 4],
    quantity_canonical: [Vec<Option<f64>>; 3],
    uri: Keys,
    uri_values: [Vec<&'a str>; 1],
}

impl<'a> Columns<'a> {
    fn of(entries: &'a [IndexEntry]) -> Columns<'a> {
        let mut c = Columns::default();
        for entry in entries {
            match &entry.value {
                IndexValue::String { normalized, exact } => {
                    c.string.push(entry);
                    push(&mut c.string_values, [normalized.as_str(), exact.as_str()]);
                }
                IndexValue::Token { system, code, text } => {
                    c.token.push(entry);
                    push(&mut c.token_values, [system.as_deref(), code.as_deref(), text.as_deref()]);
                }
                IndexValue::Reference { target_type, target_id, version, url, identifier } => {
                    c.reference.push(entry);
                    let (id_system, id_value) = match identifier {
                        Some((s, v)) => (s.as_deref(), Some(v.as_str())),
                        None => (None, None),
                    };
                    let target = [target_type.as_deref(), target_id.as_deref(), version.as_deref(), url.as_deref()];
                    let [t, i, v, u] = target;
                    push(&mut c.reference_values, [t, i, v, u, id_system, id_value]);
                }
                IndexValue::Date(range) => {
                    c.date.push(entry);
                    push(&mut c.date_values, [range.low, range.high]);
                }
                IndexValue::Number(n) => {
                    c.number.push(entry);
                    push(&mut c.number_values, [n.value, n.low, n.high]);
                }
                IndexValue::Quantity { value, system, code, unit, canonical } => {
                    c.quantity.push(entry);
                    push(&mut c.quantity_values, [value.value, value.low, value.high]);
                    let canonical_code = canonical.as_ref().map(|(c, _)| c.as_str());
                    push(&mut c.quantity_units, [system.as_deref(), code.as_deref(), unit.as_deref(), canonical_code]);
                    let n = canonical.as_ref().map(|(_, n)| n);
                    push(&mut c.quantity_canonical, [n.map(|n| n.value), n.map(|n| n.low), n.map(|n| n.high)]);
                }
                IndexValue::Uri(uri) => {
                    c.uri.push(entry);
                    push(&mut c.uri_values, [uri.as_str()]);
                }
            }
        }
        c
    }

    fn insert(&self, conn: &mut Connection, target: &Target<'_>, rid: i64) -> std::result::Result<(), postgres::Error> {
        if !self.string.param.is_empty() {
            let (k, [a, b]) = (&self.string, &self.string_values);
            target.insert(
                conn,
                "search_string",
                "normalized, exact",
                "$2::int8[], $3::int8[], $4::text[], $5::text[]",
                rid,
                &[&k.param, &k.grp, a, b],
            )?;
        }
        if !self.token.param.is_empty() {
            let (k, [a, b, c]) = (&self.token, &self.token_values);
            target.insert(
                conn,
                "search_token",
                "system, code, text",
                "$2::int8[], $3::int8[], $4::text[], $5::text[], $6::text[]",
                rid,
                &[&k.param, &k.grp, a, b, c],
            )?;
        }
        if !self.reference.param.is_empty() {
            let (k, [a, b, c, d, e, f]) = (&self.reference, &self.reference_values);
            target.insert(
                conn,
                "search_reference",
                "target_type, target_id, version, url, id_system, id_value",
                "$2::int8[], $3::int8[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[]",
                rid,
                &[&k.param, &k.grp, a, b, c, d, e, f],
            )?;
        }
        if !self.date.param.is_empty() {
            let (k, [a, b]) = (&self.date, &self.date_values);
            target.insert(
                conn,
                "search_date",
                "low, high",
                "$2::int8[], $3::int8[], $4::int8[], $5::int8[]",
                rid,
                &[&k.param, &k.grp, a, b],
            )?;
        }
        if !self.number.param.is_empty() {
            let (k, [a, b, c]) = (&self.number, &self.number_values);
            target.insert(
                conn,
                "search_number",
                "value, low, high",
                "$2::int8[], $3::int8[], $4::float8[], $5::float8[], $6::float8[]",
                rid,
                &[&k.param, &k.grp, a, b, c],
            )?;
        }
        if !self.quantity.param.is_empty() {
            let k = &self.quantity;
            let ([v, l, h], [s, c, u, cc], [cv, cl, ch]) =
                (&self.quantity_values, &self.quantity_units, &self.quantity_canonical);
            target.insert(
                conn,
                "search_quantity",
                "value, low, high, system, code, unit, canonical_code, canonical_value, canonical_low, canonical_high",
                "$2::int8[], $3::int8[], $4::float8[], $5::float8[], $6::float8[], $7::text[], $8::text[], \
                 $9::text[], $10::text[], $11::float8[], $12::float8[], $13::float8[]",
                rid,
                &[&k.param, &k.grp, v, l, h, s, c, u, cc, cv, cl, ch],
            )?;
        }
        if !self.uri.param.is_empty() {
            let (k, [a]) = (&self.uri, &self.uri_values);
            target.insert(
                conn,
                "search_uri",
                "uri",
                "$2::int8[], $3::int8[], $4::text[]",
                rid,
                &[&k.param, &k.grp, a],
            )?;
        }
        Ok(())
    }
}
