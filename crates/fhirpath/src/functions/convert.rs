//! `toX()` and `convertsToX()`.

use super::{Function, bool_item, value_item};
use crate::eval::{Collection, Result};
use crate::value::{DateTime, Decimal, Precision, Quantity, Time, Value, calendar_keyword};
use crate::{EvalError, Item};

fn to_boolean(v: &Value) -> Option<bool> {
    match v {
        Value::Boolean(b) => Some(*b),
        Value::Integer(1) => Some(true),
        Value::Integer(0) => Some(false),
        Value::Decimal(d) if *d == Decimal::from_i64(1) => Some(true),
        Value::Decimal(d) if d.is_zero() => Some(false),
        Value::String(s) => match s.to_ascii_lowercase().as_str() {
            "true" | "t" | "yes" | "y" | "1" | "1.0" => Some(true),
            "false" | "f" | "no" | "n" | "0" | "0.0" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

fn is_integer_text(s: &str) -> bool {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

fn to_integer(v: &Value) -> Option<i64> {
    match v {
        Value::Integer(i) => Some(*i),
        Value::Boolean(b) => Some(i64::from(*b)),
        Value::String(s) if is_integer_text(s) => s.parse::<i32>().ok().map(i64::from),
        _ => None,
    }
}

fn to_decimal(v: &Value) -> Option<Decimal> {
    match v {
        Value::Integer(i) => Some(Decimal::from_i64(*i)),
        Value::Decimal(d) => Some(*d),
        Value::Boolean(b) => Decimal::parse(if *b { "1.0" } else { "0.0" }),
        Value::String(s) if !s.contains(['e', 'E']) && !s.ends_with('.') => Decimal::parse(s),
        _ => None,
    }
}

fn to_date(v: &Value) -> Option<DateTime> {
    match v {
        Value::Date(d) => Some(*d),
        Value::DateTime(d) => Some(d.truncate(Precision::Day)),
        Value::String(s) => DateTime::parse(s).map(|(d, _)| d.truncate(Precision::Day)),
        _ => None,
    }
}

fn to_datetime(v: &Value) -> Option<DateTime> {
    match v {
        Value::Date(d) | Value::DateTime(d) => Some(*d),
        Value::String(s) => DateTime::parse(s).map(|(d, _)| d),
        _ => None,
    }
}

fn to_time(v: &Value) -> Option<Time> {
    match v {
        Value::Time(t) => Some(*t),
        Value::String(s) => Time::parse(s),
        _ => None,
    }
}

/// Parses `'5.5 'mg''`, `'4 days'` or `'12'` as a quantity.
fn parse_quantity(s: &str) -> Option<Quantity> {
    let s = s.trim();
    let (number, rest) = match s.find(' ') {
        Some(i) => (&s[..i], s[i..].trim()),
        None => (s, ""),
    };
    if number.ends_with('.') || number.contains(['e', 'E']) {
        return None;
    }
    let value = Decimal::parse(number)?;
    let unit = if rest.is_empty() {
        "1".to_owned()
    } else if let Some(u) = rest.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')) {
        u.to_owned()
    } else if calendar_keyword(rest).is_some() {
        rest.to_owned()
    } else {
        return None;
    };
    Some(Quantity { value, unit })
}

fn to_quantity(v: &Value, unit: Option<&str>) -> Option<Quantity> {
    let q = match v {
        Value::Quantity(q) => q.clone(),
        Value::Integer(_) | Value::Decimal(_) => Quantity { value: to_decimal(v)?, unit: "1".into() },
        Value::Boolean(b) => Quantity { value: Decimal::parse(if *b { "1.0" } else { "0.0" })?, unit: "1".into() },
        Value::String(s) => parse_quantity(s)?,
        _ => return None,
    };
    match unit {
        None => Some(q),
        Some(u) if u == q.unit => Some(q),
        Some(u) => q.convert_to(u),
    }
}

pub(super) fn convert<'a>(f: Function, item: &Item<'a>, unit: Option<&str>) -> Result<Collection<'a>> {
    use Function as F;
    let Some(v) = item.to_value() else {
        return match f {
            F::ToStringFn
            | F::ToBoolean
            | F::ToInteger
            | F::ToDecimal
            | F::ToDate
            | F::ToDateTime
            | F::ToTime
            | F::ToQuantity => Ok(Vec::new()),
            F::ConvertsToQuantity if unit.is_none() => Ok(bool_item(false)),
            _ => Ok(bool_item(false)),
        };
    };
    let result = match f {
        F::ToBoolean | F::ConvertsToBoolean => to_boolean(&v).map(Value::Boolean),
        F::ToInteger | F::ConvertsToInteger => to_integer(&v).map(Value::Integer),
        F::ToDecimal | F::ConvertsToDecimal => to_decimal(&v).map(Value::Decimal),
        F::ToStringFn | F::ConvertsToString => match &v {
            Value::Type { .. } => None,
            v => Some(Value::String(v.render())),
        },
        F::ToDate | F::ConvertsToDate => to_date(&v).map(Value::Date),
        F::ToDateTime | F::ConvertsToDateTime => to_datetime(&v).map(Value::DateTime),
        F::ToTime | F::ConvertsToTime => to_time(&v).map(Value::Time),
        F::ToQuantity | F::ConvertsToQuantity => to_quantity(&v, unit).map(Value::Quantity),
        _ => return Err(EvalError::Unsupported(f.name().into())),
    };
    Ok(if f.name().starts_with("convertsTo") { bool_item(result.is_some()) } else { value_item(result) })
}
