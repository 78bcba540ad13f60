//! The `WHERE` of a search: its driving filter, the filters checked per row, chains, `_has`,
//! compartments.

use crate::Dialect;
use crate::builder::{Builder, any_sql};
use crate::conditions::{composite_rids, condition_sql, date_condition};
use search::ParamKind;
use search::query::{Condition, Contained, Filter, SearchQuery};

/// The index table of a parameter kind (its base name: see [`Dialect::table`]).
pub(crate) fn table(kind: ParamKind) -> &'static str {
    match kind {
        ParamKind::String => "search_string",
        ParamKind::Token => "search_token",
        ParamKind::Reference => "search_reference",
        ParamKind::Date => "search_date",
        ParamKind::Number => "search_number",
        ParamKind::Quantity => "search_quantity",
        ParamKind::Uri | ParamKind::Composite | ParamKind::Special => "search_uri",
    }
}

/// The `WHERE` of the resource rows a search matches, for the row alias `r`.
pub(crate) fn where_clause<D: Dialect>(b: &mut Builder<'_, D>, query: &SearchQuery, r: &str) -> String {
    let live = b.dialect.live(r);
    // Containers are of any type: what is searched is what they contain.
    if query.contained == Contained::Only {
        let mut parts = vec![live];
        for filter in &query.filters {
            parts.push(filter_sql(b, filter, r, None));
        }
        return parts.join(" AND ");
    }
    let own = typed_clause(b, query, r);
    if query.contained == Contained::Both {
        let inner: Vec<String> = query.contained_filters.iter().map(|f| filter_sql(b, f, r, None)).collect();
        return format!("{live} AND (({own}) OR ({}))", inner.join(" AND "));
    }
    format!("{live} AND {own}")
}

/// The type constraint and filters of a search on the searched types themselves.
fn typed_clause<D: Dialect>(b: &mut Builder<'_, D>, query: &SearchQuery, r: &str) -> String {
    let mut parts = vec![D::TRUE.to_string()];
    match query.types.as_slice() {
        [] => {}
        [one] => parts.push(format!("{r}.resource_type = {}", b.bind(one.as_str()))),
        many => parts.push(format!("{r}.resource_type IN ({})", b.bind_list(many))),
    }
    let single_type = query.types.first().map(String::as_str);
    let only_type = if query.types.len() == 1 { single_type } else { None };
    // The most selective filter drives the search: its matches are listed once through an
    // index and every other filter is checked per row through the `rid` indexes. Listing
    // each filter's matches (`rid IN (…)` for all of them) would make
    // `Observation?patient=…&category=laboratory` list every laboratory result of the store.
    let driver = query
        .filters
        .iter()
        .enumerate()
        .filter_map(|(i, f)| selectivity(f, only_type).map(|s| (s, i)))
        .min()
        .map(|(_, i)| i);
    for (i, filter) in query.filters.iter().enumerate() {
        let sql = match (Some(i) == driver).then(|| rid_set(b, filter, only_type)).flatten() {
            Some(rids) => format!("{r}.{} IN ({rids})", D::ROW_KEY),
            None => check_sql(b, filter, r, single_type),
        };
        parts.push(sql);
    }
    parts.join(" AND ")
}

/// How few rows a filter is expected to match, fewest first; `None` for filters that are
/// only checked per row.
pub(crate) fn selectivity(filter: &Filter, only_type: Option<&str>) -> Option<u8> {
    match filter {
        Filter::Is { .. } => Some(0),
        Filter::Id(_) => only_type.map(|_| 0),
        Filter::Compartment { .. } => Some(1),
        Filter::Param { kind: ParamKind::Reference, conditions, .. }
            if conditions.iter().all(|c| matches!(c, Condition::Reference { .. })) =>
        {
            Some(1)
        }
        Filter::Param { kind: ParamKind::Composite, .. } => None,
        Filter::Param { kind: ParamKind::Date | ParamKind::Number | ParamKind::Quantity, .. } => Some(3),
        Filter::Param { .. } => Some(2),
        Filter::AnyOf(filters) => {
            filters.iter().try_fold(0, |worst, f| selectivity(f, only_type).map(|s| worst.max(s)))
        }
        _ => None,
    }
}

