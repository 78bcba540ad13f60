//! Searches on PostgreSQL: its dialect of the shared planner (`store_sql`) and the statements
//! run.

use crate::shard::{self, Family};
use crate::{Connection, layout, storage};
use postgres::types::ToSql;
use search::query::{Contained, Include, SearchQuery};
use store::Result;
use store_sql::{Dialect, Params, Statement, Value};

/// PostgreSQL's SQL: `$n` placeholders with explicit types, arrays, `TRUE`/`FALSE`, the `rid`,
/// `tsvector` full text, and the sharded layout (see [`crate::shard`] and [`crate::layout`]).
struct Postgres;

/// Which rows are matched: a family's tables (`None`: both, through the views), and the
/// placeholder of the shard key every row has when the search is pinned to one patient.
#[derive(Clone, Default)]
struct Scope {
    family: Option<Family>,
    pin: Option<String>,
}

impl Dialect for Postgres {
    type Scope = Scope;

    const ROW_KEY: &'static str = "rid";
    const TRUE: &'static str = "TRUE";
    const FALSE: &'static str = "FALSE";

    /// `$n` with the cast that fixes its type (PostgreSQL cannot always infer it).
    fn placeholder(n: usize, value: &Value) -> String {
        let cast = match value {
            Value::Int(_) => "int8",
            Value::Real(_) => "float8",
            Value::Text(_) => "text",
            Value::Ints(_) => "int8[]",
        };
        format!("${n}::{cast}")
    }

    fn among(&self, params: &mut Params, values: &[i64]) -> String {
        format!("= ANY({})", params.bind(Value::Ints(values.to_vec())))
    }

    fn live(&self, alias: &str) -> String {
        format!("NOT {alias}.deleted")
    }

    fn text_rows(&self, params: &mut Params, scope: &Scope, content: bool, query: &str) -> String {
        let column = if content { "content" } else { "narrative" };
        let m = params.bind(crate::index_rows::fold(query));
        let (table, pin) = (self.table(scope, "search_text"), pinned(scope, "x"));
        format!("SELECT x.rid FROM {table} x WHERE x.{column} @@ plainto_tsquery('simple', {m}){pin}")
    }

    /// The searched types' family when they share one and the search is not of containers
    /// (which are of any type); pinned to one patient's shard when a filter fixes it.
    fn search_scope(&self, params: &mut Params, query: &SearchQuery) -> Scope {
        let mut scope = Scope::default();
        if query.contained == Contained::No {
            scope.family = shard::family_of_all(&query.types);
        }
        if scope.family == Some(Family::Patient) {
            let patient = query.filters.iter().find_map(|f| shard::pinned_patient(f, &query.types));
            scope.pin = patient.map(|p| params.bind(p));
        }
        scope
    }

    /// Their own family's tables, not pinned.
    fn scope_of(&self, types: &[String]) -> Scope {
        Scope { family: shard::family_of_all(types), pin: None }
    }

    /// A Patient's shard key is its id.
    fn resource_scope(&self, resource_type: &str, id: &str) -> Scope {
        let pin = (resource_type == "Patient").then(|| id.to_string());
        Scope { family: Some(shard::family(resource_type)), pin }
    }

    fn table(&self, scope: &Scope, base: &str) -> String {
        match scope.family {
            Some(family) => layout::name(family, base),
            None => base.to_string(),
        }
    }

    fn scope_condition(&self, scope: &Scope, alias: &str) -> Option<String> {
        scope.pin.as_ref().map(|pin| format!("{alias}.shard_key = {pin}"))
    }
}

/// ` AND {alias}.shard_key = …` when `scope` is pinned, else `""`.
fn pinned(scope: &Scope, alias: &str) -> String {
    Postgres.scope_condition(scope, alias).map(|c| format!(" AND {c}")).unwrap_or_default()
}

/// A planner value as the `postgres` client binds it.
fn param(value: &Value) -> &(dyn ToSql + Sync) {
    match value {
        Value::Int(v) => v,
        Value::Real(v) => v,
        Value::Text(v) => v,
        Value::Ints(v) => v,
    }
}

