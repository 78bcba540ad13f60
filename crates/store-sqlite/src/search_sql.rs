//! A [`SearchQuery`] turned into SQL over `resource_current` (alias `r`) and the index tables.
//! Every value is a bound parameter; only table and column names, chosen here, are spliced.

use crate::storage;
use rusqlite::types::Value as Sql;
use rusqlite::{Connection, params_from_iter};
use search::ParamKind;
use search::query::{Condition, Contained, Filter, Include, Prefix, SearchQuery, SortKey, StringMatch, UriMatch};
use store::Result;

/// SQL text and its bound values, built together.
#[derive(Default)]
struct Builder {
    values: Vec<Sql>,
    aliases: usize,
}

impl Builder {
    /// A placeholder for `value`.
    fn bind(&mut self, value: impl Into<Sql>) -> String {
        self.values.push(value.into());
        format!("?{}", self.values.len())
    }

    fn bind_keys(&mut self, keys: &[i64]) -> String {
        if keys.len() == 1 {
            return format!("= {}", self.bind(keys[0]));
        }
        let list: Vec<String> = keys.iter().map(|k| self.bind(*k)).collect();
        format!("IN ({})", list.join(", "))
    }

    fn alias(&mut self, prefix: &str) -> String {
        self.aliases += 1;
        format!("{prefix}{}", self.aliases)
    }
}

/// The index table of a parameter kind.
fn table(kind: ParamKind) -> &'static str {
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

/// The upper bound of the strings that start with `prefix` (for index range scans).
fn prefix_end(prefix: &str) -> String {
    format!("{prefix}\u{10FFFF}")
}

fn like_escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}

/// The `WHERE` of the resource rows a search matches, for the row alias `r`.
fn where_clause(b: &mut Builder, query: &SearchQuery, r: &str) -> String {
    // Containers are of any type: what is searched is what they contain.
    if query.contained == Contained::Only {
        let mut parts = vec![format!("{r}.deleted = 0")];
        for filter in &query.filters {
            parts.push(filter_sql(b, filter, r, None));
        }
        return parts.join(" AND ");
    }
    let own = typed_clause(b, query, r);
    if query.contained == Contained::Both {
        let inner: Vec<String> = query.contained_filters.iter().map(|f| filter_sql(b, f, r, None)).collect();
        return format!("{r}.deleted = 0 AND (({own}) OR ({}))", inner.join(" AND "));
    }
    format!("{r}.deleted = 0 AND {own}")
}

/// The type constraint and filters of a search on the searched types themselves.
fn typed_clause(b: &mut Builder, query: &SearchQuery, r: &str) -> String {
    let mut parts = vec!["1".to_string()];
    match query.types.as_slice() {
        [] => {}
        [one] => parts.push(format!("{r}.resource_type = {}", b.bind(one.clone()))),
        many => {
            let list: Vec<String> = many.iter().map(|t| b.bind(t.clone())).collect();
            parts.push(format!("{r}.resource_type IN ({})", list.join(", ")));
        }
    }
    let single_type = query.types.first().map(String::as_str);
    let only_type = if query.types.len() == 1 { single_type } else { None };
    // The most selective filter drives the search: its matches are listed once through an
    // index and every other filter is checked per row through the `rid` indexes. Listing
    // each filter's matches (`rowid IN (…)` for all of them) would make
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
            Some(rids) => format!("{r}.rowid IN ({rids})"),
            None => check_sql(b, filter, r, single_type),
        };
        parts.push(sql);
    }
    parts.join(" AND ")
}

