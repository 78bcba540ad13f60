//! Searches on SQLite: its dialect of the shared planner (`store_sql`) and the statements run.

use crate::storage;
use rusqlite::types::{FromSql, ToSqlOutput, ValueRef};
use rusqlite::{Connection, ToSql, params_from_iter};
use search::query::{Include, SearchQuery};
use store::Result;
use store_sql::{Dialect, Params, Statement, Value};

/// SQLite's SQL: `?n` placeholders, lists of placeholders, `1`/`0`, the `rowid`, FTS5, and the
/// hints that keep its planner on the intended indexes.
struct Sqlite;

impl Dialect for Sqlite {
    /// One set of tables.
    type Scope = ();

    const ROW_KEY: &'static str = "rowid";
    const TRUE: &'static str = "1";
    const FALSE: &'static str = "0";

    fn placeholder(n: usize, _: &Value) -> String {
        format!("?{n}")
    }

    fn among(&self, params: &mut Params, values: &[i64]) -> String {
        let list: Vec<String> = values.iter().map(|v| params.bind(*v)).collect();
        format!("IN ({})", list.join(", "))
    }

    fn live(&self, alias: &str) -> String {
        format!("{alias}.deleted = 0")
    }

    fn text_rows(&self, params: &mut Params, _: &(), content: bool, query: &str) -> String {
        let column = if content { "content" } else { "narrative" };
        let m = params.bind(format!("{{{column}}} : ({})", fts_query(query)));
        format!("SELECT rowid FROM search_text WHERE search_text MATCH {m}")
    }

    fn search_scope(&self, _: &mut Params, _: &SearchQuery) {}

    fn scope_of(&self, _: &[String]) {}

    fn resource_scope(&self, _: &str, _: &str) {}

    fn table(&self, _: &(), base: &str) -> String {
        base.to_string()
    }

    fn scope_condition(&self, _: &(), _: &str) -> Option<String> {
        None
    }

    /// `INDEXED BY` keeps SQLite from scanning a parameter's whole value index instead.
    fn by_rid_hint(&self, table: &str) -> String {
        format!(" INDEXED BY {table}_rid")
    }

    /// CROSS JOIN keeps the written order: from a page's rows to what they reference or what
    /// references them. Left to itself SQLite walks every index row of the parameter.
    fn ordered_join(&self) -> &'static str {
        "CROSS JOIN"
    }

    /// `+column`: SQLite uses no index for the term.
    fn unindexed(&self, column: &str) -> String {
        format!("+{column}")
    }

    /// With an `OR` of (type, id) pairs alone SQLite scans every index row of the parameter
    /// (all of a Provenance.target's rows, say) and tests each against every pair.
    fn seeks_reference_ids(&self) -> bool {
        true
    }
}

/// A full-text query from user text: each word quoted (so FTS5 syntax in the input is
/// literal) and matched as a prefix of a token, all words required.
fn fts_query(text: &str) -> String {
    let words: Vec<String> = text.split_whitespace().map(|w| format!("\"{}\"", w.replace('"', "\"\""))).collect();
    if words.is_empty() { "\"\"".into() } else { words.join(" AND ") }
}

/// A planner value as rusqlite binds it.
struct Bound<'a>(&'a Value);

impl ToSql for Bound<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self.0 {
            Value::Int(v) => ValueRef::Integer(*v),
            Value::Real(v) => ValueRef::Real(*v),
            Value::Text(v) => ValueRef::Text(v.as_bytes()),
            // `Sqlite::among` binds each value of a list on its own.
            Value::Ints(_) => return Err(rusqlite::Error::ToSqlConversionFailure("SQLite binds no arrays".into())),
        }))
    }
}

/// The first column of every row of `statement`.
fn column<T: FromSql>(conn: &Connection, statement: &Statement, operation: &'static str) -> Result<Vec<T>> {
    let fail = storage(operation);
    let mut stmt = conn.prepare_cached(&statement.sql).map_err(&fail)?;
    let rows = stmt.query_map(params_from_iter(statement.values.iter().map(Bound)), |row| row.get(0)).map_err(&fail)?;
    rows.collect::<rusqlite::Result<_>>().map_err(&fail)
}

