//! Operators: equality, equivalence, comparison, arithmetic and collection operators.

use crate::eval::{Collection, Result};
use crate::item::Repr;
use crate::parser::BinOp;
use crate::value::{Comparable, DateTime, Decimal, Quantity, Value, duration_unit};
use crate::{EvalError, Item};
use serde_json::Value as Json;
use std::cmp::Ordering;

fn boolean<'a>(b: Option<bool>) -> Collection<'a> {
    b.map(|b| Item::from_value(Value::Boolean(b))).into_iter().collect()
}

fn type_error(what: &str) -> EvalError {
    EvalError::Type(what.to_owned())
}

/// Singleton evaluation of a collection as a Boolean: empty is `None`, one Boolean is itself,
/// one other item is `true`; more items are an error.
pub(crate) fn to_boolean(items: &[Item<'_>], what: &str) -> Result<Option<bool>> {
    match items {
        [] => Ok(None),
        [item] => match item.to_value() {
            Some(Value::Boolean(b)) => Ok(Some(b)),
            _ => Ok(Some(true)),
        },
        _ => Err(EvalError::NotSingleton(what.to_owned())),
    }
}

/// The single Integer of a collection (`None` when empty).
pub(crate) fn singleton_integer(items: &[Item<'_>], what: &str) -> Result<Option<i64>> {
    match items {
        [] => Ok(None),
        [item] => match item.to_value() {
            Some(Value::Integer(i)) => Ok(Some(i)),
            _ => Err(EvalError::Type(format!("{what} expects an integer"))),
        },
        _ => Err(EvalError::NotSingleton(what.to_owned())),
    }
}

/// The single value of a collection (`None` when empty or not convertible to a value).
pub(crate) fn singleton_value(items: &[Item<'_>], what: &str) -> Result<Option<Value>> {
    match items {
        [] => Ok(None),
        [item] => Ok(item.to_value()),
        _ => Err(EvalError::NotSingleton(what.to_owned())),
    }
}

pub(crate) fn negate(items: Collection<'_>) -> Result<Collection<'_>> {
    Ok(match singleton_value(&items, "unary minus")? {
        None if items.is_empty() => Vec::new(),
        Some(Value::Integer(i)) => i.checked_neg().map(|n| Item::from_value(Value::Integer(n))).into_iter().collect(),
        Some(Value::Decimal(d)) => vec![Item::from_value(Value::Decimal(d.negated()))],
        Some(Value::Quantity(q)) => {
            vec![Item::from_value(Value::Quantity(Quantity { value: q.value.negated(), unit: q.unit }))]
        }
        _ => return Err(type_error("unary minus applies to numbers and quantities")),
    })
}

fn as_decimal(v: &Value) -> Option<Decimal> {
    match v {
        Value::Integer(i) => Some(Decimal::from_i64(*i)),
        Value::Decimal(d) => Some(*d),
        _ => None,
    }
}

fn as_datetime(v: &Value) -> Option<DateTime> {
    match v {
        Value::Date(d) | Value::DateTime(d) => Some(*d),
        _ => None,
    }
}

/// `a = b` for two values: `None` when the answer is unknown (precision, calendar units).
pub(crate) fn value_equals(a: &Value, b: &Value) -> Option<bool> {
    match (a, b) {
        (Value::Integer(x), Value::Integer(y)) => Some(x == y),
        (Value::String(x), Value::String(y)) => Some(x == y),
        (Value::Boolean(x), Value::Boolean(y)) => Some(x == y),
        (Value::Time(x), Value::Time(y)) => x.compare(y).map(|o| o == Ordering::Equal),
        (Value::Quantity(x), Value::Quantity(y)) => match x.comparable(y) {
            Comparable::Values(p, q) => Some(p == q),
            Comparable::Indefinite(..) => None,
            Comparable::Incompatible => Some(false),
        },
        (Value::Type { .. }, Value::Type { .. }) => Some(a == b),
        _ => {
            if let (Some(x), Some(y)) = (as_decimal(a), as_decimal(b)) {
                return Some(x == y);
            }
            if let (Some(x), Some(y)) = (as_datetime(a), as_datetime(b)) {
                return x.compare(&y).map(|o| o == Ordering::Equal);
            }
            Some(false)
        }
    }
}

fn normalize_ws(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

fn decimal_equivalent(x: Decimal, y: Decimal) -> bool {
    let scale = x.scale().min(y.scale());
    x.rescale_round(scale) == y.rescale_round(scale)
}

/// `a ~ b` for two values.
pub(crate) fn value_equivalent(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::String(x), Value::String(y)) => normalize_ws(x) == normalize_ws(y),
        (Value::Quantity(x), Value::Quantity(y)) => match x.comparable(y) {
            Comparable::Values(p, q) | Comparable::Indefinite(p, q) => decimal_equivalent(p, q),
            Comparable::Incompatible => false,
        },
        (Value::Time(x), Value::Time(y)) => x.precision == y.precision && x.compare(y) == Some(Ordering::Equal),
        _ => {
            if let (Some(x), Some(y)) = (as_decimal(a), as_decimal(b)) {
                return decimal_equivalent(x, y);
            }
            if let (Some(x), Some(y)) = (as_datetime(a), as_datetime(b)) {
                return x.compare(&y) == Some(Ordering::Equal);
            }
            value_equals(a, b) == Some(true)
        }
    }
}

/// The text of a string-typed item, borrowed (the common case of comparisons, without the
/// allocation of a [`Value`]).
fn string_of<'s>(item: &'s Item<'_>) -> Option<&'s str> {
    match &item.0 {
        Repr::Value(Value::String(s)) => Some(s),
        Repr::Node(n) => match (n.value, &crate::model::model().class(n.class).kind) {
            (Some(Json::String(s)), crate::model::Kind::Primitive(crate::model::Sys::String)) => Some(s),
            _ => None,
        },
        Repr::Value(_) => None,
    }
}

/// Item equality (`None`: unknown).
pub(crate) fn item_equals(a: &Item<'_>, b: &Item<'_>) -> Option<bool> {
    if let (Repr::Node(x), Repr::Node(y)) = (&a.0, &b.0)
        && x.value.is_some()
        && x.value.map(std::ptr::from_ref) == y.value.map(std::ptr::from_ref)
        && x.ext.map(std::ptr::from_ref) == y.ext.map(std::ptr::from_ref)
    {
        return Some(true);
    }
    if let (Some(x), Some(y)) = (string_of(a), string_of(b)) {
        return Some(x == y);
    }
    match (a.to_value(), b.to_value()) {
        (Some(x), Some(y)) => value_equals(&x, &y),
        (None, None) => match (&a.0, &b.0) {
            (Repr::Node(x), Repr::Node(y)) => Some(json_equal(x.value, y.value) && json_equal(x.ext, y.ext)),
            _ => Some(false),
        },
        _ => Some(false),
    }
}

fn json_equal(a: Option<&Json>, b: Option<&Json>) -> bool {
    match (a, b) {
        (Some(Json::Object(x)), Some(Json::Object(y))) => {
            x.len() == y.len() && x.iter().all(|(k, v)| json_equal(Some(v), y.get(k)))
        }
        (Some(Json::Array(x)), Some(Json::Array(y))) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_equal(Some(p), Some(q)))
        }
        (Some(Json::Number(x)), Some(Json::Number(y))) => {
            match (Decimal::parse(&x.to_string()), Decimal::parse(&y.to_string())) {
                (Some(p), Some(q)) => p == q,
                _ => x == y,
            }
        }
        (a, b) => a == b,
    }
}

pub(crate) fn item_equivalent(a: &Item<'_>, b: &Item<'_>) -> bool {
    match (a.to_value(), b.to_value()) {
        (Some(x), Some(y)) => value_equivalent(&x, &y),
        (None, None) => item_equals(a, b) == Some(true),
        _ => false,
    }
}

/// `a = b` on collections.
pub(crate) fn collection_equals(a: &[Item<'_>], b: &[Item<'_>]) -> Option<bool> {
    if a.is_empty() || b.is_empty() {
        return None;
    }
    if a.len() != b.len() {
        return Some(false);
    }
    let mut unknown = false;
    for (x, y) in a.iter().zip(b) {
        match item_equals(x, y) {
            Some(false) => return Some(false),
            None => unknown = true,
            Some(true) => {}
        }
    }
    if unknown { None } else { Some(true) }
}

/// `a ~ b` on collections (order does not matter).
pub(crate) fn collection_equivalent(a: &[Item<'_>], b: &[Item<'_>]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut used = vec![false; b.len()];
    a.iter().all(|x| {
        let found = b.iter().enumerate().find(|(i, y)| !used[*i] && item_equivalent(x, y));
        if let Some((i, _)) = found {
            used[i] = true;
        }
        found.is_some()
    })
}

/// Order of two values; `Ok(None)` when unknown (precision), an error for mismatched types.
pub(crate) fn compare_values(a: &Value, b: &Value) -> Result<Option<Ordering>> {
    if let (Some(x), Some(y)) = (as_decimal(a), as_decimal(b)) {
        return Ok(Some(x.cmp_value(y)));
    }
    if let (Some(x), Some(y)) = (as_datetime(a), as_datetime(b)) {
        return Ok(x.compare(&y));
    }
    match (a, b) {
        (Value::String(x), Value::String(y)) => Ok(Some(x.cmp(y))),
        (Value::Time(x), Value::Time(y)) => Ok(x.compare(y)),
        (Value::Quantity(x), Value::Quantity(y)) => match x.comparable(y) {
            Comparable::Values(p, q) => Ok(Some(p.cmp_value(q))),
            _ => Ok(None),
        },
        _ => Err(type_error("values of these types cannot be compared")),
    }
}

fn compare(op: BinOp, a: &[Item<'_>], b: &[Item<'_>]) -> Result<Option<bool>> {
    let (Some(x), Some(y)) = (singleton_value(a, "comparison")?, singleton_value(b, "comparison")?) else {
        if (a.is_empty() || b.is_empty()) || (a.len() == 1 && b.len() == 1) {
            return if a.is_empty() || b.is_empty() { Ok(None) } else { Err(type_error("cannot compare these items")) };
        }
        return Ok(None);
    };
    let Some(order) = compare_values(&x, &y)? else { return Ok(None) };
    Ok(Some(match op {
        BinOp::Lt => order == Ordering::Less,
        BinOp::Le => order != Ordering::Greater,
        BinOp::Gt => order == Ordering::Greater,
        _ => order != Ordering::Less,
    }))
}

/// Appends the items of `b` not already in `out` (by `=`), for `union` and `distinct`.
pub(crate) fn push_distinct<'a>(out: &mut Collection<'a>, items: impl IntoIterator<Item = Item<'a>>) {
    for item in items {
        if !out.iter().any(|o| item_equals(o, &item) == Some(true)) {
            out.push(item);
        }
    }
}