/// How few rows a filter is expected to match, fewest first; `None` for filters that are
/// only checked per row.
fn selectivity(filter: &Filter, only_type: Option<&str>) -> Option<u8> {
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
fn rid_set(b: &mut Builder, filter: &Filter, only_type: Option<&str>) -> Option<String> {
    match filter {
        Filter::Is { resource_type, id } => Some(format!(
            "SELECT rowid FROM resource_current WHERE resource_type = {} AND id = {}",
            b.bind(resource_type.clone()),
            b.bind(id.clone())
        )),
        Filter::Id(ids) => {
            let ty = b.bind(only_type?.to_string());
            let list: Vec<String> = ids.iter().map(|id| b.bind(id.clone())).collect();
            Some(format!(
                "SELECT rowid FROM resource_current WHERE resource_type = {ty} AND id IN ({})",
                list.join(", ")
            ))
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

/// SQL checking one non-driving filter on row `r`: index rows are looked up by `rid` (the
/// `INDEXED BY` keeps SQLite from scanning a parameter's whole value index instead).
fn check_sql(b: &mut Builder, filter: &Filter, r: &str, single_type: Option<&str>) -> String {
    match filter {
        Filter::Param { keys, kind, conditions } if *kind != ParamKind::Composite => {
            let t = b.alias("t");
            let table = table(*kind);
            let keys = b.bind_keys(keys);
            let ors: Vec<String> = conditions.iter().map(|c| condition_sql(b, c, &t)).collect();
            format!(
                "EXISTS (SELECT 1 FROM {table} {t} INDEXED BY {table}_rid
                 WHERE {t}.rid = {r}.rowid AND {t}.param {keys} AND ({}))",
                any_sql(&ors)
            )
        }
        Filter::Compartment { keys, target_type, ids } if !keys.is_empty() && !ids.is_empty() => {
            let t = b.alias("t");
            let keys = b.bind_keys(keys);
            let ty = b.bind(target_type.clone());
            let id = target_ids(b, ids);
            format!(
                "EXISTS (SELECT 1 FROM search_reference {t} INDEXED BY search_reference_rid
                 WHERE {t}.rid = {r}.rowid AND {t}.param {keys} AND {t}.target_id {id} AND {t}.target_type = {ty})"
            )
        }
        _ => filter_sql(b, filter, r, single_type),
    }
}

/// Alternatives joined with `OR`. SQLite parses `a OR b OR c …` into a tree as deep as the
/// list is long, and refuses trees deeper than 1,000; long lists (a reach of a thousand
/// organizations, `code=` with many values) are nested in parenthesized groups instead, so
/// the depth grows with the logarithm of the length.
fn any_sql(ors: &[String]) -> String {
    const GROUP: usize = 64;
    if ors.len() <= GROUP {
        return ors.join(" OR ");
    }
    let groups: Vec<String> = ors.chunks(GROUP).map(|chunk| format!("({})", any_sql(chunk))).collect();
    any_sql(&groups)
}

/// `SELECT rid …` of the index rows of `keys` meeting any of `conditions`.
fn param_rids(b: &mut Builder, keys: &[i64], kind: ParamKind, conditions: &[Condition]) -> String {
    let t = b.alias("t");
    let keys = b.bind_keys(keys);
    let seek = reference_seek(b, conditions, &t);
    let ors: Vec<String> = conditions.iter().map(|c| condition_sql(b, c, &t)).collect();
    format!("SELECT {t}.rid FROM {} {t} WHERE {t}.param {keys}{seek} AND ({})", table(kind), any_sql(&ors))
}

/// For several references by id (`target=Observation/1,Observation/2,…`): ` AND t.target_id
/// IN (…)`, so that SQLite seeks each id in the `(param, target_id, …)` index; with an `OR`
/// of pairs alone it scans every index row of the parameter (all of a Provenance.target's
/// rows, say) and tests each against every pair. The pairs still decide; this only narrows.
fn reference_seek(b: &mut Builder, conditions: &[Condition], t: &str) -> String {
    let ids: Option<Vec<&String>> = conditions
        .iter()
        .map(|c| match c {
            Condition::Reference { id, .. } => Some(id),
            _ => None,
        })
        .collect();
    match ids {
        Some(ids) if ids.len() > 1 => {
            let list: Vec<String> = ids.into_iter().map(|id| b.bind(id.clone())).collect();
            format!(" AND {t}.target_id IN ({})", list.join(", "))
        }
        _ => String::new(),
    }
}

/// `SELECT rid …` of the resources in the compartment of `target_type/id`.
/// `= $n` for one id, `IN ($n, …)` for several.
fn target_ids(b: &mut Builder, ids: &[String]) -> String {
    match ids {
        [one] => format!("= {}", b.bind(one.clone())),
        _ => {
            let list: Vec<String> = ids.iter().map(|id| b.bind(id.clone())).collect();
            format!("IN ({})", list.join(", "))
        }
    }
}

fn compartment_rids(b: &mut Builder, keys: &[i64], target_type: &str, ids: &[String]) -> String {
    let t = b.alias("t");
    let keys = b.bind_keys(keys);
    let ty = b.bind(target_type.to_string());
    let id = target_ids(b, ids);
    format!(
        "SELECT {t}.rid FROM search_reference {t} WHERE {t}.param {keys} AND {t}.target_id {id} AND {t}.target_type = {ty}"
    )
}

/// SQL for one filter on row alias `r` (`single_type`: the type of `r` when known).
fn filter_sql(b: &mut Builder, filter: &Filter, r: &str, single_type: Option<&str>) -> String {
    match filter {
        Filter::Nothing => "0".into(),
        Filter::Is { resource_type, id } => {
            format!("({r}.resource_type = {} AND {r}.id = {})", b.bind(resource_type.clone()), b.bind(id.clone()))
        }
        Filter::AnyOf(filters) => {
            let ors: Vec<String> = filters.iter().map(|f| filter_sql(b, f, r, single_type)).collect();
            format!("({})", any_sql(&ors))
        }
        Filter::AllOf(filters) => {
            let ands: Vec<String> = filters.iter().map(|f| filter_sql(b, f, r, single_type)).collect();
            if ands.is_empty() { "1".into() } else { format!("({})", ands.join(" AND ")) }
        }
        Filter::OfType(types) => {
            if types.is_empty() {
                return "0".into();
            }
            let list: Vec<String> = types.iter().map(|t| b.bind(t.clone())).collect();
            format!("{r}.resource_type IN ({})", list.join(", "))
        }
        Filter::Id(ids) => {
            let list: Vec<String> = ids.iter().map(|id| b.bind(id.clone())).collect();
            format!("{r}.id IN ({})", list.join(", "))
        }
        Filter::LastUpdated(conditions) => {
            let ors: Vec<String> = conditions
                .iter()
                .map(|(prefix, range)| {
                    let col = format!("{r}.last_updated");
                    date_condition(b, &col, &col, *prefix, range.low, range.high)
                })
                .collect();
            format!("({})", any_sql(&ors))
        }
        Filter::Param { kind: ParamKind::Composite, conditions, .. } => {
            let ors: Vec<String> = conditions
                .iter()
                .map(|c| match c {
                    Condition::Composite(parts) => format!("{r}.rowid IN ({})", composite_rids(b, parts)),
                    _ => "0".into(),
                })
                .collect();
            format!("({})", any_sql(&ors))
        }
        Filter::Param { keys, kind, conditions } => {
            format!("{r}.rowid IN ({})", param_rids(b, keys, *kind, conditions))
        }
        Filter::Not { keys, kind, conditions } => {
            let t = b.alias("t");
            let keys = b.bind_keys(keys);
            let ors: Vec<String> = conditions.iter().map(|c| condition_sql(b, c, &t)).collect();
            format!(
                "{r}.rowid NOT IN (SELECT {t}.rid FROM {} {t} WHERE {t}.param {keys} AND ({}))",
                table(*kind),
                any_sql(&ors)
            )
        }
        Filter::Missing { keys, kind, missing } => {
            let t = b.alias("t");
            let table = if *kind == ParamKind::Composite { "search_token" } else { table(*kind) };
            let keys = b.bind_keys(keys);
            let not = if *missing { "NOT " } else { "" };
            format!("{not}EXISTS (SELECT 1 FROM {table} {t} WHERE {t}.rid = {r}.rowid AND {t}.param {keys})")
        }
        Filter::Chain { keys, target_type, inner } => {
            let t = b.alias("t");
            let c = b.alias("c");
            let keys = b.bind_keys(keys);
            let ty = b.bind(target_type.clone());
            let inner = filter_sql(b, inner, &c, Some(target_type));
            format!(
                "{r}.rowid IN (SELECT {t}.rid FROM search_reference {t} JOIN resource_current {c}
                    ON {c}.resource_type = {t}.target_type AND {c}.id = {t}.target_id
                 WHERE {t}.param {keys} AND {t}.target_type = {ty} AND {c}.deleted = 0 AND {inner})"
            )
        }
        Filter::Has { source_type, key, inner } => {
            let t = b.alias("t");
            let c = b.alias("c");
            let key = b.bind(*key);
            let source = b.bind(source_type.clone());
            let inner = filter_sql(b, inner, &c, Some(source_type));
            let target_type = match single_type {
                Some(ty) => b.bind(ty.to_string()),
                None => format!("{r}.resource_type"),
            };
            format!(
                "{r}.id IN (SELECT {t}.target_id FROM search_reference {t} JOIN resource_current {c} ON {c}.rowid = {t}.rid
                 WHERE {t}.param = {key} AND {t}.target_type = {target_type} AND {c}.resource_type = {source}
                   AND {c}.deleted = 0 AND {inner})"
            )
        }
        Filter::Text { content, query } => {
            let column = if *content { "content" } else { "narrative" };
            let m = b.bind(format!("{{{column}}} : ({})", fts_query(query)));
            format!("{r}.rowid IN (SELECT rowid FROM search_text WHERE search_text MATCH {m})")
        }
        Filter::List(ids) => {
            let t = b.alias("t");
            let l = b.alias("l");
            let list: Vec<String> = ids.iter().map(|id| b.bind(id.clone())).collect();
            let key = b.bind(search::param_key("List", "item"));
            format!(
                "EXISTS (SELECT 1 FROM search_reference {t} JOIN resource_current {l} ON {l}.rowid = {t}.rid
                 WHERE {l}.resource_type = 'List' AND {l}.id IN ({}) AND {l}.deleted = 0 AND {t}.param = {key}
                   AND {t}.target_type = {r}.resource_type AND {t}.target_id = {r}.id)",
                list.join(", ")
            )
        }
        Filter::Compartment { keys, target_type, ids } => {
            if keys.is_empty() || ids.is_empty() {
                return "0".into();
            }
            format!("{r}.rowid IN ({})", compartment_rids(b, keys, target_type, ids))
        }
    }
}