/// The first column of every row of `statement`.
fn column<T>(conn: &mut Connection, statement: &Statement, operation: &'static str) -> Result<Vec<T>>
where
    T: for<'a> postgres::types::FromSql<'a>,
{
    let fail = storage(operation);
    let params: Vec<&(dyn ToSql + Sync)> = statement.values.iter().map(param).collect();
    let rows = conn.query(&statement.sql, &params).map_err(&fail)?;
    rows.iter().map(|row| row.try_get(0).map_err(&fail)).collect()
}

/// Row keys of the matching resources in result order, at most `limit`.
pub(crate) fn search(conn: &mut Connection, query: &SearchQuery, limit: usize) -> Result<Vec<i64>> {
    column(conn, &store_sql::search(&Postgres, query, limit), "search")
}

/// `EXPLAIN` of the SQL that [`search`] runs for `query` (tests check partition pruning).
pub(crate) fn explain(conn: &mut Connection, query: &SearchQuery, limit: usize) -> Result<String> {
    let mut statement = store_sql::search(&Postgres, query, limit);
    statement.sql = format!("EXPLAIN {}", statement.sql);
    let lines: Vec<String> = column(conn, &statement, "explain")?;
    Ok(lines.join("\n"))
}

/// Ids of the matching resources (all of one type), at most `limit`.
pub(crate) fn search_ids(conn: &mut Connection, query: &SearchQuery, limit: usize) -> Result<Vec<String>> {
    column(conn, &store_sql::search_ids(&Postgres, query, limit), "search")
}

/// How many resources match.
pub(crate) fn count(conn: &mut Connection, query: &SearchQuery) -> Result<u64> {
    let n: Vec<i64> = column(conn, &store_sql::count(&Postgres, query), "search")?;
    Ok(n.first().copied().unwrap_or(0).max(0) as u64)
}

/// Row keys of the live resources the `keys` resources reference through `include`.
pub(crate) fn include(conn: &mut Connection, keys: &[i64], include: &Include) -> Result<Vec<i64>> {
    match store_sql::include(&Postgres, keys, include) {
        Some(statement) => column(conn, &statement, "include"),
        None => Ok(Vec::new()),
    }
}

/// Row keys of the live `include.source_type` resources that reference the `keys` resources.
pub(crate) fn revinclude(conn: &mut Connection, keys: &[i64], include: &Include) -> Result<Vec<i64>> {
    match store_sql::revinclude(&Postgres, keys, include) {
        Some(statement) => column(conn, &statement, "include"),
        None => Ok(Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::{Postgres, SearchQuery, Value};
    use search::query::parse_pairs;

    /// `sql`'s words, with one space between them.
    fn words(sql: &str) -> String {
        sql.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn searches_read_the_family_tables_pinned_to_the_patients_shard() {
        let pairs = parse_pairs("subject=Patient/p1&category=laboratory&_sort=-date").expect("pairs");
        let query = SearchQuery::parse(Some("Observation"), &pairs, true).expect("query");
        let statement = store_sql::search(&Postgres, &query, 20);
        assert_eq!(
            words(&statement.sql),
            "SELECT r.rid FROM patient_resource_current r WHERE NOT r.deleted AND TRUE AND r.resource_type = $2::text \
             AND r.rid IN (SELECT t1.rid FROM patient_search_reference t1 WHERE t1.param = $3::int8 AND ((t1.target_id = $4::text AND t1.target_type = $5::text)) AND t1.shard_key = $1::text) \
             AND EXISTS (SELECT 1 FROM patient_search_token t2 WHERE t2.rid = r.rid AND t2.param = $6::int8 AND ((t2.code = $7::text)) AND t2.shard_key = $1::text) \
             AND r.shard_key = $1::text \
             ORDER BY (SELECT MAX(s.high) FROM patient_search_date s WHERE s.rid = r.rid AND s.param = $8::int8 AND s.shard_key = $1::text) IS NULL, \
             (SELECT MAX(s.high) FROM patient_search_date s WHERE s.rid = r.rid AND s.param = $8::int8 AND s.shard_key = $1::text) DESC, r.rid ASC LIMIT $9::int8"
        );
        assert_eq!(statement.values[0], Value::Text("p1".into()));
        assert_eq!(statement.values.len(), 9);
    }

    #[test]
    fn several_keys_are_one_array_and_shared_types_their_own_tables() {
        let pairs = parse_pairs("_type=Practitioner,Organization&name=kim").expect("pairs");
        let query = SearchQuery::parse(None, &pairs, true).expect("query");
        let statement = store_sql::count(&Postgres, &query);
        let sql = words(&statement.sql);
        assert!(sql.starts_with("SELECT count(*) FROM shared_resource_current r WHERE NOT r.deleted"), "{sql}");
        assert!(sql.contains("FROM shared_search_string t1 WHERE t1.param = ANY($3::int8[])"), "{sql}");
        assert!(!sql.contains("shard_key"), "{sql}");
        assert!(matches!(&statement.values[2], Value::Ints(keys) if keys.len() == 2));
    }
}