pub(crate) fn contains_item(coll: &[Item<'_>], item: &Item<'_>) -> bool {
    coll.iter().any(|c| item_equals(c, item) == Some(true))
}

pub(crate) fn binary<'a>(op: BinOp, a: Collection<'a>, b: Collection<'a>) -> Result<Collection<'a>> {
    match op {
        BinOp::Eq => Ok(boolean(collection_equals(&a, &b))),
        BinOp::Ne => Ok(boolean(collection_equals(&a, &b).map(|e| !e))),
        BinOp::Equiv => Ok(boolean(Some(collection_equivalent(&a, &b)))),
        BinOp::NotEquiv => Ok(boolean(Some(!collection_equivalent(&a, &b)))),
        BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => Ok(boolean(compare(op, &a, &b)?)),
        BinOp::Union => {
            let mut out = Vec::with_capacity(a.len() + b.len());
            push_distinct(&mut out, a);
            push_distinct(&mut out, b);
            Ok(out)
        }
        BinOp::In | BinOp::Contains => {
            let (item, coll) = if op == BinOp::In { (a, b) } else { (b, a) };
            match item.as_slice() {
                [] => Ok(Vec::new()),
                [x] => Ok(boolean(Some(contains_item(&coll, x)))),
                _ => Err(EvalError::NotSingleton("in/contains".into())),
            }
        }
        BinOp::Concat => {
            let text = |c: &[Item<'_>]| -> Result<String> {
                match singleton_value(c, "&")? {
                    None => Ok(String::new()),
                    Some(Value::String(s)) => Ok(s),
                    Some(_) => Err(type_error("& applies to strings")),
                }
            };
            Ok(vec![Item::from_value(Value::String(text(&a)? + &text(&b)?))])
        }
        _ => arithmetic(op, &a, &b),
    }
}

fn arithmetic<'a>(op: BinOp, a: &[Item<'_>], b: &[Item<'_>]) -> Result<Collection<'a>> {
    let x = singleton_value(a, "arithmetic")?;
    let y = singleton_value(b, "arithmetic")?;
    let (Some(x), Some(y)) = (x, y) else {
        if (a.len() == 1 && a[0].to_value().is_none()) || (b.len() == 1 && b[0].to_value().is_none()) {
            return Err(type_error("arithmetic on non-primitive items"));
        }
        return Ok(Vec::new());
    };
    Ok(arith_values(op, &x, &y)?.map(Item::from_value).into_iter().collect())
}

fn arith_values(op: BinOp, x: &Value, y: &Value) -> Result<Option<Value>> {
    use Value::{Decimal as D, Integer as I, Quantity as Q, String as S};
    Ok(match (op, x, y) {
        (BinOp::Add, S(p), S(q)) => Some(S(format!("{p}{q}"))),
        (BinOp::Add | BinOp::Sub | BinOp::Mul, I(p), I(q)) => match op {
            BinOp::Add => p.checked_add(*q),
            BinOp::Sub => p.checked_sub(*q),
            _ => p.checked_mul(*q),
        }
        .map(I),
        (BinOp::IntDiv, I(p), I(q)) => p.checked_div(*q).map(I),
        (BinOp::Mod, I(p), I(q)) => p.checked_rem(*q).map(I),
        (BinOp::Add | BinOp::Sub, Value::Date(d) | Value::DateTime(d), Q(q)) => {
            let unit = duration_unit(&q.unit).ok_or_else(|| type_error("date arithmetic needs a calendar duration"))?;
            let amount = if op == BinOp::Sub { q.value.negated() } else { q.value };
            if matches!(x, Value::Date(_)) && matches!(unit, "hour" | "minute" | "second" | "millisecond") {
                return Err(type_error("a date cannot take a time-valued quantity"));
            }
            d.add(amount, unit).map(|r| if matches!(x, Value::Date(_)) { Value::Date(r) } else { Value::DateTime(r) })
        }
        (BinOp::Add | BinOp::Sub, Value::Time(t), Q(q)) => {
            let unit = duration_unit(&q.unit).ok_or_else(|| type_error("time arithmetic needs a duration"))?;
            let amount = if op == BinOp::Sub { q.value.negated() } else { q.value };
            t.add(amount, unit).map(Value::Time)
        }
        (BinOp::Add | BinOp::Sub, Q(p), Q(q)) => {
            let q = if p.unit == q.unit { Some(q.clone()) } else { q.convert_to(&p.unit) };
            let q = q.ok_or_else(|| type_error("quantities with incompatible units"))?;
            let v = if op == BinOp::Add { p.value.checked_add(q.value) } else { p.value.checked_sub(q.value) };
            v.map(|value| Q(Quantity { value, unit: p.unit.clone() }))
        }
        (BinOp::Mul | BinOp::Div, Q(p), Q(q)) => p.multiply(q, op == BinOp::Div).map(Q),
        (BinOp::Mul | BinOp::Div, Q(p), n) if as_decimal(n).is_some() => {
            let n = as_decimal(n).unwrap_or(Decimal::ZERO);
            let v = if op == BinOp::Mul { p.value.checked_mul(n) } else { p.value.checked_div(n) };
            v.map(|value| Q(Quantity { value, unit: p.unit.clone() }))
        }
        (BinOp::Mul, n, Q(p)) if as_decimal(n).is_some() => {
            let n = as_decimal(n).unwrap_or(Decimal::ZERO);
            p.value.checked_mul(n).map(|value| Q(Quantity { value, unit: p.unit.clone() }))
        }
        _ => {
            let (Some(p), Some(q)) = (as_decimal(x), as_decimal(y)) else {
                return Err(type_error("operands of these types cannot be combined"));
            };
            match op {
                BinOp::Add => p.checked_add(q).map(D),
                BinOp::Sub => p.checked_sub(q).map(D),
                BinOp::Mul => p.checked_mul(q).map(D),
                BinOp::Div => p.checked_div(q).map(D),
                BinOp::IntDiv => p.div_trunc(q).and_then(|d| d.to_i64_exact()).map(I),
                BinOp::Mod => p.checked_rem(q).map(D),
                _ => None,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(v: Option<bool>) -> Collection<'static> {
        boolean(v)
    }

    #[test]
    fn equality_of_empty_and_mixed_numbers() {
        let one = vec![Item::from_value(Value::Integer(1))];
        let one_dec = vec![Item::from_value(Value::Decimal(Decimal::parse("1.0").unwrap()))];
        assert_eq!(collection_equals(&one, &[]), None);
        assert_eq!(collection_equals(&one, &one_dec), Some(true));
        assert!(collection_equivalent(&[], &[]));
        assert_eq!(to_boolean(&b(Some(true)), "x").unwrap(), Some(true));
        assert_eq!(to_boolean(&[], "x").unwrap(), None);
    }
}