/// A full-text query from user text: each word quoted (so FTS5 syntax in the input is
/// literal) and matched as a prefix of a token, all words required.
fn fts_query(text: &str) -> String {
    let words: Vec<String> = text.split_whitespace().map(|w| format!("\"{}\"", w.replace('"', "\"\""))).collect();
    if words.is_empty() { "\"\"".into() } else { words.join(" AND ") }
}

/// SQL comparing a stored range `[low_col, high_col]` with a search range per `prefix`.
fn date_condition(b: &mut Builder, low: &str, high: &str, prefix: Prefix, s_low: i64, s_high: i64) -> String {
    let (sl, sh) = (b.bind(s_low), b.bind(s_high));
    match prefix {
        Prefix::Eq => format!("({low} >= {sl} AND {high} <= {sh})"),
        Prefix::Ne => format!("({low} < {sl} OR {high} > {sh})"),
        Prefix::Gt => format!("{high} > {sh}"),
        Prefix::Lt => format!("{low} < {sl}"),
        Prefix::Ge => format!("({high} > {sh} OR ({low} >= {sl} AND {high} <= {sh}))"),
        Prefix::Le => format!("({low} < {sl} OR ({low} >= {sl} AND {high} <= {sh}))"),
        Prefix::Sa => format!("{low} > {sh}"),
        Prefix::Eb => format!("{high} < {sl}"),
        Prefix::Ap => {
            // 10% of the distance from now, at least a day.
            let now = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000) as i64;
            let margin = ((now - s_low).abs() / 10).max(86_400_000_000);
            let (al, ah) = (b.bind(s_low.saturating_sub(margin)), b.bind(s_high.saturating_add(margin)));
            format!("({low} <= {ah} AND {high} >= {al})")
        }
    }
}