/// `SELECT` of the row keys a driving filter matches, through the index of its values.
fn rid_set<D: Dialect>(b: &mut Builder<'_, D>, filter: &Filter, only_type: Option<&str>) -> Option<String> {
    let row_key = D::ROW_KEY;
    match filter {
        Filter::Is { resource_type, id } => {
            let (ty, id) = (b.bind(resource_type.as_str()), b.bind(id.as_str()));
            let scope = b.dialect.resource_scope(resource_type, &id);
            let (table, pin) = b.within(scope, |b| (b.table("resource_current"), b.pinned("x")));
            Some(format!("SELECT x.{row_key} FROM {table} x WHERE x.resource_type = {ty} AND x.id = {id}{pin}"))
        }
        Filter::Id(ids) => {
            let ty = b.bind(only_type?);
            let list = b.bind_list(ids);
            let (table, pin) = (b.table("resource_current"), b.pinned("x"));
            Some(format!("SELECT x.{row_key} FROM {table} x WHERE x.resource_type = {ty} AND x.id IN ({list}){pin}"))
        }
        Filter::Compartment { keys, target_type, ids } if !keys.is_empty() && !ids.is_empty() => {
            Some(compartment_rids(b, keys, target_type, ids))
        }
        Filter::Param { keys, kind, conditions } if *kind != ParamKind::Composite => {
            Some(param_rids(b, keys, *kind, conditions))
        }
        Filter::AnyOf(filters) => {
            let sets: Option<Vec<String>> = filters.iter().map(|f| rid_set(b, f, only_type)).collect();
            Some(sets?.join(" UNION "))
        }
        _ => None,
    }
}

/// SQL checking one non-driving filter on row `r`: index rows are looked up by `rid`.
fn check_sql<D: Dialect>(b: &mut Builder<'_, D>, filter: &Filter, r: &str, single_type: Option<&str>) -> String {
    let row_key = D::ROW_KEY;
    match filter {
        Filter::Param { keys, kind, conditions } if *kind != ParamKind::Composite => {
            let t = b.alias("t");
            let table = b.table(table(*kind));
            let hint = b.dialect.by_rid_hint(&table);
            let keys = b.bind_keys(keys);
            let ors: Vec<String> = conditions.iter().map(|c| condition_sql(b, c, &t)).collect();
            let pin = b.pinned(&t);
            format!(
                "EXISTS (SELECT 1 FROM {table} {t}{hint}
                 WHERE {t}.rid = {r}.{row_key} AND {t}.param {keys} AND ({}){pin})",
                any_sql(&ors)
            )
        }
        Filter::Compartment { keys, target_type, ids } if !keys.is_empty() && !ids.is_empty() => {
            let t = b.alias("t");
            let keys = b.bind_keys(keys);
            let ty = b.bind(target_type.as_str());
            let id = target_ids(b, ids);
            let (table, pin) = (b.table("search_reference"), b.pinned(&t));
            let hint = b.dialect.by_rid_hint(&table);
            format!(
                "EXISTS (SELECT 1 FROM {table} {t}{hint}
                 WHERE {t}.rid = {r}.{row_key} AND {t}.param {keys} AND {t}.target_id {id} AND {t}.target_type = {ty}{pin})"
            )
        }
        _ => filter_sql(b, filter, r, single_type),
    }
}

/// `SELECT rid …` of the index rows of `keys` meeting any of `conditions`.
fn param_rids<D: Dialect>(b: &mut Builder<'_, D>, keys: &[i64], kind: ParamKind, conditions: &[Condition]) -> String {
    let t = b.alias("t");
    let keys = b.bind_keys(keys);
    let seek = if b.dialect.seeks_reference_ids() { reference_seek(b, conditions, &t) } else { String::new() };
    let ors: Vec<String> = conditions.iter().map(|c| condition_sql(b, c, &t)).collect();
    let (table, pin) = (b.table(table(kind)), b.pinned(&t));
    format!("SELECT {t}.rid FROM {table} {t} WHERE {t}.param {keys}{seek} AND ({}){pin}", any_sql(&ors))
}

