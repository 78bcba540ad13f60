//! The statements a backend runs for a search: its page of row keys, its ids, its count, and
//! what its resources include.

use crate::builder::Builder;
use crate::filters::{table, where_clause};
use crate::{Dialect, Value};
use search::ParamKind;
use search::query::{Include, SearchQuery, SortKey};

/// SQL text and the values its placeholders stand for, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    /// The text, with the dialect's placeholders.
    pub sql: String,
    /// The bound values, the first for placeholder 1.
    pub values: Vec<Value>,
}

/// A builder for the rows `query` matches, with their table and the condition of their scope
/// (see [`Dialect::search_scope`]).
fn start<'d, D: Dialect>(dialect: &'d D, query: &SearchQuery) -> (Builder<'d, D>, String, String) {
    let mut b = Builder::new(dialect);
    b.scope = dialect.search_scope(&mut b.params, query);
    let (table, pin) = (b.table("resource_current"), b.pinned("r"));
    (b, table, pin)
}

/// The `LIMIT` value of `limit`.
fn limit_value(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// Row keys of the resources `query` matches, in result order, at most `limit`.
pub fn search<D: Dialect>(dialect: &D, query: &SearchQuery, limit: usize) -> Statement {
    let (mut b, table, pin) = start(dialect, query);
    let filter = where_clause(&mut b, query, "r");
    let order = order_by(&mut b, &query.sort, "r");
    let limit = b.bind(limit_value(limit));
    let row_key = D::ROW_KEY;
    b.finish(format!("SELECT r.{row_key} FROM {table} r WHERE {filter}{pin} ORDER BY {order} LIMIT {limit}"))
}

/// Ids of the resources `query` (of one type) matches, at most `limit`, in no order.
pub fn search_ids<D: Dialect>(dialect: &D, query: &SearchQuery, limit: usize) -> Statement {
    let (mut b, table, pin) = start(dialect, query);
    let filter = where_clause(&mut b, query, "r");
    let limit = b.bind(limit_value(limit));
    b.finish(format!("SELECT r.id FROM {table} r WHERE {filter}{pin} LIMIT {limit}"))
}

/// How many resources `query` matches (one row, one integer column).
pub fn count<D: Dialect>(dialect: &D, query: &SearchQuery) -> Statement {
    let (mut b, table, pin) = start(dialect, query);
    let filter = where_clause(&mut b, query, "r");
    b.finish(format!("SELECT count(*) FROM {table} r WHERE {filter}{pin}"))
}

/// `ORDER BY` of a search: its sort keys, then the row key.
fn order_by<D: Dialect>(b: &mut Builder<'_, D>, sort: &[(SortKey, bool)], r: &str) -> String {
    let row_key = D::ROW_KEY;
    let mut keys = Vec::new();
    for (key, descending) in sort {
        let dir = if *descending { "DESC" } else { "ASC" };
        let expr = match key {
            SortKey::Id => format!("{r}.id"),
            SortKey::LastUpdated => format!("{r}.last_updated"),
            SortKey::Param { keys: params, kind } => {
                let params = b.bind_keys(params);
                let (agg, col) = match (kind, descending) {
                    (ParamKind::String, _) => ("MIN", "normalized"),
                    (ParamKind::Token, _) => ("MIN", "code"),
                    (ParamKind::Reference, _) => ("MIN", "target_id"),
                    (ParamKind::Date, false) => ("MIN", "low"),
                    (ParamKind::Date, true) => ("MAX", "high"),
                    (ParamKind::Number | ParamKind::Quantity, false) => ("MIN", "value"),
                    (ParamKind::Number | ParamKind::Quantity, true) => ("MAX", "value"),
                    _ => ("MIN", "uri"),
                };
                let (table, pin) = (b.table(table(*kind)), b.pinned("s"));
                let hint = b.dialect.by_rid_hint(&table);
                // By rid: with the parameter alone a planner may walk its whole value index
                // for MIN/MAX, once per sorted row.
                format!(
                    "(SELECT {agg}(s.{col}) FROM {table} s{hint} WHERE s.rid = {r}.{row_key} AND s.param {params}{pin})"
                )
            }
        };
        // Resources without a value sort last either way.
        keys.push(format!("{expr} IS NULL, {expr} {dir}"));
    }
    keys.push(format!("{r}.{row_key} ASC"));
    keys.join(", ")
}

/// Row keys of the live resources the `keys` resources reference through `include`; `None`
/// when nothing can match.
pub fn include<D: Dialect>(dialect: &D, keys: &[i64], include: &Include) -> Option<Statement> {
    if keys.is_empty() || include.keys.is_empty() {
        return None;
    }
    let mut b = Builder::new(dialect);
    let rids = b.bind_keys(keys);
    let params = b.bind_keys(&include.keys);
    let (references, current) = (b.table("search_reference"), b.table("resource_current"));
    let (join, param, live) = (dialect.ordered_join(), dialect.unindexed("t.param"), dialect.live("c"));
    let row_key = D::ROW_KEY;
    // The parameter is not sought: `rid = ? AND param = ?` over every pair would be
    // rids × keys seeks — 1,000 × 300 for a `$everything` page.
    let mut sql = format!(
        "SELECT DISTINCT c.{row_key} FROM {references} t {join} {current} c
            ON c.resource_type = t.target_type AND c.id = t.target_id
         WHERE t.rid {rids} AND {param} {params} AND {live}"
    );
    if let Some(ty) = &include.target_type {
        sql.push_str(&format!(" AND t.target_type = {}", b.bind(ty.as_str())));
    }
    Some(b.finish(sql))
}

/// Row keys of the live `include.source_type` resources that reference the `keys` resources;
/// `None` when nothing can match.
pub fn revinclude<D: Dialect>(dialect: &D, keys: &[i64], include: &Include) -> Option<Statement> {
    if keys.is_empty() || include.keys.is_empty() {
        return None;
    }
    let mut b = Builder::new(dialect);
    let rids = b.bind_keys(keys);
    let params = b.bind_keys(&include.keys);
    let source = b.bind(include.source_type.as_str());
    let (references, current) = (b.table("search_reference"), b.table("resource_current"));
    let (join, live) = (dialect.ordered_join(), dialect.live("s"));
    let row_key = D::ROW_KEY;
    // From the page's rows to what references them: left to itself a planner may walk every
    // index row of the parameter (all Provenance targets).
    let sql = format!(
        "SELECT DISTINCT s.{row_key} FROM {current} m
           {join} {references} t ON t.target_id = m.id AND t.target_type = m.resource_type
           {join} {current} s ON s.{row_key} = t.rid
         WHERE m.{row_key} {rids} AND t.param {params} AND s.resource_type = {source} AND {live}"
    );
    Some(b.finish(sql))
}