/// SQL comparing a stored number column with a search value and its precision range.
fn number_condition(b: &mut Builder, col: &str, prefix: Prefix, value: f64, low: f64, high: f64) -> String {
    match prefix {
        Prefix::Eq => format!("({col} >= {} AND {col} < {})", b.bind(low), b.bind(high)),
        Prefix::Ne => format!("({col} < {} OR {col} >= {})", b.bind(low), b.bind(high)),
        Prefix::Gt | Prefix::Sa => format!("{col} > {}", b.bind(value)),
        Prefix::Lt | Prefix::Eb => format!("{col} < {}", b.bind(value)),
        Prefix::Ge => format!("{col} >= {}", b.bind(value)),
        Prefix::Le => format!("{col} <= {}", b.bind(value)),
        Prefix::Ap => {
            let margin = (value * 0.1).abs().max(high - low);
            format!("({col} >= {} AND {col} <= {})", b.bind(value - margin), b.bind(value + margin))
        }
    }
}

/// SQL for one condition on index row alias `t` of a `kind` table.
fn condition_sql(b: &mut Builder, condition: &Condition, t: &str) -> String {
    match condition {
        Condition::String { value, mode } => match mode {
            StringMatch::Start => {
                format!(
                    "({t}.normalized >= {} AND {t}.normalized < {})",
                    b.bind(value.clone()),
                    b.bind(prefix_end(value))
                )
            }
            StringMatch::Exact => format!("{t}.exact = {}", b.bind(value.clone())),
            StringMatch::Contains => {
                format!("{t}.normalized LIKE {} ESCAPE '\\'", b.bind(format!("%{}%", like_escape(value))))
            }
        },
        Condition::Token { system, code } => {
            let mut parts = Vec::new();
            if let Some(code) = code {
                parts.push(format!("{t}.code = {}", b.bind(code.clone())));
            }
            match system {
                None => {}
                Some(None) => parts.push(format!("{t}.system IS NULL")),
                Some(Some(s)) => parts.push(format!("{t}.system = {}", b.bind(s.clone()))),
            }
            if parts.is_empty() { "1".into() } else { format!("({})", parts.join(" AND ")) }
        }
        Condition::TokenIn { system, codes } => {
            let list: Vec<String> = codes.iter().map(|c| b.bind(c.clone())).collect();
            // A `code` element carries no system of its own: its binding's is implied.
            format!(
                "({t}.code IN ({}) AND ({t}.system = {} OR {t}.system IS NULL))",
                list.join(", "),
                b.bind(system.clone())
            )
        }
        Condition::TokenText(text) => {
            format!("({t}.text >= {} AND {t}.text < {})", b.bind(text.clone()), b.bind(prefix_end(text)))
        }
        Condition::Reference { target_type, id, version } => {
            let mut parts = vec![format!("{t}.target_id = {}", b.bind(id.clone()))];
            if let Some(ty) = target_type {
                parts.push(format!("{t}.target_type = {}", b.bind(ty.clone())));
            }
            if let Some(v) = version {
                parts.push(format!("{t}.version = {}", b.bind(v.clone())));
            }
            format!("({})", parts.join(" AND "))
        }
        Condition::ReferenceUrl(url) => {
            // Canonical references may carry `|version`: match the URL with or without it.
            let (u, with_version) = (b.bind(url.clone()), b.bind(format!("{}|%", like_escape(url))));
            format!("({t}.url = {u} OR {t}.url LIKE {with_version} ESCAPE '\\')")
        }
        Condition::ReferenceIdentifier { system, value } => {
            let mut parts = vec![format!("{t}.id_value = {}", b.bind(value.clone()))];
            match system {
                None => {}
                Some(None) => parts.push(format!("{t}.id_system IS NULL")),
                Some(Some(s)) => parts.push(format!("{t}.id_system = {}", b.bind(s.clone()))),
            }
            format!("({})", parts.join(" AND "))
        }
        Condition::Date { prefix, range } => {
            date_condition(b, &format!("{t}.low"), &format!("{t}.high"), *prefix, range.low, range.high)
        }
        Condition::Number { prefix, range } => {
            number_condition(b, &format!("{t}.value"), *prefix, range.value, range.low, range.high)
        }
        Condition::Quantity { prefix, range, system, code, canonical } => {
            if let Some((unit, n)) = canonical {
                let unit = b.bind(unit.clone());
                let cond = number_condition(b, &format!("{t}.canonical_value"), *prefix, n.value, n.low, n.high);
                return format!("({t}.canonical_code = {unit} AND {cond})");
            }
            let mut parts =
                vec![number_condition(b, &format!("{t}.value"), *prefix, range.value, range.low, range.high)];
            if let Some(code) = code {
                let c = b.bind(code.clone());
                parts.push(format!("({t}.code = {c} OR ({t}.code IS NULL AND {t}.unit = {c}))"));
            }
            if let Some(system) = system {
                parts.push(format!("{t}.system = {}", b.bind(system.clone())));
            }
            format!("({})", parts.join(" AND "))
        }
        Condition::Uri { value, mode } => match mode {
            UriMatch::Exact => format!("{t}.uri = {}", b.bind(value.clone())),
            UriMatch::Below => {
                format!("({t}.uri >= {} AND {t}.uri < {})", b.bind(value.clone()), b.bind(prefix_end(value)))
            }
            UriMatch::Above => format!("substr({}, 1, length({t}.uri)) = {t}.uri", b.bind(value.clone())),
        },
        // Composites are matched by `composite_rids`, never per index row.
        Condition::Composite(_) => "0".into(),
    }
}

