//! The function library: names and arities are checked at compile time, then dispatched here.

mod boundary;
mod convert;
mod fhir;
mod math;
mod text;

use crate::eval::{Collection, Evaluator, Result, Scope, children, filter_type, is_type};
use crate::item::Repr;
use crate::ops::{self, contains_item, push_distinct, to_boolean};
use crate::parser::{Expr, TypeSpec};
use crate::value::Value;
use crate::{CompileError, EvalError, Item};

macro_rules! functions {
    ($($variant:ident = $name:literal ($min:literal, $max:literal)),* $(,)?) => {
        /// A FHIRPath function, resolved from its name at compile time.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(crate) enum Function { $($variant),* }

        impl Function {
            /// The function called `name` with `args`, if the name and arity are known.
            pub(crate) fn by_name(name: &str, args: &[Expr]) -> std::result::Result<Function, CompileError> {
                let (f, min, max) = match name {
                    $($name => (Function::$variant, $min, $max),)*
                    _ => return Err(CompileError::UnknownFunction(name.to_owned())),
                };
                if args.len() < min || args.len() > max {
                    return Err(CompileError::Arity(name.to_owned()));
                }
                Ok(f)
            }

            /// The function's FHIRPath name.
            pub(crate) fn name(self) -> &'static str {
                match self { $(Function::$variant => $name),* }
            }
        }
    };
}

functions! {
    Empty = "empty"(0, 0),
    Exists = "exists"(0, 1),
    All = "all"(1, 1),
    AllTrue = "allTrue"(0, 0),
    AnyTrue = "anyTrue"(0, 0),
    AllFalse = "allFalse"(0, 0),
    AnyFalse = "anyFalse"(0, 0),
    SubsetOf = "subsetOf"(1, 1),
    SupersetOf = "supersetOf"(1, 1),
    Count = "count"(0, 0),
    Distinct = "distinct"(0, 0),
    IsDistinct = "isDistinct"(0, 0),
    Where = "where"(1, 1),
    Select = "select"(1, 1),
    Repeat = "repeat"(1, 1),
    OfType = "ofType"(1, 1),
    Single = "single"(0, 0),
    First = "first"(0, 0),
    Last = "last"(0, 0),
    Tail = "tail"(0, 0),
    Skip = "skip"(1, 1),
    Take = "take"(1, 1),
    Intersect = "intersect"(1, 1),
    Exclude = "exclude"(1, 1),
    Union = "union"(1, 1),
    Combine = "combine"(1, 1),
    Iif = "iif"(2, 3),
    Not = "not"(0, 0),
    ToBoolean = "toBoolean"(0, 0),
    ConvertsToBoolean = "convertsToBoolean"(0, 0),
    ToInteger = "toInteger"(0, 0),
    ConvertsToInteger = "convertsToInteger"(0, 0),
    ToDecimal = "toDecimal"(0, 0),
    ConvertsToDecimal = "convertsToDecimal"(0, 0),
    ToStringFn = "toString"(0, 0),
    ConvertsToString = "convertsToString"(0, 0),
    ToDate = "toDate"(0, 0),
    ConvertsToDate = "convertsToDate"(0, 0),
    ToDateTime = "toDateTime"(0, 0),
    ConvertsToDateTime = "convertsToDateTime"(0, 0),
    ToTime = "toTime"(0, 0),
    ConvertsToTime = "convertsToTime"(0, 0),
    ToQuantity = "toQuantity"(0, 1),
    ConvertsToQuantity = "convertsToQuantity"(0, 1),
    IndexOf = "indexOf"(1, 1),
    LastIndexOf = "lastIndexOf"(1, 1),
    Substring = "substring"(1, 2),
    StartsWith = "startsWith"(1, 1),
    EndsWith = "endsWith"(1, 1),
    Contains = "contains"(1, 1),
    Upper = "upper"(0, 0),
    Lower = "lower"(0, 0),
    Replace = "replace"(2, 2),
    Matches = "matches"(1, 1),
    MatchesFull = "matchesFull"(1, 1),
    ReplaceMatches = "replaceMatches"(2, 2),
    Length = "length"(0, 0),
    ToChars = "toChars"(0, 0),
    Trim = "trim"(0, 0),
    Split = "split"(1, 1),
    Join = "join"(0, 1),
    Encode = "encode"(1, 1),
    Decode = "decode"(1, 1),
    Escape = "escape"(1, 1),
    Unescape = "unescape"(1, 1),
    Abs = "abs"(0, 0),
    Ceiling = "ceiling"(0, 0),
    Exp = "exp"(0, 0),
    Floor = "floor"(0, 0),
    Ln = "ln"(0, 0),
    Log = "log"(1, 1),
    Power = "power"(1, 1),
    Round = "round"(0, 1),
    Sqrt = "sqrt"(0, 0),
    Truncate = "truncate"(0, 0),
    Children = "children"(0, 0),
    Descendants = "descendants"(0, 0),
    Trace = "trace"(1, 2),
    Now = "now"(0, 0),
    TimeOfDay = "timeOfDay"(0, 0),
    Today = "today"(0, 0),
    Is = "is"(1, 1),
    As = "as"(1, 1),
    Type = "type"(0, 0),
    Aggregate = "aggregate"(1, 2),
    Sort = "sort"(0, 16),
    Extension = "extension"(1, 1),
    HasValue = "hasValue"(0, 0),
    GetValue = "getValue"(0, 0),
    Resolve = "resolve"(0, 0),
    ConformsTo = "conformsTo"(1, 1),
    MemberOf = "memberOf"(1, 1),
    HtmlChecks = "htmlChecks"(0, 0),
    LowBoundary = "lowBoundary"(0, 1),
    HighBoundary = "highBoundary"(0, 1),
    Precision = "precision"(0, 0),
    Comparable = "comparable"(1, 1),
}

