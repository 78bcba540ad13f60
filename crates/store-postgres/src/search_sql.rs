//! A [`SearchQuery`] turned into SQL over `resource_current` (alias `r`) and the index tables:
//! the SQLite backend's `search_sql.rs` in PostgreSQL's dialect. Every value is a bound
//! parameter with an explicit type; only table and column names, chosen here, are spliced.

use crate::shard::{self, Family};
use crate::{Connection, layout, storage};
use postgres::types::ToSql;
use search::ParamKind;
use search::query::{Condition, Contained, Filter, Include, Prefix, SearchQuery, SortKey, StringMatch, UriMatch};
use store::Result;

/// A bound value.
enum Sql {
    Int(i64),
    Real(f64),
    Text(String),
    Ints(Vec<i64>),
}

impl From<i64> for Sql {
    fn from(v: i64) -> Sql {
        Sql::Int(v)
    }
}

impl From<f64> for Sql {
    fn from(v: f64) -> Sql {
        Sql::Real(v)
    }
}

impl From<String> for Sql {
    fn from(v: String) -> Sql {
        Sql::Text(v)
    }
}

impl Sql {
    fn param(&self) -> &(dyn ToSql + Sync) {
        match self {
            Sql::Int(v) => v,
            Sql::Real(v) => v,
            Sql::Text(v) => v,
            Sql::Ints(v) => v,
        }
    }

    /// The cast that fixes the placeholder's type (PostgreSQL cannot always infer it).
    fn cast(&self) -> &'static str {
        match self {
            Sql::Int(_) => "int8",
            Sql::Real(_) => "float8",
            Sql::Text(_) => "text",
            Sql::Ints(_) => "int8[]",
        }
    }
}

/// SQL text and its bound values, built together.
#[derive(Default)]
struct Builder {
    values: Vec<Sql>,
    aliases: usize,
    /// The family of the rows being matched (`None`: both, through the views).
    family: Option<Family>,
    /// The placeholder of the shard key every matched row has, when the search is pinned to
    /// one patient (see [`crate::shard`]).
    pin: Option<String>,
}

impl Builder {
    /// A placeholder for `value`.
    fn bind(&mut self, value: impl Into<Sql>) -> String {
        let value = value.into();
        let cast = value.cast();
        self.values.push(value);
        format!("${}::{cast}", self.values.len())
    }

    fn bind_keys(&mut self, keys: &[i64]) -> String {
        if keys.len() == 1 {
            return format!("= {}", self.bind(keys[0]));
        }
        format!("= ANY({})", self.bind(Sql::Ints(keys.to_vec())))
    }

    fn alias(&mut self, prefix: &str) -> String {
        self.aliases += 1;
        format!("{prefix}{}", self.aliases)
    }

    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.values.iter().map(Sql::param).collect()
    }

    /// The table of the rows being matched named `base` (its family's, or the view).
    fn table(&self, base: &str) -> String {
        match self.family {
            Some(family) => layout::name(family, base),
            None => base.to_string(),
        }
    }

    /// ` AND {alias}.shard_key = …` when the search is pinned, else `""`.
    fn pinned(&self, alias: &str) -> String {
        match &self.pin {
            Some(pin) => format!(" AND {alias}.shard_key = {pin}"),
            None => String::new(),
        }
    }

    /// Runs `f` for rows of other resources (a chain's targets, `_has` sources) of the
    /// resource types `types`: their own family's tables, not pinned.
    fn other<T>(&mut self, types: &[String], f: impl FnOnce(&mut Builder) -> T) -> T {
        let saved = (self.family, self.pin.take());
        self.family = shard::family_of_all(types);
        let out = f(self);
        (self.family, self.pin) = saved;
        out
    }
}

/// The index table of a parameter kind (its base name: see [`Builder::table`]).
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
        let mut parts = vec![format!("NOT {r}.deleted")];
        for filter in &query.filters {
            parts.push(filter_sql(b, filter, r, None));
        }
        return parts.join(" AND ");
    }
    let own = typed_clause(b, query, r);
    if query.contained == Contained::Both {
        let inner: Vec<String> = query.contained_filters.iter().map(|f| filter_sql(b, f, r, None)).collect();
        return format!("NOT {r}.deleted AND (({own}) OR ({}))", inner.join(" AND "));
    }
    format!("NOT {r}.deleted AND {own}")
}

