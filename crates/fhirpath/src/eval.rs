//! The evaluator: walks the expression tree over collections of [`Item`]s.

use crate::item::{Node, Repr, class_of_json};
use crate::model::{Kind, UNKNOWN, model};
use crate::parser::{BinOp, Expr, TypeSpec};
use crate::value::{DateTime, Value};
use crate::{Environment, EvalError, Item, functions, ops};
use serde_json::Value as Json;

pub(crate) type Collection<'a> = Vec<Item<'a>>;
pub(crate) type Result<T, E = EvalError> = std::result::Result<T, E>;

/// What `$this`, `$index` and `$total` mean where a sub-expression is evaluated.
#[derive(Clone, Copy)]
pub(crate) struct Scope<'s, 'a> {
    /// `$this`: the item being iterated, or the context at the top level.
    pub this: &'s [Item<'a>],
    pub index: Option<usize>,
    pub total: Option<&'s [Item<'a>]>,
}

pub(crate) struct Evaluator<'e, 'a> {
    pub env: &'e Environment<'a>,
    now: std::cell::OnceCell<DateTime>,
}

impl<'e, 'a> Evaluator<'e, 'a> {
    pub fn new(env: &'e Environment<'a>) -> Self {
        Evaluator { env, now: std::cell::OnceCell::new() }
    }

    pub fn now(&self) -> DateTime {
        *self.now.get_or_init(|| self.env.now.unwrap_or_else(DateTime::now))
    }