/// For several references by id (`target=Observation/1,Observation/2,…`): ` AND t.target_id
/// IN (…)`, so that the ids are sought in the `(param, target_id, …)` index (see
/// [`Dialect::seeks_reference_ids`]). The pairs still decide; this only narrows.
fn reference_seek<D: Dialect>(b: &mut Builder<'_, D>, conditions: &[Condition], t: &str) -> String {
    let ids: Option<Vec<String>> = conditions
        .iter()
        .map(|c| match c {
            Condition::Reference { id, .. } => Some(id.clone()),
            _ => None,
        })
        .collect();
    match ids {
        Some(ids) if ids.len() > 1 => format!(" AND {t}.target_id IN ({})", b.bind_list(&ids)),
        _ => String::new(),
    }
}

/// `= $n` for one id, `IN ($n, …)` for several.
fn target_ids<D: Dialect>(b: &mut Builder<'_, D>, ids: &[String]) -> String {
    match ids {
        [one] => format!("= {}", b.bind(one.as_str())),
        _ => format!("IN ({})", b.bind_list(ids)),
    }
}

/// `SELECT rid …` of the resources in the compartment of `target_type/id` for one of `ids`.
fn compartment_rids<D: Dialect>(b: &mut Builder<'_, D>, keys: &[i64], target_type: &str, ids: &[String]) -> String {
    let t = b.alias("t");
    let keys = b.bind_keys(keys);
    let ty = b.bind(target_type);
    let id = target_ids(b, ids);
    let (table, pin) = (b.table("search_reference"), b.pinned(&t));
    format!(
        "SELECT {t}.rid FROM {table} {t} WHERE {t}.param {keys} AND {t}.target_id {id} AND {t}.target_type = {ty}{pin}"
    )
}

/// SQL for one filter on row alias `r` (`single_type`: the type of `r` when known).
fn filter_sql<D: Dialect>(b: &mut Builder<'_, D>, filter: &Filter, r: &str, single_type: Option<&str>) -> String {
    let row_key = D::ROW_KEY;
    match filter {
        Filter::Nothing => D::FALSE.into(),
        Filter::Is { resource_type, id } => {
            format!("({r}.resource_type = {} AND {r}.id = {})", b.bind(resource_type.as_str()), b.bind(id.as_str()))
        }
        Filter::AnyOf(filters) => {
            let ors: Vec<String> = filters.iter().map(|f| filter_sql(b, f, r, single_type)).collect();
            format!("({})", any_sql(&ors))
        }
        Filter::AllOf(filters) => {
            let ands: Vec<String> = filters.iter().map(|f| filter_sql(b, f, r, single_type)).collect();
            if ands.is_empty() { D::TRUE.into() } else { format!("({})", ands.join(" AND ")) }
        }
        Filter::OfType(types) => {
            if types.is_empty() {
                return D::FALSE.into();
            }
            format!("{r}.resource_type IN ({})", b.bind_list(types))
        }
        Filter::Id(ids) => format!("{r}.id IN ({})", b.bind_list(ids)),
        Filter::LastUpdated(conditions) => {
            let col = format!("{r}.last_updated");
            let ors: Vec<String> = conditions
                .iter()
                .map(|(prefix, range)| date_condition(b, &col, &col, *prefix, range.low, range.high))
                .collect();
            format!("({})", any_sql(&ors))
        }
        Filter::Param { kind: ParamKind::Composite, conditions, .. } => {
            let ors: Vec<String> = conditions
                .iter()
                .map(|c| match c {
                    Condition::Composite(parts) => format!("{r}.{row_key} IN ({})", composite_rids(b, parts)),
                    _ => D::FALSE.into(),
                })
                .collect();
            format!("({})", any_sql(&ors))
        }
        Filter::Param { keys, kind, conditions } => {
            format!("{r}.{row_key} IN ({})", param_rids(b, keys, *kind, conditions))
        }
        Filter::Not { keys, kind, conditions } => {
            let t = b.alias("t");
            let keys = b.bind_keys(keys);
            let ors: Vec<String> = conditions.iter().map(|c| condition_sql(b, c, &t)).collect();
            let (table, pin) = (b.table(table(*kind)), b.pinned(&t));
            format!(
                "{r}.{row_key} NOT IN (SELECT {t}.rid FROM {table} {t} WHERE {t}.param {keys} AND ({}){pin})",
                any_sql(&ors)
            )
        }
        Filter::Missing { keys, kind, missing } => {
            let t = b.alias("t");
            let table = b.table(if *kind == ParamKind::Composite { "search_token" } else { table(*kind) });
            let keys = b.bind_keys(keys);
            let not = if *missing { "NOT " } else { "" };
            let pin = b.pinned(&t);
            format!("{not}EXISTS (SELECT 1 FROM {table} {t} WHERE {t}.rid = {r}.{row_key} AND {t}.param {keys}{pin})")
        }
        Filter::Chain { keys, target_type, inner } => chain_sql(b, r, keys, target_type, inner),
        Filter::Has { source_type, key, inner } => has_sql(b, r, single_type, source_type, *key, inner),
        Filter::Text { content, query } => {
            let rows = b.dialect.text_rows(&mut b.params, &b.scope, *content, query);
            format!("{r}.{row_key} IN ({rows})")
        }
        Filter::List(ids) => {
            let t = b.alias("t");
            let l = b.alias("l");
            let list = b.bind_list(ids);
            let key = b.bind(search::param_key("List", "item"));
            let lists = b.dialect.scope_of(&["List".to_string()]);
            let (references, current) = b.within(lists, |b| (b.table("search_reference"), b.table("resource_current")));
            let live = b.dialect.live(&l);
            format!(
                "EXISTS (SELECT 1 FROM {references} {t} JOIN {current} {l} ON {l}.{row_key} = {t}.rid
                 WHERE {l}.resource_type = 'List' AND {l}.id IN ({list}) AND {live} AND {t}.param = {key}
                   AND {t}.target_type = {r}.resource_type AND {t}.target_id = {r}.id)"
            )
        }
        Filter::Compartment { keys, target_type, ids } => {
            if keys.is_empty() || ids.is_empty() {
                return D::FALSE.into();
            }
            format!("{r}.{row_key} IN ({})", compartment_rids(b, keys, target_type, ids))
        }
    }
}

