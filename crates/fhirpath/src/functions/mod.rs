//! The function library: names and arities are checked at compile time, then dispatched here.

mod boundary;
mod collection;
mod convert;
mod fhir;
mod math;
mod text;
mod utility;

use crate::eval::{Collection, Evaluator, Result, Scope};
use crate::ops;
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
pub(super) fn type_arg(e: &Expr) -> Result<TypeSpec> {
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

pub(super) fn singleton<'b, 'a>(focus: &'b [Item<'a>], f: Function) -> Result<Option<&'b Item<'a>>> {
    match focus {
        [] => Ok(None),
        [x] => Ok(Some(x)),
        _ => Err(EvalError::NotSingleton(format!("{}()", f.name()))),
    }
}

pub(super) fn boolean_items(focus: &[Item<'_>], f: Function) -> Result<Vec<bool>> {
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
        F::Children
        | F::Descendants
        | F::Trace
        | F::Now
        | F::Today
        | F::TimeOfDay
        | F::Is
        | F::As
        | F::Type
        | F::Aggregate
        | F::Sort => utility::utility_function(ev, f, args, focus, scope)?,
        F::Extension | F::HasValue | F::GetValue | F::Resolve | F::ConformsTo | F::MemberOf | F::HtmlChecks => {
            fhir::fhir_function(ev, f, args, focus, scope)?
        }
        _ => collection::collection_function(ev, f, args, focus, scope)?,
    })
}