    pub fn run(&self, root: &Expr) -> Result<Collection<'a>> {
        let context: Vec<Item<'a>> = self.env.context.iter().cloned().collect();
        self.eval(root, Scope { this: &context, index: None, total: None })
    }

    /// Evaluates `e` with the scope's `$this` as focus.
    pub fn eval(&self, e: &Expr, scope: Scope<'_, 'a>) -> Result<Collection<'a>> {
        match e {
            Expr::Empty => Ok(Vec::new()),
            Expr::Literal(v) => Ok(vec![Item::from_value(v.clone())]),
            Expr::Member(name) => self.root_member(name, scope),
            Expr::Call(f, args) => functions::call(self, *f, args, scope.this.to_vec(), scope),
            Expr::Path(left, right) => {
                if self.env.strict && ordered_step(right) && unordered_result(left) {
                    return Err(EvalError::Type("an ordered function applied to an unordered collection".into()));
                }
                let focus = self.eval(left, scope)?;
                self.invoke(right, focus, scope)
            }
            Expr::This => Ok(scope.this.to_vec()),
            Expr::Index => Ok(scope.index.map(|i| Item::from_value(Value::Integer(i as i64))).into_iter().collect()),
            Expr::Total => Ok(scope.total.map(<[Item<'a>]>::to_vec).unwrap_or_default()),
            Expr::Variable(name) => self.variable(name),
            Expr::Indexer(coll, index) => {
                let coll = self.eval(coll, scope)?;
                let index = self.eval(index, scope)?;
                let Some(i) = ops::singleton_integer(&index, "indexer")? else { return Ok(Vec::new()) };
                Ok(usize::try_from(i).ok().and_then(|i| coll.into_iter().nth(i)).into_iter().collect())
            }
            Expr::Negate(inner) => {
                let v = self.eval(inner, scope)?;
                ops::negate(v)
            }
            Expr::Binary(op, l, r) => self.binary(*op, l, r, scope),
            Expr::Is(inner, spec) => {
                let v = self.eval(inner, scope)?;
                match v.as_slice() {
                    [] => Ok(Vec::new()),
                    [item] => Ok(vec![Item::from_value(Value::Boolean(is_type(item, spec, false)?))]),
                    _ => Err(EvalError::NotSingleton("is".into())),
                }
            }
            Expr::As(inner, spec) => {
                let v = self.eval(inner, scope)?;
                // N1 wants a single item; the R4 search parameters apply `as` to collections
                // (`Observation.component.value as Quantity`), so only strict mode refuses them
                if v.len() > 1 && self.env.strict {
                    return Err(EvalError::NotSingleton("as".into()));
                }
                filter_type(v, spec)
            }
        }
    }

    /// Applies a member access or function call to `focus`.
    pub fn invoke(&self, step: &Expr, focus: Collection<'a>, scope: Scope<'_, 'a>) -> Result<Collection<'a>> {
        match step {
            Expr::Member(name) => navigate_all(&focus, name),
            Expr::Call(f, args) => functions::call(self, *f, args, focus, scope),
            _ => Err(EvalError::Type("invalid path step".into())),
        }
    }

    /// A name at the start of a path: an element of `$this`, or the type of the context.
    fn root_member(&self, name: &str, scope: Scope<'_, 'a>) -> Result<Collection<'a>> {
        let m = model();
        let starts_upper = name.chars().next().is_some_and(|c| c.is_ascii_uppercase());
        if starts_upper && let Some(class) = m.class_named(name) {
            let is_element = scope
                .this
                .iter()
                .any(|i| i.class().is_some_and(|c| m.class(c).by_name.contains_key(name) || c == UNKNOWN));
            if !is_element {
                let matching: Vec<Item<'a>> = scope
                    .this
                    .iter()
                    .filter(|i| i.class().is_some_and(|c| m.derives_from(c, class)))
                    .cloned()
                    .collect();
                if matching.is_empty() && self.env.strict && !scope.this.is_empty() {
                    return Err(EvalError::UnknownElement { type_name: "the context".into(), element: name.into() });
                }
                return Ok(matching);
            }
        }
        navigate_all(scope.this, name)
    }

    fn variable(&self, name: &str) -> Result<Collection<'a>> {
        let env = self.env;
        let string = |s: String| Ok(vec![Item::from_value(Value::String(s))]);
        match name {
            "resource" => Ok(env.resource.iter().cloned().collect()),
            "rootResource" => Ok(env.root_resource.iter().cloned().collect()),
            "context" => Ok(env.context.iter().cloned().collect()),
            "ucum" => string("http://unitsofmeasure.org".into()),
            "sct" => string("http://snomed.info/sct".into()),
            "loinc" => string("http://loinc.org".into()),
            _ => {
                if let Some(v) = env.variables.get(name) {
                    return Ok(v.clone());
                }
                if let Some(vs) = name.strip_prefix("vs-") {
                    return string(format!("http://hl7.org/fhir/ValueSet/{vs}"));
                }
                if let Some(ext) = name.strip_prefix("ext-") {
                    return string(format!("http://hl7.org/fhir/StructureDefinition/{ext}"));
                }
                Err(EvalError::UnknownVariable(name.into()))
            }
        }
    }

    fn binary(&self, op: BinOp, l: &Expr, r: &Expr, scope: Scope<'_, 'a>) -> Result<Collection<'a>> {
        let boolean = |b: Option<bool>| Ok(b.map(|b| Item::from_value(Value::Boolean(b))).into_iter().collect());
        match op {
            BinOp::And | BinOp::Or | BinOp::Implies => {
                let a = ops::to_boolean(&self.eval(l, scope)?, "and/or")?;
                // short-circuit where the left side decides
                match (op, a) {
                    (BinOp::And, Some(false)) => return boolean(Some(false)),
                    (BinOp::Or, Some(true)) => return boolean(Some(true)),
                    (BinOp::Implies, Some(false)) => return boolean(Some(true)),
                    _ => {}
                }
                let b = ops::to_boolean(&self.eval(r, scope)?, "and/or")?;
                boolean(match op {
                    BinOp::And => match (a, b) {
                        (_, Some(false)) => Some(false),
                        (Some(true), Some(true)) => Some(true),
                        _ => None,
                    },
                    BinOp::Or => match (a, b) {
                        (_, Some(true)) => Some(true),
                        (Some(false), Some(false)) => Some(false),
                        _ => None,
                    },
                    _ => match (a, b) {
                        (_, Some(true)) => Some(true),
                        (Some(true), b) => b,
                        _ => None,
                    },
                })
            }
            BinOp::Xor => {
                let a = ops::to_boolean(&self.eval(l, scope)?, "xor")?;
                let b = ops::to_boolean(&self.eval(r, scope)?, "xor")?;
                boolean(a.zip(b).map(|(a, b)| a != b))
            }
            _ => {
                let a = self.eval(l, scope)?;
                let b = self.eval(r, scope)?;
                ops::binary(op, a, b)
            }
        }
    }
}

