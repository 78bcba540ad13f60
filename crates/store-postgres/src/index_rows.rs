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
/// resource had a version before, so old rows may need deleting. One statement per table
/// that gets rows (their values passed as arrays and `unnest`ed), not one per row: round
/// trips, not the server, are the cost of a write here.
pub(crate) fn replace(
    conn: &mut Connection,
    rid: i64,
    existed: bool,
    entries: &[IndexEntry],
    text: Option<&FullText>,
) -> Result<()> {
    let fail = storage("write index");
    if existed {
        let deletes: Vec<String> =
            TABLES.iter().enumerate().map(|(i, t)| format!("d{i} AS (DELETE FROM {t} WHERE rid = $1)")).collect();
        conn.execute(&format!("WITH {} SELECT 1", deletes.join(", ")), &[&rid]).map_err(&fail)?;
    }
    Columns::of(entries).insert(conn, rid).map_err(&fail)?;
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

    fn insert(&self, conn: &mut Connection, rid: i64) -> std::result::Result<(), postgres::Error> {
        if !self.string.param.is_empty() {
            let (k, [a, b]) = (&self.string, &self.string_values);
            conn.execute(
                "INSERT INTO search_string (rid, param, grp, normalized, exact)
                 SELECT $1, * FROM unnest($2::int8[], $3::int8[], $4::text[], $5::text[])",
                &[&rid, &k.param, &k.grp, a, b],
            )?;
        }
        if !self.token.param.is_empty() {
            let (k, [a, b, c]) = (&self.token, &self.token_values);
            conn.execute(
                "INSERT INTO search_token (rid, param, grp, system, code, text)
                 SELECT $1, * FROM unnest($2::int8[], $3::int8[], $4::text[], $5::text[], $6::text[])",
                &[&rid, &k.param, &k.grp, a, b, c],
            )?;
        }
        if !self.reference.param.is_empty() {
            let (k, [a, b, c, d, e, f]) = (&self.reference, &self.reference_values);
            conn.execute(
                "INSERT INTO search_reference (rid, param, grp, target_type, target_id, version, url, id_system, id_value)
                 SELECT $1, * FROM unnest($2::int8[], $3::int8[], $4::text[], $5::text[], $6::text[], $7::text[],
                     $8::text[], $9::text[])",
                &[&rid, &k.param, &k.grp, a, b, c, d, e, f],
            )?;
        }
        if !self.date.param.is_empty() {
            let (k, [a, b]) = (&self.date, &self.date_values);
            conn.execute(
                "INSERT INTO search_date (rid, param, grp, low, high)
                 SELECT $1, * FROM unnest($2::int8[], $3::int8[], $4::int8[], $5::int8[])",
                &[&rid, &k.param, &k.grp, a, b],
            )?;
        }
        if !self.number.param.is_empty() {
            let (k, [a, b, c]) = (&self.number, &self.number_values);
            conn.execute(
                "INSERT INTO search_number (rid, param, grp, value, low, high)
                 SELECT $1, * FROM unnest($2::int8[], $3::int8[], $4::float8[], $5::float8[], $6::float8[])",
                &[&rid, &k.param, &k.grp, a, b, c],
            )?;
        }
        if !self.quantity.param.is_empty() {
            let k = &self.quantity;
            let ([v, l, h], [s, c, u, cc], [cv, cl, ch]) =
                (&self.quantity_values, &self.quantity_units, &self.quantity_canonical);
            conn.execute(
                "INSERT INTO search_quantity (rid, param, grp, value, low, high, system, code, unit,
                     canonical_code, canonical_value, canonical_low, canonical_high)
                 SELECT $1, * FROM unnest($2::int8[], $3::int8[], $4::float8[], $5::float8[], $6::float8[],
                     $7::text[], $8::text[], $9::text[], $10::text[], $11::float8[], $12::float8[], $13::float8[])",
                &[&rid, &k.param, &k.grp, v, l, h, s, c, u, cc, cv, cl, ch],
            )?;
        }
        if !self.uri.param.is_empty() {
            let (k, [a]) = (&self.uri, &self.uri_values);
            conn.execute(
                "INSERT INTO search_uri (rid, param, grp, uri) SELECT $1, * FROM unnest($2::int8[], $3::int8[], $4::text[])",
                &[&rid, &k.param, &k.grp, a],
            )?;
        }
        Ok(())
    }
}