/// Row keys of the matching resources in result order, at most `limit`.
pub(crate) fn search(conn: &Connection, query: &SearchQuery, limit: usize) -> Result<Vec<i64>> {
    column(conn, &store_sql::search(&Sqlite, query, limit), "search")
}

/// Ids of the matching resources (all of one type), at most `limit`.
pub(crate) fn search_ids(conn: &Connection, query: &SearchQuery, limit: usize) -> Result<Vec<String>> {
    column(conn, &store_sql::search_ids(&Sqlite, query, limit), "search")
}

/// How many resources match.
pub(crate) fn count(conn: &Connection, query: &SearchQuery) -> Result<u64> {
    let n: Vec<i64> = column(conn, &store_sql::count(&Sqlite, query), "search")?;
    Ok(n.first().copied().unwrap_or(0).max(0) as u64)
}

/// Row keys of the live resources the `keys` resources reference through `include`.
pub(crate) fn include(conn: &Connection, keys: &[i64], include: &Include) -> Result<Vec<i64>> {
    match store_sql::include(&Sqlite, keys, include) {
        Some(statement) => column(conn, &statement, "include"),
        None => Ok(Vec::new()),
    }
}

/// Row keys of the live `include.source_type` resources that reference the `keys` resources.
pub(crate) fn revinclude(conn: &Connection, keys: &[i64], include: &Include) -> Result<Vec<i64>> {
    match store_sql::revinclude(&Sqlite, keys, include) {
        Some(statement) => column(conn, &statement, "include"),
        None => Ok(Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use search::query::{parse_include, parse_pairs};

    /// `statement`'s text with runs of white space as one space (nested selects are indented).
    fn one_line(statement: &Statement) -> String {
        statement.sql.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn searches_read_sqlite_with_its_hints() {
        let text = "subject=Patient/p1&category=laboratory&_sort=-date";
        let query = SearchQuery::parse(Some("Observation"), &parse_pairs(text).expect("pairs"), true).expect("query");
        let statement = store_sql::search(&Sqlite, &query, 20);
        assert_eq!(
            one_line(&statement),
            "SELECT r.rowid FROM resource_current r WHERE r.deleted = 0 AND 1 AND r.resource_type = ?1 \
             AND r.rowid IN (SELECT t1.rid FROM search_reference t1 WHERE t1.param = ?2 AND ((t1.target_id = ?3 AND t1.target_type = ?4))) \
             AND EXISTS (SELECT 1 FROM search_token t2 INDEXED BY search_token_rid WHERE t2.rid = r.rowid AND t2.param = ?5 AND ((t2.code = ?6))) \
             ORDER BY (SELECT MAX(s.high) FROM search_date s INDEXED BY search_date_rid WHERE s.rid = r.rowid AND s.param = ?7) IS NULL, \
             (SELECT MAX(s.high) FROM search_date s INDEXED BY search_date_rid WHERE s.rid = r.rowid AND s.param = ?7) DESC, r.rowid ASC LIMIT ?8"
        );
        assert_eq!(statement.values.len(), 8);

        let include = parse_include("Observation:subject:Patient", false, "Observation").expect("include");
        let statement = store_sql::include(&Sqlite, &[7, 8], &include).expect("statement");
        assert_eq!(
            one_line(&statement),
            "SELECT DISTINCT c.rowid FROM search_reference t CROSS JOIN resource_current c \
             ON c.resource_type = t.target_type AND c.id = t.target_id \
             WHERE t.rid IN (?1, ?2) AND +t.param = ?3 AND c.deleted = 0 AND t.target_type = ?4"
        );
    }

    #[test]
    fn full_text_words_are_quoted_prefixes() {
        assert_eq!(fts_query("cough \"dry"), "\"cough\" AND \"\"\"dry\"");
        assert_eq!(fts_query("  "), "\"\"");
    }
}