/// Pushes the items a JSON member yields (arrays flattened, primitives joined with `_name`).
fn push_member<'a>(
    value: Option<&'a Json>,
    ext: Option<&'a Json>,
    class: crate::model::ClassId,
    out: &mut Vec<Item<'a>>,
) {
    let primitive = matches!(model().class(class).kind, Kind::Primitive(_));
    if primitive || ext.is_some() {
        let at = |j: Option<&'a Json>, i: usize| match j {
            Some(Json::Array(a)) => a.get(i).filter(|v| !v.is_null()),
            Some(Json::Null) | None => None,
            Some(v) if i == 0 => Some(v),
            Some(_) => None,
        };
        let len = |j: Option<&Json>| match j {
            Some(Json::Array(a)) => a.len(),
            Some(Json::Null) | None => 0,
            Some(_) => 1,
        };
        for i in 0..len(value).max(len(ext)) {
            let (v, e) = (at(value, i), at(ext, i));
            if v.is_some() || e.is_some() {
                let c = v.map_or(class, |v| class_of_json(class, v));
                out.push(Item::node(v, e, c));
            }
        }
        return;
    }
    match value {
        Some(Json::Array(a)) => {
            out.extend(a.iter().filter(|v| !v.is_null()).map(|v| Item::node(Some(v), None, class_of_json(class, v))));
        }
        Some(Json::Null) | None => {}
        Some(v) => out.push(Item::node(Some(v), None, class_of_json(class, v))),
    }
}

/// A step that depends on the order of its input (refused after `children()` in strict mode).
fn ordered_step(e: &Expr) -> bool {
    use functions::Function as F;
    matches!(e, Expr::Call(F::First | F::Last | F::Tail | F::Skip | F::Take | F::Single, _))
}

/// An expression whose result has no defined order.
fn unordered_result(e: &Expr) -> bool {
    use functions::Function as F;
    match e {
        Expr::Path(_, right) => unordered_result(right),
        Expr::Call(F::Children | F::Descendants, _) => true,
        _ => false,
    }
}

/// `name` on each item. A name that is an element of none of the items' types is an error
/// (a misspelt path, `valueQuantity` for `value`); mixed collections (`descendants()`) skip
/// the items that lack it.
fn navigate_all<'a>(focus: &[Item<'a>], name: &str) -> Result<Collection<'a>> {
    let mut out = Vec::new();
    let mut first_error = None;
    let mut any_known = false;
    for item in focus {
        match navigate(item, name, &mut out) {
            Ok(()) => any_known = true,
            Err(e) => first_error = first_error.or(Some(e)),
        }
    }
    match first_error {
        Some(e) if !any_known => Err(e),
        _ => Ok(out),
    }
}

/// `item.name`.
pub(crate) fn navigate<'a>(item: &Item<'a>, name: &str, out: &mut Vec<Item<'a>>) -> Result<()> {
    let node = match &item.0 {
        Repr::Node(n) => n,
        Repr::Value(Value::Type { namespace, name: type_name }) => {
            match name {
                "namespace" => out.push(Item::from_value(Value::String(namespace.clone()))),
                "name" => out.push(Item::from_value(Value::String(type_name.clone()))),
                _ => {}
            }
            return Ok(());
        }
        Repr::Value(Value::Quantity(q)) => {
            match name {
                "value" => out.push(Item::from_value(Value::Decimal(q.value))),
                "unit" | "code" => out.push(Item::from_value(Value::String(q.unit.clone()))),
                _ => {}
            }
            return Ok(());
        }
        Repr::Value(_) => return Ok(()),
    };
    let m = model();
    let class = m.class(node.class);
    let object = match class.kind {
        Kind::Primitive(_) => node.ext,
        _ => node.value,
    };
    let Some(Json::Object(obj)) = object else { return Ok(()) };
    if node.class == UNKNOWN {
        let ext = obj.get(&format!("_{name}") as &str);
        push_member(obj.get(name), ext, UNKNOWN, out);
        return Ok(());
    }
    let Some(&field) = class.by_name.get(name) else {
        return Err(EvalError::UnknownElement { type_name: class.name.to_string(), element: name.into() });
    };
    let variants = &class.fields[field as usize].variants;
    if variants.len() > obj.len() {
        // a choice with many types (`Extension.value[x]` has fifty): look at the object's few
        // keys instead of probing for every possible name
        for (key, v) in obj {
            if !key.starts_with(name) {
                continue;
            }
            if let Some(variant) = variants.iter().find(|var| *var.json == **key) {
                let e = if matches!(m.class(variant.class).kind, Kind::Primitive(_)) {
                    obj.get(&*variant.ext)
                } else {
                    None
                };
                push_member(Some(v), e, variant.class, out);
            }
        }
        // a primitive choice present only as `_valueX`
        for (key, e) in obj {
            if let Some(json) = key.strip_prefix('_')
                && json.starts_with(name)
                && !obj.contains_key(json)
                && let Some(variant) = variants.iter().find(|var| *var.json == *json)
            {
                push_member(None, Some(e), variant.class, out);
            }
        }
        return Ok(());
    }
    for variant in variants {
        let v = obj.get(&*variant.json);
        let e = if matches!(m.class(variant.class).kind, Kind::Primitive(_)) { obj.get(&*variant.ext) } else { None };
        if v.is_some() || e.is_some() {
            push_member(v, e, variant.class, out);
        }
    }
    Ok(())
}

