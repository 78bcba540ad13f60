//! Tree navigation, utility, type and aggregate functions.

use super::{Function, bool_item, singleton, type_arg, value_item};
use crate::eval::{Collection, Evaluator, Result, Scope, children, filter_type, is_type};
use crate::item::Repr;
use crate::ops;
use crate::parser::Expr;
use crate::value::Value;
use crate::{EvalError, Item};

pub(super) fn utility_function<'a>(
    ev: &Evaluator<'_, 'a>,
    f: Function,
    args: &[Expr],
    focus: Collection<'a>,
    scope: Scope<'_, 'a>,
) -> Result<Collection<'a>> {
    use Function as F;
    Ok(match f {
        F::Children => {
            let mut out = Vec::new();
            for item in &focus {
                children(item, &mut out);
            }
            out
        }
        F::Descendants => {
            let mut out = Vec::new();
            let mut frontier = focus;
            while !frontier.is_empty() {
                let mut next = Vec::new();
                for item in &frontier {
                    children(item, &mut next);
                }
                out.extend(next.iter().cloned());
                frontier = next;
            }
            out
        }
        F::Trace => {
            let name = match ops::singleton_value(&ev.arg(args, 0, scope)?, "trace()")? {
                Some(Value::String(s)) => s,
                _ => String::new(),
            };
            if let Some(sink) = ev.env.trace {
                match args.get(1) {
                    Some(projection) => {
                        let mut traced = Vec::new();
                        ev.per_item(projection, &focus, scope, |_, r| {
                            traced.extend(r);
                            Ok(true)
                        })?;
                        sink.trace(&name, &traced);
                    }
                    None => sink.trace(&name, &focus),
                }
            }
            focus
        }
        F::Now => value_item(Some(Value::DateTime(ev.now()))),
        F::Today => {
            let now = ev.now();
            value_item(Some(Value::Date(now.truncate(crate::value::Precision::Day))))
        }
        F::TimeOfDay => {
            let n = ev.now();
            value_item(Some(Value::Time(crate::value::Time {
                hour: n.hour,
                minute: n.minute,
                second: n.second,
                millisecond: n.millisecond,
                precision: crate::value::Precision::Millisecond,
            })))
        }
        F::Is => {
            let spec = type_arg(&args[0])?;
            match singleton(&focus, f)? {
                Some(item) => bool_item(is_type(item, &spec, false)?),
                None => Vec::new(),
            }
        }
        F::As => {
            let spec = type_arg(&args[0])?;
            // unlike the `as` operator (see `Expr::As`), the function keeps N1's rule
            if focus.len() > 1 {
                return Err(EvalError::NotSingleton("as()".into()));
            }
            filter_type(focus, &spec)?
        }
        F::Type => focus
            .iter()
            .map(|i| {
                let (namespace, name) = match &i.0 {
                    Repr::Node(_) => ("FHIR", i.fhir_type().to_owned()),
                    Repr::Value(v) => ("System", v.type_name().trim_start_matches("System.").to_owned()),
                };
                Item::from_value(Value::Type { namespace: namespace.into(), name })
            })
            .collect(),
        F::Aggregate => {
            let mut total = ev.arg(args, 1, scope)?;
            for (i, item) in focus.iter().enumerate() {
                let this = std::slice::from_ref(item);
                total = ev.eval(&args[0], Scope { this, index: Some(i), total: Some(&total) })?;
            }
            total
        }
        F::Sort => sort(ev, args, focus, scope)?,
        _ => return Err(EvalError::Unsupported(f.name().into())),
    })
}

fn sort<'a>(
    ev: &Evaluator<'_, 'a>,
    args: &[Expr],
    focus: Collection<'a>,
    scope: Scope<'_, 'a>,
) -> Result<Collection<'a>> {
    let mut keyed: Vec<(Vec<Option<Value>>, Item<'a>)> = Vec::with_capacity(focus.len());
    for (i, item) in focus.into_iter().enumerate() {
        let mut keys = Vec::with_capacity(args.len());
        for arg in args {
            let e = match arg {
                Expr::Negate(inner) => &**inner,
                other => other,
            };
            let this = std::slice::from_ref(&item);
            let r = ev.eval(e, Scope { this, index: Some(i), total: scope.total })?;
            keys.push(ops::singleton_value(&r, "sort()")?);
        }
        if args.is_empty() {
            keys.push(item.to_value());
        }
        keyed.push((keys, item));
    }
    let descending: Vec<bool> = args.iter().map(|a| matches!(a, Expr::Negate(_))).collect();
    let mut failed = false;
    keyed.sort_by(|(a, _), (b, _)| {
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            // an empty key sorts first, whichever the direction
            let o = match (x, y) {
                (None, None) => continue,
                (None, Some(_)) => return std::cmp::Ordering::Less,
                (Some(_), None) => return std::cmp::Ordering::Greater,
                (Some(x), Some(y)) => match ops::compare_values(x, y) {
                    Ok(Some(o)) => o,
                    Ok(None) => std::cmp::Ordering::Equal,
                    Err(_) => {
                        failed = true;
                        std::cmp::Ordering::Equal
                    }
                },
            };
            let o = if descending.get(i).copied().unwrap_or(false) { o.reverse() } else { o };
            if o != std::cmp::Ordering::Equal {
                return o;
            }
        }
        std::cmp::Ordering::Equal
    });
    if failed {
        return Err(EvalError::Type("sort() keys cannot be compared".into()));
    }
    Ok(keyed.into_iter().map(|(_, i)| i).collect())
}
