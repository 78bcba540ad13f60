//! `lowBoundary()`, `highBoundary()` and `precision()` (from FHIRPath 2.0, used by the suite).

use super::{Function, value_item};
use crate::eval::{Collection, Result};
use crate::value::{DateTime, Decimal, Precision, Quantity, Time, Value};
use crate::{EvalError, Item};

const MAX_DIGITS: i64 = 28;

fn decimal_boundary(x: Decimal, digits: Option<i64>, high: bool) -> Option<Decimal> {
    let digits = digits.unwrap_or(8);
    if !(0..=MAX_DIGITS).contains(&digits) {
        return None;
    }
    let digits = digits as u32;
    let half = Decimal::parse(&format!("5e-{}", x.scale() + 1))?;
    let edge = if high { x.checked_add(half)? } else { x.checked_sub(half)? };
    let unit = Decimal::parse(&format!("1e-{digits}"))?;
    if edge.abs().cmp_value(unit).is_lt() {
        return Some(Decimal::ZERO.rescale_round(digits));
    }
    let cut = edge.rescale_trunc(digits);
    let exact = cut.cmp_value(edge).is_eq();
    Some(match (high, edge.is_negative(), exact) {
        (_, _, true) => cut,
        (false, true, false) => cut.checked_sub(unit)?,
        (true, false, false) => cut.checked_add(unit)?,
        _ => cut,
    })
}

fn date_precision(digits: i64) -> Option<Precision> {
    Some(match digits {
        4 => Precision::Year,
        6 => Precision::Month,
        8 => Precision::Day,
        10 => Precision::Hour,
        12 => Precision::Minute,
        14 => Precision::Second,
        17 => Precision::Millisecond,
        _ => return None,
    })
}

fn datetime_boundary(d: DateTime, digits: Option<i64>, high: bool, date: bool) -> Option<DateTime> {
    let target = match digits {
        Some(n) => date_precision(n)?,
        None if date => Precision::Day,
        None => Precision::Millisecond,
    };
    let mut r = d;
    if r.precision == Precision::Hour {
        r.precision = Precision::Minute;
    }
    if target > r.precision {
        if r.precision < Precision::Month {
            r.month = if high { 12 } else { 1 };
        }
        if r.precision < Precision::Day {
            r.day = if high { crate::value::days_in_month(r.year, r.month) } else { 1 };
        }
        if r.precision < Precision::Hour {
            r.hour = if high { 23 } else { 0 };
        }
        if r.precision < Precision::Minute {
            r.minute = if high { 59 } else { 0 };
        }
        if r.precision < Precision::Second {
            r.second = if high { 59 } else { 0 };
        }
        if r.precision < Precision::Millisecond {
            r.millisecond = if high { 999 } else { 0 };
        }
        if target >= Precision::Hour && r.offset.is_none() {
            r.offset = Some(if high { -12 * 60 } else { 14 * 60 });
        }
        r.precision = target;
        Some(r)
    } else {
        Some(r.truncate(target))
    }
}

fn time_boundary(t: Time, digits: Option<i64>, high: bool) -> Option<Time> {
    let target = match digits.unwrap_or(9) {
        2 => Precision::Hour,
        4 => Precision::Minute,
        6 => Precision::Second,
        9 => Precision::Millisecond,
        _ => return None,
    };
    let mut r = t;
    if target > r.precision {
        if r.precision < Precision::Minute {
            r.minute = if high { 59 } else { 0 };
        }
        if r.precision < Precision::Second {
            r.second = if high { 59 } else { 0 };
        }
        if r.precision < Precision::Millisecond {
            r.millisecond = if high { 999 } else { 0 };
        }
    }
    r.precision = target;
    Some(r)
}

fn precision_digits(p: Precision) -> i64 {
    match p {
        Precision::Year => 4,
        Precision::Month => 6,
        Precision::Day => 8,
        Precision::Hour => 10,
        Precision::Minute => 12,
        Precision::Second => 14,
        Precision::Millisecond => 17,
    }
}

pub(super) fn boundary<'a>(f: Function, item: &Item<'a>, digits: Option<i64>) -> Result<Collection<'a>> {
    let high = f == Function::HighBoundary;
    let v = item.to_value().ok_or_else(|| EvalError::Type(format!("{}() applies to values", f.name())))?;
    if f == Function::Precision {
        return Ok(value_item(
            match v {
                Value::Decimal(d) => Some(i64::from(d.scale())),
                Value::Integer(_) => Some(0),
                Value::Date(d) | Value::DateTime(d) => Some(precision_digits(d.precision)),
                Value::Time(t) => Some(precision_digits(t.precision) - 8),
                _ => None,
            }
            .map(Value::Integer),
        ));
    }
    Ok(value_item(match v {
        Value::Integer(i) => decimal_boundary(Decimal::from_i64(i), digits, high).map(Value::Decimal),
        Value::Decimal(d) => decimal_boundary(d, digits, high).map(Value::Decimal),
        Value::Quantity(q) => {
            decimal_boundary(q.value, digits, high).map(|value| Value::Quantity(Quantity { value, unit: q.unit }))
        }
        Value::Date(d) => datetime_boundary(d, digits, high, true)
            .map(|r| if r.precision <= Precision::Day { Value::Date(r) } else { Value::DateTime(r) }),
        Value::DateTime(d) => datetime_boundary(d, digits, high, false).map(Value::DateTime),
        Value::Time(t) => time_boundary(t, digits, high).map(Value::Time),
        _ => None,
    }))
}