/// All child nodes of an item, in definition (or JSON) order.
pub(crate) fn children<'a>(item: &Item<'a>, out: &mut Vec<Item<'a>>) {
    let Some(node) = item.as_node_repr() else { return };
    let m = model();
    let class = m.class(node.class);
    let object = match class.kind {
        Kind::Primitive(_) => node.ext,
        _ => node.value,
    };
    let Some(Json::Object(obj)) = object else { return };
    if node.class == UNKNOWN {
        for (k, v) in obj {
            if k.starts_with('_') || k == "resourceType" {
                continue;
            }
            push_member(Some(v), obj.get(&format!("_{k}") as &str), UNKNOWN, out);
        }
        return;
    }
    for field in &class.fields {
        for variant in &field.variants {
            let v = obj.get(&*variant.json);
            let e =
                if matches!(m.class(variant.class).kind, Kind::Primitive(_)) { obj.get(&*variant.ext) } else { None };
            if v.is_some() || e.is_some() {
                push_member(v, e, variant.class, out);
            }
        }
    }
}

/// Whether `item` is of the type `spec` names (or derives from it). With `exact_primitive`
/// (for `as`/`ofType`, as the suite expects), a primitive matches its own type only: a `code`
/// `is(string)` but is not `as(string)`.
pub(crate) fn is_type(item: &Item<'_>, spec: &TypeSpec, exact_primitive: bool) -> Result<bool> {
    let m = model();
    let ns = spec.namespace.as_deref();
    let system = |name: &str| -> Option<&'static str> {
        Some(match name {
            "Boolean" => "System.Boolean",
            "Integer" => "System.Integer",
            "Decimal" => "System.Decimal",
            "String" => "System.String",
            "Date" => "System.Date",
            "DateTime" => "System.DateTime",
            "Time" => "System.Time",
            "Quantity" => "System.Quantity",
            _ => return None,
        })
    };
    let fhir_class = if ns == Some("System") { None } else { m.class_named(&spec.name) };
    let system_type = if ns == Some("FHIR") { None } else { system(&spec.name) };
    if fhir_class.is_none() && system_type.is_none() && ns.is_none() {
        return Err(EvalError::UnknownType(spec.name.clone()));
    }
    Ok(match &item.0 {
        Repr::Node(Node { class, .. }) => fhir_class.is_some_and(|c| {
            if exact_primitive && matches!(m.class(*class).kind, Kind::Primitive(_)) {
                *class == c
            } else {
                m.derives_from(*class, c)
            }
        }),
        Repr::Value(v) => {
            system_type == Some(v.type_name())
                || (ns.is_none() && v.type_name() == "System.Quantity" && spec.name == "Quantity")
        }
    })
}

/// The items of `items` that are of type `spec` (`as` / `ofType`).
pub(crate) fn filter_type<'a>(items: Collection<'a>, spec: &TypeSpec) -> Result<Collection<'a>> {
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        if is_type(&item, spec, true)? {
            out.push(item);
        }
    }
    Ok(out)
}
