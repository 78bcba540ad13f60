//! Conditions on one index row (strings, tokens, references, dates, numbers, quantities, uris)
//! and composite values.

use crate::Dialect;
use crate::builder::Builder;
use crate::filters::table;
use search::ParamKind;
use search::query::{Condition, Prefix, StringMatch, UriMatch};

/// The upper bound of the strings that start with `prefix` (for index range scans).
fn prefix_end(prefix: &str) -> String {
    format!("{prefix}\u{10FFFF}")
}

/// `text` with the `LIKE` wildcards and the escape character escaped (by `\`).
fn like_escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}

/// SQL comparing a stored range `[low, high]` (columns) with a search range per `prefix`.
/// Only the bounds a prefix uses are bound: PostgreSQL refuses a parameter it cannot type.
pub(crate) fn date_condition<D: Dialect>(
    b: &mut Builder<'_, D>,
    low: &str,
    high: &str,
    prefix: Prefix,
    s_low: i64,
    s_high: i64,
) -> String {
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
            let now = search::micros(time::OffsetDateTime::now_utc());
            let margin = ((now - s_low).abs() / 10).max(86_400_000_000);
            let (al, ah) = (b.bind(s_low.saturating_sub(margin)), b.bind(s_high.saturating_add(margin)));
            format!("({low} <= {ah} AND {high} >= {al})")
        }
    }
}

/// SQL comparing a stored number column with a search value and its precision range.
fn number_condition<D: Dialect>(
    b: &mut Builder<'_, D>,
    col: &str,
    prefix: Prefix,
    value: f64,
    low: f64,
    high: f64,
) -> String {
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

/// SQL for one condition on the index row alias `t`.
pub(crate) fn condition_sql<D: Dialect>(b: &mut Builder<'_, D>, condition: &Condition, t: &str) -> String {
    match condition {
        Condition::String { value, mode } => match mode {
            StringMatch::Start => {
                format!(
                    "({t}.normalized >= {} AND {t}.normalized < {})",
                    b.bind(value.as_str()),
                    b.bind(prefix_end(value))
                )
            }
            StringMatch::Exact => format!("{t}.exact = {}", b.bind(value.as_str())),
            StringMatch::Code => format!("{t}.normalized = {}", b.bind(value.as_str())),
            StringMatch::Contains => {
                format!("{t}.normalized LIKE {} ESCAPE '\\'", b.bind(format!("%{}%", like_escape(value))))
            }
        },
        Condition::Token { system, code } => {
            let mut parts = Vec::new();
            if let Some(code) = code {
                parts.push(format!("{t}.code = {}", b.bind(code.as_str())));
            }
            match system {
                None => {}
                Some(None) => parts.push(format!("{t}.system IS NULL")),
                Some(Some(s)) => parts.push(format!("{t}.system = {}", b.bind(s.as_str()))),
            }
            if parts.is_empty() { D::TRUE.into() } else { format!("({})", parts.join(" AND ")) }
        }
        Condition::TokenIn { system, codes } => {
            let list = b.bind_list(codes);
            // A `code` element carries no system of its own: its binding's is implied.
            format!("({t}.code IN ({list}) AND ({t}.system = {} OR {t}.system IS NULL))", b.bind(system.as_str()))
        }
        Condition::TokenText(text) => {
            format!("({t}.text >= {} AND {t}.text < {})", b.bind(text.as_str()), b.bind(prefix_end(text)))
        }
        Condition::Reference { target_type, id, version } => {
            let mut parts = vec![format!("{t}.target_id = {}", b.bind(id.as_str()))];
            if let Some(ty) = target_type {
                parts.push(format!("{t}.target_type = {}", b.bind(ty.as_str())));
            }
            if let Some(v) = version {
                parts.push(format!("{t}.version = {}", b.bind(v.as_str())));
            }
            format!("({})", parts.join(" AND "))
        }
        Condition::ReferenceUrl(url) => {
            // Canonical references may carry `|version`: match the URL with or without it.
            let (u, with_version) = (b.bind(url.as_str()), b.bind(format!("{}|%", like_escape(url))));
            format!("({t}.url = {u} OR {t}.url LIKE {with_version} ESCAPE '\\')")
        }
        Condition::ReferenceIdentifier { system, value } => {
            let mut parts = vec![format!("{t}.id_value = {}", b.bind(value.as_str()))];
            match system {
                None => {}
                Some(None) => parts.push(format!("{t}.id_system IS NULL")),
                Some(Some(s)) => parts.push(format!("{t}.id_system = {}", b.bind(s.as_str()))),
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
                let unit = b.bind(unit.as_str());
                let cond = number_condition(b, &format!("{t}.canonical_value"), *prefix, n.value, n.low, n.high);
                return format!("({t}.canonical_code = {unit} AND {cond})");
            }
            let mut parts =
                vec![number_condition(b, &format!("{t}.value"), *prefix, range.value, range.low, range.high)];
            if let Some(code) = code {
                let c = b.bind(code.as_str());
                parts.push(format!("({t}.code = {c} OR ({t}.code IS NULL AND {t}.unit = {c}))"));
            }
            if let Some(system) = system {
                parts.push(format!("{t}.system = {}", b.bind(system.as_str())));
            }
            format!("({})", parts.join(" AND "))
        }
        Condition::Uri { value, mode } => match mode {
            UriMatch::Exact => format!("{t}.uri = {}", b.bind(value.as_str())),
            UriMatch::Below => {
                format!("({t}.uri >= {} AND {t}.uri < {})", b.bind(value.as_str()), b.bind(prefix_end(value)))
            }
            UriMatch::Above => format!("substr({}, 1, length({t}.uri)) = {t}.uri", b.bind(value.as_str())),
        },
        // Composites are matched by `composite_rids`, never per index row.
        Condition::Composite(_) => D::FALSE.into(),
    }
}

/// `SELECT rid …` of the resources with one composite value whose components match `parts`
/// (rows of one rid and one grp).
pub(crate) fn composite_rids<D: Dialect>(b: &mut Builder<'_, D>, parts: &[(i64, ParamKind, Condition)]) -> String {
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
            conds.extend(b.dialect.scope_condition(&b.scope, &a));
        } else {
            joins.push(format!(" JOIN {table} {a} ON {a}.rid = {first}.rid AND {a}.grp = {first}.grp"));
        }
    }
    format!("{sql}{} WHERE {}", joins.concat(), conds.join(" AND "))
}