/// `SELECT rid …` of the resources with one composite value whose components match `parts`
/// (rows of one rid and one grp).
fn composite_rids(b: &mut Builder, parts: &[(i64, ParamKind, Condition)]) -> String {
    let first = b.alias("k");
    let mut sql = String::new();
    let mut joins = Vec::new();
    let mut conds = Vec::new();
    for (i, (key, part_kind, part)) in parts.iter().enumerate() {
        let a = if i == 0 { first.clone() } else { b.alias("k") };
        conds.push(format!("{a}.param = {}", b.bind(*key)));
        conds.push(condition_sql(b, part, &a));
        if i == 0 {
            sql = format!("SELECT {a}.rid FROM {} {a}", table(*part_kind));
        } else {
            joins.push(format!(" JOIN {} {a} ON {a}.rid = {first}.rid AND {a}.grp = {first}.grp", table(*part_kind)));
        }
    }
    format!("{sql}{} WHERE {}", joins.concat(), conds.join(" AND "))
}

/// `ORDER BY` of a search.
fn order_by(b: &mut Builder, sort: &[(SortKey, bool)], r: &str) -> String {
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
                let table = table(*kind);
                // By rid: with `s.param = ?` alone SQLite prefers walking the parameter's whole
                // value index for MIN/MAX, once per sorted row.
                format!(
                    "(SELECT {agg}(s.{col}) FROM {table} s INDEXED BY {table}_rid WHERE s.rid = {r}.rowid AND s.param {params})"
                )
            }
        };
        // Resources without a value sort last either way.
        keys.push(format!("{expr} IS NULL, {expr} {dir}"));
    }
    keys.push(format!("{r}.rowid ASC"));
    keys.join(", ")
}

