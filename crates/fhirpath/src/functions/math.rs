//! Math functions.

use super::{Function, value_item};
use crate::eval::{Collection, Result};
use crate::value::{Decimal, Quantity, Value};
use crate::{EvalError, Item};

fn number(v: &Value) -> Option<Decimal> {
    match v {
        Value::Integer(i) => Some(Decimal::from_i64(*i)),
        Value::Decimal(d) => Some(*d),
        _ => None,
    }
}

fn decimal<'a>(d: Option<Decimal>) -> Collection<'a> {
    value_item(d.map(Value::Decimal))
}

fn integer<'a>(d: Decimal) -> Collection<'a> {
    value_item(d.to_i64_exact().map(Value::Integer))
}

fn float<'a>(f: f64) -> Collection<'a> {
    decimal(if f.is_finite() { Decimal::from_f64(f) } else { None })
}

pub(super) fn math<'a>(f: Function, item: &Item<'a>, arg: Option<Value>) -> Result<Collection<'a>> {
    use Function as F;
    let v = item.to_value();
    if let (F::Abs, Some(Value::Quantity(q))) = (f, &v) {
        return Ok(value_item(Some(Value::Quantity(Quantity { value: q.value.abs(), unit: q.unit.clone() }))));
    }
    let type_error = || EvalError::Type(format!("{}() applies to numbers", f.name()));
    let x = v.as_ref().and_then(number).ok_or_else(type_error)?;
    let is_int = matches!(v, Some(Value::Integer(_)));
    let arg_num = match &arg {
        Some(a) => Some(number(a).ok_or_else(type_error)?),
        None => None,
    };
    Ok(match f {
        F::Abs if is_int => integer(x.abs()),
        F::Abs => decimal(Some(x.abs())),
        F::Ceiling => integer(x.ceiling()),
        F::Floor => integer(x.floor()),
        F::Truncate => integer(x.rescale_trunc(0)),
        F::Round => {
            let digits = match arg {
                Some(Value::Integer(n)) if n >= 0 => u32::try_from(n).unwrap_or(0),
                Some(_) => return Err(EvalError::Argument("round".into())),
                None => 0,
            };
            decimal(Some(x.rescale_round(digits)))
        }
        F::Exp => float(x.to_f64().exp()),
        F::Ln if x.is_negative() || x.is_zero() => Vec::new(),
        F::Ln => float(x.to_f64().ln()),
        F::Log => {
            let base = arg_num.ok_or_else(type_error)?.to_f64();
            float(x.to_f64().ln() / base.ln())
        }
        F::Sqrt if x.is_negative() => Vec::new(),
        F::Sqrt => float(x.to_f64().sqrt()),
        F::Power => {
            let e = arg_num.ok_or_else(type_error)?;
            if is_int && matches!(arg, Some(Value::Integer(_))) {
                let e = e.to_i64_exact().unwrap_or(-1);
                match u32::try_from(e).ok().and_then(|e| x.to_i64_exact()?.checked_pow(e)) {
                    Some(r) => value_item(Some(Value::Integer(r))),
                    None => float(x.to_f64().powf(e as f64)),
                }
            } else {
                float(x.to_f64().powf(e.to_f64()))
            }
        }
        _ => return Err(EvalError::Unsupported(f.name().into())),
    })
}