/// The type constraint and filters of a search on the searched types themselves.
fn typed_clause(b: &mut Builder, query: &SearchQuery, r: &str) -> String {
    let mut parts = vec!["TRUE".to_string()];
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
            Some(rids) => format!("{r}.rid IN ({rids})"),
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
        Filter::Is { resource_type, id } => {
            let table = layout::name(shard::family(resource_type), "resource_current");
            let (ty, id_value) = (b.bind(resource_type.clone()), b.bind(id.clone()));
            let pin = if resource_type == "Patient" { format!(" AND shard_key = {id_value}") } else { String::new() };
            Some(format!("SELECT rid FROM {table} WHERE resource_type = {ty} AND id = {id_value}{pin}"))
        }
        Filter::Id(ids) => {
            let ty = b.bind(only_type?.to_string());
            let list: Vec<String> = ids.iter().map(|id| b.bind(id.clone())).collect();
            let (table, pin) = (b.table("resource_current"), b.pinned("x"));
            Some(format!(
                "SELECT x.rid FROM {table} x WHERE x.resource_type = {ty} AND x.id IN ({}){pin}",
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

/// SQL checking one non-driving filter on row `r`: index rows are looked up by `rid`.
fn check_sql(b: &mut Builder, filter: &Filter, r: &str, single_type: Option<&str>) -> String {
    match filter {
        Filter::Param { keys, kind, conditions } if *kind != ParamKind::Composite => {
            let t = b.alias("t");
            let table = b.table(table(*kind));
            let keys = b.bind_keys(keys);
            let ors: Vec<String> = conditions.iter().map(|c| condition_sql(b, c, &t)).collect();
            let pin = b.pinned(&t);
            format!(
                "EXISTS (SELECT 1 FROM {table} {t}
                 WHERE {t}.rid = {r}.rid AND {t}.param {keys} AND ({}){pin})",
                ors.join(" OR ")
            )
        }
        Filter::Compartment { keys, target_type, ids } if !keys.is_empty() && !ids.is_empty() => {
            let t = b.alias("t");
            let keys = b.bind_keys(keys);
            let ty = b.bind(target_type.clone());
            let id = target_ids(b, ids);
            let (table, pin) = (b.table("search_reference"), b.pinned(&t));
            format!(
                "EXISTS (SELECT 1 FROM {table} {t}
                 WHERE {t}.rid = {r}.rid AND {t}.param {keys} AND {t}.target_id {id} AND {t}.target_type = {ty}{pin})"
            )
        }
        _ => filter_sql(b, filter, r, single_type),
    }
}

/// `SELECT rid …` of the index rows of `keys` meeting any of `conditions`.
fn param_rids(b: &mut Builder, keys: &[i64], kind: ParamKind, conditions: &[Condition]) -> String {
    let t = b.alias("t");
    let keys = b.bind_keys(keys);
    let ors: Vec<String> = conditions.iter().map(|c| condition_sql(b, c, &t)).collect();
    let (table, pin) = (b.table(table(kind)), b.pinned(&t));
    format!("SELECT {t}.rid FROM {table} {t} WHERE {t}.param {keys} AND ({}){pin}", ors.join(" OR "))
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
    let (table, pin) = (b.table("search_reference"), b.pinned(&t));
    format!(
        "SELECT {t}.rid FROM {table} {t} WHERE {t}.param {keys} AND {t}.target_id {id} AND {t}.target_type = {ty}{pin}"
    )
}

/// SQL for one filter on row alias `r` (`single_type`: the type of `r` when known).
fn filter_sql(b: &mut Builder, filter: &Filter, r: &str, single_type: Option<&str>) -> String {
    match filter {
        Filter::Nothing => "FALSE".into(),
        Filter::Is { resource_type, id } => {
            format!("({r}.resource_type = {} AND {r}.id = {})", b.bind(resource_type.clone()), b.bind(id.clone()))
        }
        Filter::AnyOf(filters) => {
            let ors: Vec<String> = filters.iter().map(|f| filter_sql(b, f, r, single_type)).collect();
            format!("({})", ors.join(" OR "))
        }
        Filter::AllOf(filters) => {
            let ands: Vec<String> = filters.iter().map(|f| filter_sql(b, f, r, single_type)).collect();
            if ands.is_empty() { "TRUE".into() } else { format!("({})", ands.join(" AND ")) }
        }
        Filter::OfType(types) => {
            if types.is_empty() {
                return "FALSE".into();
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
            format!("({})", ors.join(" OR "))
        }
        Filter::Param { kind: ParamKind::Composite, conditions, .. } => {
            let ors: Vec<String> = conditions
                .iter()
                .map(|c| match c {
                    Condition::Composite(parts) => format!("{r}.rid IN ({})", composite_rids(b, parts)),
                    _ => "FALSE".into(),
                })
                .collect();
            format!("({})", ors.join(" OR "))
        }
        Filter::Param { keys, kind, conditions } => {
            format!("{r}.rid IN ({})", param_rids(b, keys, *kind, conditions))
        }
        Filter::Not { keys, kind, conditions } => {
            let t = b.alias("t");
            let keys = b.bind_keys(keys);
            let ors: Vec<String> = conditions.iter().map(|c| condition_sql(b, c, &t)).collect();
            let (table, pin) = (b.table(table(*kind)), b.pinned(&t));
            format!(
                "{r}.rid NOT IN (SELECT {t}.rid FROM {table} {t} WHERE {t}.param {keys} AND ({}){pin})",
                ors.join(" OR ")
            )
        }
        Filter::Missing { keys, kind, missing } => {
            let t = b.alias("t");
            let table = b.table(if *kind == ParamKind::Composite { "search_token" } else { table(*kind) });
            let keys = b.bind_keys(keys);
            let not = if *missing { "NOT " } else { "" };
            let pin = b.pinned(&t);
            format!("{not}EXISTS (SELECT 1 FROM {table} {t} WHERE {t}.rid = {r}.rid AND {t}.param {keys}{pin})")
        }
        Filter::Chain { keys, target_type, inner } => {
            let t = b.alias("t");
            let c = b.alias("c");
            let keys = b.bind_keys(keys);
            let ty = b.bind(target_type.clone());
            let (references, pin) = (b.table("search_reference"), b.pinned(&t));
            let targets = std::slice::from_ref(target_type);
            let (inner, current) =
                b.other(targets, |b| (filter_sql(b, inner, &c, Some(target_type)), b.table("resource_current")));
            format!(
                "{r}.rid IN (SELECT {t}.rid FROM {references} {t} JOIN {current} {c}
                    ON {c}.resource_type = {t}.target_type AND {c}.id = {t}.target_id
                 WHERE {t}.param {keys} AND {t}.target_type = {ty} AND NOT {c}.deleted AND {inner}{pin})"
            )
        }
        Filter::Has { source_type, key, inner } => {
            let t = b.alias("t");
            let c = b.alias("c");
            let key = b.bind(*key);
            let source = b.bind(source_type.clone());
            let sources = std::slice::from_ref(source_type);
            let (inner, references, current) = b.other(sources, |b| {
                (filter_sql(b, inner, &c, Some(source_type)), b.table("search_reference"), b.table("resource_current"))
            });
            let target_type = match single_type {
                Some(ty) => b.bind(ty.to_string()),
                None => format!("{r}.resource_type"),
            };
            format!(
                "{r}.id IN (SELECT {t}.target_id FROM {references} {t} JOIN {current} {c} ON {c}.rid = {t}.rid
                 WHERE {t}.param = {key} AND {t}.target_type = {target_type} AND {c}.resource_type = {source}
                   AND NOT {c}.deleted AND {inner})"
            )
        }
        Filter::Text { content, query } => {
            let column = if *content { "content" } else { "narrative" };
            let m = b.bind(crate::index_rows::fold(query));
            let (table, pin) = (b.table("search_text"), b.pinned("x"));
            format!("{r}.rid IN (SELECT x.rid FROM {table} x WHERE x.{column} @@ plainto_tsquery('simple', {m}){pin})")
        }
        Filter::List(ids) => {
            let t = b.alias("t");
            let l = b.alias("l");
            let list: Vec<String> = ids.iter().map(|id| b.bind(id.clone())).collect();
            let key = b.bind(search::param_key("List", "item"));
            let family = shard::family("List");
            let (references, current) =
                (layout::name(family, "search_reference"), layout::name(family, "resource_current"));
            format!(
                "EXISTS (SELECT 1 FROM {references} {t} JOIN {current} {l} ON {l}.rid = {t}.rid
                 WHERE {l}.resource_type = 'List' AND {l}.id IN ({}) AND NOT {l}.deleted AND {t}.param = {key}
                   AND {t}.target_type = {r}.resource_type AND {t}.target_id = {r}.id)",
                list.join(", ")
            )
        }
        Filter::Compartment { keys, target_type, ids } => {
            if keys.is_empty() || ids.is_empty() {
                return "FALSE".into();
            }
            format!("{r}.rid IN ({})", compartment_rids(b, keys, target_type, ids))
        }
    }
}