/// Row keys of the matching resources in result order, at most `limit`.
pub(crate) fn search(conn: &Connection, query: &SearchQuery, limit: usize) -> Result<Vec<i64>> {
    let mut b = Builder::default();
    let filter = where_clause(&mut b, query, "r");
    let order = order_by(&mut b, &query.sort, "r");
    let limit = b.bind(i64::try_from(limit).unwrap_or(i64::MAX));
    let sql = format!("SELECT r.rowid FROM resource_current r WHERE {filter} ORDER BY {order} LIMIT {limit}");
    let mut stmt = conn.prepare_cached(&sql).map_err(storage("search"))?;
    let rows = stmt.query_map(params_from_iter(b.values), |row| row.get(0)).map_err(storage("search"))?;
    rows.collect::<rusqlite::Result<_>>().map_err(storage("search"))
}

/// Ids of the matching resources (all of one type), at most `limit`.
pub(crate) fn search_ids(conn: &Connection, query: &SearchQuery, limit: usize) -> Result<Vec<String>> {
    let mut b = Builder::default();
    let filter = where_clause(&mut b, query, "r");
    let limit = b.bind(i64::try_from(limit).unwrap_or(i64::MAX));
    let sql = format!("SELECT r.id FROM resource_current r WHERE {filter} LIMIT {limit}");
    let mut stmt = conn.prepare_cached(&sql).map_err(storage("search"))?;
    let rows = stmt.query_map(params_from_iter(b.values), |row| row.get(0)).map_err(storage("search"))?;
    rows.collect::<rusqlite::Result<_>>().map_err(storage("search"))
}

