//! Existence, filtering, subsetting and combining functions, `iif()` and `not()`.

use super::{Function, bool_item, boolean_items, singleton, type_arg, value_item};
use crate::EvalError;
use crate::eval::{Collection, Evaluator, Result, Scope, filter_type};
use crate::ops::{self, contains_item, push_distinct, to_boolean};
use crate::parser::Expr;
use crate::value::Value;

pub(super) fn collection_function<'a>(
    ev: &Evaluator<'_, 'a>,
    f: Function,
    args: &[Expr],
    focus: Collection<'a>,
    scope: Scope<'_, 'a>,
) -> Result<Collection<'a>> {
    use Function as F;
    Ok(match f {
        F::Empty => bool_item(focus.is_empty()),
        F::Exists => match args.first() {
            None => bool_item(!focus.is_empty()),
            Some(crit) => {
                let mut found = false;
                ev.per_item(crit, &focus, scope, |_, r| {
                    found = to_boolean(&r, "exists()")? == Some(true);
                    Ok(!found)
                })?;
                bool_item(found)
            }
        },
        F::All => {
            let mut all = true;
            ev.per_item(&args[0], &focus, scope, |_, r| {
                all = to_boolean(&r, "all()")? == Some(true);
                Ok(all)
            })?;
            bool_item(all)
        }
        F::AllTrue => bool_item(boolean_items(&focus, f)?.iter().all(|b| *b)),
        F::AnyTrue => bool_item(boolean_items(&focus, f)?.iter().any(|b| *b)),
        F::AllFalse => bool_item(boolean_items(&focus, f)?.iter().all(|b| !*b)),
        F::AnyFalse => bool_item(boolean_items(&focus, f)?.iter().any(|b| !*b)),
        F::SubsetOf => {
            let other = ev.arg(args, 0, scope)?;
            bool_item(focus.iter().all(|i| contains_item(&other, i)))
        }
        F::SupersetOf => {
            let other = ev.arg(args, 0, scope)?;
            bool_item(other.iter().all(|i| contains_item(&focus, i)))
        }
        F::Count => value_item(Some(Value::Integer(focus.len() as i64))),
        F::Distinct => {
            let mut out = Vec::with_capacity(focus.len());
            push_distinct(&mut out, focus);
            out
        }
        F::IsDistinct => {
            let n = focus.len();
            let mut out = Vec::with_capacity(n);
            push_distinct(&mut out, focus);
            bool_item(out.len() == n)
        }
        F::Where => {
            let mut out = Vec::new();
            ev.per_item(&args[0], &focus, scope, |i, r| {
                if to_boolean(&r, "where()")? == Some(true) {
                    out.push(focus[i].clone());
                }
                Ok(true)
            })?;
            out
        }
        F::Select => {
            let mut out = Vec::new();
            ev.per_item(&args[0], &focus, scope, |_, r| {
                out.extend(r);
                Ok(true)
            })?;
            out
        }
        F::Repeat => {
            let mut out: Collection<'a> = Vec::new();
            let mut pending = focus;
            while !pending.is_empty() {
                let mut next = Vec::new();
                ev.per_item(&args[0], &pending, scope, |_, r| {
                    for item in r {
                        if !contains_item(&out, &item) {
                            out.push(item.clone());
                            next.push(item);
                        }
                    }
                    Ok(true)
                })?;
                pending = next;
            }
            out
        }
        F::OfType => filter_type(focus, &type_arg(&args[0])?)?,
        F::Single => singleton(&focus, f)?.cloned().into_iter().collect(),
        F::First => focus.into_iter().next().into_iter().collect(),
        F::Last => focus.into_iter().last().into_iter().collect(),
        F::Tail => focus.into_iter().skip(1).collect(),
        F::Skip | F::Take => {
            let n = ops::singleton_integer(&ev.arg(args, 0, scope)?, f.name())?;
            let Some(n) = n else { return Ok(Vec::new()) };
            let n = usize::try_from(n.max(0)).unwrap_or(0);
            if f == F::Skip { focus.into_iter().skip(n).collect() } else { focus.into_iter().take(n).collect() }
        }
        F::Intersect => {
            let other = ev.arg(args, 0, scope)?;
            let mut out = Vec::new();
            push_distinct(&mut out, focus.into_iter().filter(|i| contains_item(&other, i)));
            out
        }
        F::Exclude => {
            let other = ev.arg(args, 0, scope)?;
            focus.into_iter().filter(|i| !contains_item(&other, i)).collect()
        }
        F::Union => {
            let other = ev.arg(args, 0, scope)?;
            let mut out = Vec::with_capacity(focus.len() + other.len());
            push_distinct(&mut out, focus);
            push_distinct(&mut out, other);
            out
        }
        F::Combine => {
            let mut out = focus;
            out.extend(ev.arg(args, 0, scope)?);
            out
        }
        F::Iif => {
            let item = singleton(&focus, f)?;
            let this_store;
            let inner = match item {
                Some(i) => {
                    this_store = [i.clone()];
                    Scope { this: &this_store, index: scope.index, total: scope.total }
                }
                None => scope,
            };
            let cond = ev.eval(&args[0], inner)?;
            let cond = match cond.as_slice() {
                [] => None,
                [c] => match c.to_value() {
                    Some(Value::Boolean(b)) => Some(b),
                    _ => return Err(EvalError::Type("iif() criterion must be a Boolean".into())),
                },
                _ => return Err(EvalError::NotSingleton("iif()".into())),
            };
            if cond == Some(true) { ev.eval(&args[1], inner)? } else { ev.arg(args, 2, inner)? }
        }
        F::Not => match to_boolean(&focus, "not()")? {
            Some(b) => bool_item(!b),
            None => Vec::new(),
        },
        _ => return Err(EvalError::Unsupported(f.name().into())),
    })
}