pub(crate) fn bool_item<'a>(b: bool) -> Collection<'a> {
    vec![Item::from_value(Value::Boolean(b))]
}

pub(crate) fn value_item<'a>(v: Option<Value>) -> Collection<'a> {
    v.map(Item::from_value).into_iter().collect()
}

/// The type named by a function argument (`ofType(Quantity)`, `as(FHIR.string)`).
fn type_arg(e: &Expr) -> Result<TypeSpec> {
    match e {
        Expr::Member(name) => Ok(TypeSpec { namespace: None, name: name.to_string() }),
        Expr::Path(ns, name) => match (&**ns, &**name) {
            (Expr::Member(ns), Expr::Member(name)) => {
                Ok(TypeSpec { namespace: Some(ns.to_string()), name: name.to_string() })
            }
            _ => Err(EvalError::Type("expected a type name".into())),
        },
        _ => Err(EvalError::Type("expected a type name".into())),
    }
}

impl<'a> Evaluator<'_, 'a> {
    /// An argument evaluated as an ordinary expression (with the caller's `$this`).
    pub(crate) fn arg(&self, args: &[Expr], i: usize, scope: Scope<'_, 'a>) -> Result<Collection<'a>> {
        match args.get(i) {
            Some(e) => self.eval(e, scope),
            None => Ok(Vec::new()),
        }
    }

    /// An argument evaluated once per item of `focus`, with `$this` and `$index` set.
    fn per_item<F>(&self, e: &Expr, focus: &[Item<'a>], scope: Scope<'_, 'a>, mut each: F) -> Result<()>
    where
        F: FnMut(usize, Collection<'a>) -> Result<bool>,
    {
        for (i, item) in focus.iter().enumerate() {
            let this = std::slice::from_ref(item);
            let result = self.eval(e, Scope { this, index: Some(i), total: scope.total })?;
            if !each(i, result)? {
                break;
            }
        }
        Ok(())
    }
}

fn singleton<'b, 'a>(focus: &'b [Item<'a>], f: Function) -> Result<Option<&'b Item<'a>>> {
    match focus {
        [] => Ok(None),
        [x] => Ok(Some(x)),
        _ => Err(EvalError::NotSingleton(format!("{}()", f.name()))),
    }
}

fn boolean_items(focus: &[Item<'_>], f: Function) -> Result<Vec<bool>> {
    focus
        .iter()
        .map(|i| match i.to_value() {
            Some(Value::Boolean(b)) => Ok(b),
            _ => Err(EvalError::Type(format!("{}() applies to Booleans", f.name()))),
        })
        .collect()
}

pub(crate) fn call<'a>(
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
        F::ToBoolean
        | F::ConvertsToBoolean
        | F::ToInteger
        | F::ConvertsToInteger
        | F::ToDecimal
        | F::ConvertsToDecimal
        | F::ToStringFn
        | F::ConvertsToString
        | F::ToDate
        | F::ConvertsToDate
        | F::ToDateTime
        | F::ConvertsToDateTime
        | F::ToTime
        | F::ConvertsToTime
        | F::ToQuantity
        | F::ConvertsToQuantity => {
            let Some(item) = singleton(&focus, f)? else { return Ok(Vec::new()) };
            let unit = match args.first() {
                Some(_) => match ops::singleton_value(&ev.arg(args, 0, scope)?, f.name())? {
                    Some(Value::String(u)) => Some(u),
                    _ => None,
                },
                None => None,
            };
            convert::convert(f, item, unit.as_deref())?
        }
        F::IndexOf
        | F::LastIndexOf
        | F::Substring
        | F::StartsWith
        | F::EndsWith
        | F::Contains
        | F::Upper
        | F::Lower
        | F::Replace
        | F::Matches
        | F::MatchesFull
        | F::ReplaceMatches
        | F::Length
        | F::ToChars
        | F::Trim
        | F::Split
        | F::Encode
        | F::Decode
        | F::Escape
        | F::Unescape => {
            let Some(item) = singleton(&focus, f)? else { return Ok(Vec::new()) };
            let mut values = Vec::with_capacity(args.len());
            for i in 0..args.len() {
                match ops::singleton_value(&ev.arg(args, i, scope)?, f.name())? {
                    Some(v) => values.push(v),
                    None => return Ok(Vec::new()),
                }
            }
            text::string_function(f, item, &values)?
        }
        F::Join => {
            let sep = match ops::singleton_value(&ev.arg(args, 0, scope)?, "join()")? {
                Some(Value::String(s)) => s,
                _ => String::new(),
            };
            let mut parts = Vec::with_capacity(focus.len());
            for item in &focus {
                match item.to_value() {
                    Some(Value::String(s)) => parts.push(s),
                    _ => return Err(EvalError::Type("join() applies to strings".into())),
                }
            }
            value_item(Some(Value::String(parts.join(&sep))))
        }
        F::Abs | F::Ceiling | F::Exp | F::Floor | F::Ln | F::Log | F::Power | F::Round | F::Sqrt | F::Truncate => {
            let Some(item) = singleton(&focus, f)? else { return Ok(Vec::new()) };
            let arg = match args.first() {
                Some(_) => match ops::singleton_value(&ev.arg(args, 0, scope)?, f.name())? {
                    Some(v) => Some(v),
                    None => return Ok(Vec::new()),
                },
                None => None,
            };
            math::math(f, item, arg)?
        }
        F::LowBoundary | F::HighBoundary | F::Precision => {
            let Some(item) = singleton(&focus, f)? else { return Ok(Vec::new()) };
            let digits = ops::singleton_integer(&ev.arg(args, 0, scope)?, f.name())?;
            boundary::boundary(f, item, digits)?
        }
        F::Comparable => {
            let Some(item) = singleton(&focus, f)? else { return Ok(Vec::new()) };
            let other = ev.arg(args, 0, scope)?;
            match (item.to_value(), ops::singleton_value(&other, "comparable()")?) {
                (Some(Value::Quantity(a)), Some(Value::Quantity(b))) => {
                    bool_item(!matches!(a.comparable(&b), crate::value::Comparable::Incompatible))
                }
                _ => Vec::new(),
            }
        }
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
        F::Extension | F::HasValue | F::GetValue | F::Resolve | F::ConformsTo | F::MemberOf | F::HtmlChecks => {
            fhir::fhir_function(ev, f, args, focus, scope)?
        }
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