/// How many resources match.
pub(crate) fn count(conn: &Connection, query: &SearchQuery) -> Result<u64> {
    let mut b = Builder::default();
    let filter = where_clause(&mut b, query, "r");
    let sql = format!("SELECT COUNT(*) FROM resource_current r WHERE {filter}");
    let mut stmt = conn.prepare_cached(&sql).map_err(storage("search"))?;
    let n: i64 = stmt.query_row(params_from_iter(b.values), |row| row.get(0)).map_err(storage("search"))?;
    Ok(n.max(0) as u64)
}

/// Row keys of the live resources the `keys` resources reference through `include`.
pub(crate) fn include(conn: &Connection, keys: &[i64], include: &Include) -> Result<Vec<i64>> {
    if keys.is_empty() || include.keys.is_empty() {
        return Ok(Vec::new());
    }
    let mut b = Builder::default();
    let rids: Vec<String> = keys.iter().map(|k| b.bind(*k)).collect();
    let params = b.bind_keys(&include.keys);
    // `+t.param`: seek by rid only. `rid = ? AND param = ?` over every pair would be
    // rids × keys seeks — 1,000 × 300 for a `$everything` page.
    let mut sql = format!(
        "SELECT DISTINCT c.rowid FROM search_reference t CROSS JOIN resource_current c
            ON c.resource_type = t.target_type AND c.id = t.target_id
         WHERE t.rid IN ({}) AND +t.param {params} AND c.deleted = 0",
        rids.join(", ")
    );
    if let Some(ty) = &include.target_type {
        sql.push_str(&format!(" AND t.target_type = {}", b.bind(ty.clone())));
    }
    run_keys(conn, &sql, b.values)
}

/// Row keys of the live `include.source_type` resources that reference the `keys` resources.
pub(crate) fn revinclude(conn: &Connection, keys: &[i64], include: &Include) -> Result<Vec<i64>> {
    if keys.is_empty() || include.keys.is_empty() {
        return Ok(Vec::new());
    }
    let mut b = Builder::default();
    let rids: Vec<String> = keys.iter().map(|k| b.bind(*k)).collect();
    let params = b.bind_keys(&include.keys);
    let source = b.bind(include.source_type.clone());
    // CROSS JOIN keeps this order: from the page's rows to what references them. Left to
    // itself SQLite walks every index row of the parameter (all Provenance targets).
    let sql = format!(
        "SELECT DISTINCT s.rowid FROM resource_current m
           CROSS JOIN search_reference t ON t.target_id = m.id AND t.target_type = m.resource_type
           CROSS JOIN resource_current s ON s.rowid = t.rid
         WHERE m.rowid IN ({}) AND t.param {params} AND s.resource_type = {source} AND s.deleted = 0",
        rids.join(", ")
    );
    run_keys(conn, &sql, b.values)
}

fn run_keys(conn: &Connection, sql: &str, values: Vec<Sql>) -> Result<Vec<i64>> {
    let mut stmt = conn.prepare_cached(sql).map_err(storage("include"))?;
    let rows = stmt.query_map(params_from_iter(values), |row| row.get(0)).map_err(storage("include"))?;
    rows.collect::<rusqlite::Result<_>>().map_err(storage("include"))
}