/// SQL comparing a stored range `[low_col, high_col]` with a search range per `prefix`.
fn date_condition(b: &mut Builder, low: &str, high: &str, prefix: Prefix, s_low: i64, s_high: i64) -> String {
    // Only the bounds a prefix uses are bound: PostgreSQL refuses a parameter it cannot type.
    match prefix {
        Prefix::Eq => format!("({low} >= {} AND {high} <= {})", b.bind(s_low), b.bind(s_high)),
        Prefix::Ne => format!("({low} < {} OR {high} > {})", b.bind(s_low), b.bind(s_high)),
        Prefix::Gt => format!("{high} > {}", b.bind(s_high)),
        Prefix::Lt => format!("{low} < {}", b.bind(s_low)),
        Prefix::Ge => {
            let (sl, sh) = (b.bind(s_low), b.bind(s_high));
            format!("({high} > {sh} OR ({low} >= {sl} AND {high} <= {sh}))")
        }
        Prefix::Le => {
            let (sl, sh) = (b.bind(s_low), b.bind(s_high));
            format!("({low} < {sl} OR ({low} >= {sl} AND {high} <= {sh}))")
        }
        Prefix::Sa => format!("{low} > {}", b.bind(s_high)),
        Prefix::Eb => format!("{high} < {}", b.bind(s_low)),
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
            if parts.is_empty() { "TRUE".into() } else { format!("({})", parts.join(" AND ")) }
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
        Condition::Composite(_) => "FALSE".into(),
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
        let table = b.table(table(*part_kind));
        if i == 0 {
            sql = format!("SELECT {a}.rid FROM {table} {a}");
            conds.push(format!("TRUE{}", b.pinned(&a)));
        } else {
            joins.push(format!(" JOIN {table} {a} ON {a}.rid = {first}.rid AND {a}.grp = {first}.grp"));
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
                let (table, pin) = (b.table(table(*kind)), b.pinned("s"));
                // By rid: with the parameter alone a planner may walk its whole
                // value index for MIN/MAX, once per sorted row.
                format!("(SELECT {agg}(s.{col}) FROM {table} s WHERE s.rid = {r}.rid AND s.param {params}{pin})")
            }
        };
        // Resources without a value sort last either way.
        keys.push(format!("{expr} IS NULL, {expr} {dir}"));
    }
    keys.push(format!("{r}.rid ASC"));
    keys.join(", ")
}