/// A chain on row `r`: a reference of `keys` to a `target_type` resource matching `inner`.
fn chain_sql<D: Dialect>(b: &mut Builder<'_, D>, r: &str, keys: &[i64], target_type: &str, inner: &Filter) -> String {
    let row_key = D::ROW_KEY;
    let t = b.alias("t");
    let c = b.alias("c");
    let keys = b.bind_keys(keys);
    let ty = b.bind(target_type);
    let (references, pin) = (b.table("search_reference"), b.pinned(&t));
    let targets = b.dialect.scope_of(&[target_type.to_string()]);
    let (inner, current) =
        b.within(targets, |b| (filter_sql(b, inner, &c, Some(target_type)), b.table("resource_current")));
    let live = b.dialect.live(&c);
    format!(
        "{r}.{row_key} IN (SELECT {t}.rid FROM {references} {t} JOIN {current} {c}
            ON {c}.resource_type = {t}.target_type AND {c}.id = {t}.target_id
         WHERE {t}.param {keys} AND {t}.target_type = {ty} AND {live} AND {inner}{pin})"
    )
}

/// `_has` on row `r`: a `source_type` resource matching `inner` refers to it through `key`.
fn has_sql<D: Dialect>(
    b: &mut Builder<'_, D>,
    r: &str,
    single_type: Option<&str>,
    source_type: &str,
    key: i64,
    inner: &Filter,
) -> String {
    let row_key = D::ROW_KEY;
    let t = b.alias("t");
    let c = b.alias("c");
    let key = b.bind(key);
    let source = b.bind(source_type);
    let sources = b.dialect.scope_of(&[source_type.to_string()]);
    let (inner, references, current) = b.within(sources, |b| {
        (filter_sql(b, inner, &c, Some(source_type)), b.table("search_reference"), b.table("resource_current"))
    });
    let target_type = match single_type {
        Some(ty) => b.bind(ty),
        None => format!("{r}.resource_type"),
    };
    let live = b.dialect.live(&c);
    format!(
        "{r}.id IN (SELECT {t}.target_id FROM {references} {t} JOIN {current} {c} ON {c}.{row_key} = {t}.rid
         WHERE {t}.param = {key} AND {t}.target_type = {target_type} AND {c}.resource_type = {source}
           AND {live} AND {inner})"
    )
}