/// Row keys of the matching resources in result order, at most `limit`.
pub(crate) fn search(conn: &mut Connection, query: &SearchQuery, limit: usize) -> Result<Vec<i64>> {
    let (b, sql) = search_sql(query, limit);
    column(conn, &sql, &b, "search")
}

/// The SQL of [`search`] and its values.
fn search_sql(query: &SearchQuery, limit: usize) -> (Builder, String) {
    let (mut b, table, pin) = start(query);
    let filter = where_clause(&mut b, query, "r");
    let order = order_by(&mut b, &query.sort, "r");
    let limit = b.bind(i64::try_from(limit).unwrap_or(i64::MAX));
    let sql = format!("SELECT r.rid FROM {table} r WHERE {filter}{pin} ORDER BY {order} LIMIT {limit}");
    (b, sql)
}

/// A builder for the rows `query` matches: their family (when the searched types share one
/// and the search is not of containers, which are of any type), the pin to one patient's shard
/// when a filter fixes it; with the table of the matched rows and the condition of the pin.
fn start(query: &SearchQuery) -> (Builder, String, String) {
    let mut b = Builder::default();
    if query.contained == Contained::No {
        b.family = shard::family_of_all(&query.types);
    }
    if b.family == Some(Family::Patient) {
        let patient = query.filters.iter().find_map(|f| shard::pinned_patient(f, &query.types));
        b.pin = patient.map(|p| b.bind(p));
    }
    let (table, pin) = (b.table("resource_current"), b.pinned("r"));
    (b, table, pin)
}

/// `EXPLAIN` of the SQL that [`search`] runs for `query` (tests check partition pruning).
pub(crate) fn explain(conn: &mut Connection, query: &SearchQuery, limit: usize) -> Result<String> {
    let (b, sql) = search_sql(query, limit);
    let lines: Vec<String> = column(conn, &format!("EXPLAIN {sql}"), &b, "explain")?;
    Ok(lines.join("\n"))
}

/// Ids of the matching resources (all of one type), at most `limit`.
pub(crate) fn search_ids(conn: &mut Connection, query: &SearchQuery, limit: usize) -> Result<Vec<String>> {
    let (mut b, table, pin) = start(query);
    let filter = where_clause(&mut b, query, "r");
    let limit = b.bind(i64::try_from(limit).unwrap_or(i64::MAX));
    let sql = format!("SELECT r.id FROM {table} r WHERE {filter}{pin} LIMIT {limit}");
    column(conn, &sql, &b, "search")
}

/// How many resources match.
pub(crate) fn count(conn: &mut Connection, query: &SearchQuery) -> Result<u64> {
    let (mut b, table, pin) = start(query);
    let filter = where_clause(&mut b, query, "r");
    let sql = format!("SELECT count(*) FROM {table} r WHERE {filter}{pin}");
    let n: Vec<i64> = column(conn, &sql, &b, "search")?;
    Ok(n.first().copied().unwrap_or(0).max(0) as u64)
}

/// Row keys of the live resources the `keys` resources reference through `include`.
pub(crate) fn include(conn: &mut Connection, keys: &[i64], include: &Include) -> Result<Vec<i64>> {
    if keys.is_empty() || include.keys.is_empty() {
        return Ok(Vec::new());
    }
    let mut b = Builder::default();
    let rids = b.bind(Sql::Ints(keys.to_vec()));
    let params = b.bind_keys(&include.keys);
    let mut sql = format!(
        "SELECT DISTINCT c.rid FROM search_reference t JOIN resource_current c
            ON c.resource_type = t.target_type AND c.id = t.target_id
         WHERE t.rid = ANY({rids}) AND t.param {params} AND NOT c.deleted"
    );
    if let Some(ty) = &include.target_type {
        sql.push_str(&format!(" AND t.target_type = {}", b.bind(ty.clone())));
    }
    column(conn, &sql, &b, "include")
}

/// Row keys of the live `include.source_type` resources that reference the `keys` resources.
pub(crate) fn revinclude(conn: &mut Connection, keys: &[i64], include: &Include) -> Result<Vec<i64>> {
    if keys.is_empty() || include.keys.is_empty() {
        return Ok(Vec::new());
    }
    let mut b = Builder::default();
    let rids = b.bind(Sql::Ints(keys.to_vec()));
    let params = b.bind_keys(&include.keys);
    let source = b.bind(include.source_type.clone());
    let sql = format!(
        "SELECT DISTINCT s.rid FROM resource_current m
           JOIN search_reference t ON t.target_id = m.id AND t.target_type = m.resource_type
           JOIN resource_current s ON s.rid = t.rid
         WHERE m.rid = ANY({rids}) AND t.param {params} AND s.resource_type = {source} AND NOT s.deleted"
    );
    column(conn, &sql, &b, "include")
}

/// The first column of every row of `sql`.
fn column<T>(conn: &mut Connection, sql: &str, b: &Builder, operation: &'static str) -> Result<Vec<T>>
where
    T: for<'a> postgres::types::FromSql<'a>,
{
    let fail = storage(operation);
    let rows = conn.query(sql, &b.params()).map_err(&fail)?;
    rows.iter().map(|row| row.try_get(0).map_err(&fail)).collect()
}
