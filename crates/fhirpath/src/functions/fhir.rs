//! The FHIR additions to FHIRPath: `extension()`, `resolve()`, `hasValue()`, `memberOf()`,
//! `conformsTo()`...

use super::{Function, bool_item, value_item};
use crate::eval::{Collection, Evaluator, Result, Scope, navigate};
use crate::item::Repr;
use crate::model::{Kind, model};
use crate::ops;
use crate::parser::Expr;
use crate::value::Value;
use crate::{EvalError, Item};
use serde_json::Value as Json;

pub(super) fn fhir_function<'a>(
    ev: &Evaluator<'_, 'a>,
    f: Function,
    args: &[Expr],
    focus: Collection<'a>,
    scope: Scope<'_, 'a>,
) -> Result<Collection<'a>> {
    use Function as F;
    Ok(match f {
        F::Extension => {
            let Some(Value::String(url)) = ops::singleton_value(&ev.arg(args, 0, scope)?, "extension()")? else {
                return Ok(Vec::new());
            };
            let mut extensions = Vec::new();
            for item in &focus {
                // an item whose type has no extensions simply has none
                let _ = navigate(item, "extension", &mut extensions);
            }
            extensions
                .into_iter()
                .filter(|e| e.as_node().and_then(|j| j.get("url")).and_then(Json::as_str) == Some(url.as_str()))
                .collect()
        }
        F::HasValue => bool_item(matches!(focus.as_slice(), [item] if has_value(item))),
        F::GetValue => match focus.as_slice() {
            [item] if has_value(item) => value_item(item.to_value()),
            _ => Vec::new(),
        },
        F::Resolve => {
            let mut out = Vec::new();
            for item in &focus {
                if let Some(found) = resolve(ev, item) {
                    out.push(found);
                }
            }
            out
        }
        F::ConformsTo => {
            let Some(Value::String(url)) = ops::singleton_value(&ev.arg(args, 0, scope)?, "conformsTo()")? else {
                return Ok(Vec::new());
            };
            let m = model();
            let class = url
                .strip_prefix("http://hl7.org/fhir/StructureDefinition/")
                .and_then(|t| m.class_named(t))
                .ok_or_else(|| EvalError::Unsupported("conformsTo".into()))?;
            match focus.as_slice() {
                [] => Vec::new(),
                [item] => bool_item(item.class().is_some_and(|c| m.derives_from(c, class))),
                _ => return Err(EvalError::NotSingleton("conformsTo()".into())),
            }
        }
        F::MemberOf => {
            let Some(Value::String(url)) = ops::singleton_value(&ev.arg(args, 0, scope)?, "memberOf()")? else {
                return Ok(Vec::new());
            };
            let value_set = fhir::definitions()
                .value_set(&url)
                .filter(|vs| vs.is_checkable())
                .ok_or_else(|| EvalError::Unsupported("memberOf".into()))?;
            match focus.as_slice() {
                [] => Vec::new(),
                [item] => bool_item(member_of(value_set, item)),
                _ => return Err(EvalError::NotSingleton("memberOf()".into())),
            }
        }
        F::HtmlChecks => bool_item(true),
        _ => return Err(EvalError::Unsupported(f.name().into())),
    })
}

/// Whether a code, Coding or CodeableConcept is in an (embedded, required-binding) value set.
fn member_of(value_set: &fhir::definitions::ValueSet, item: &Item<'_>) -> bool {
    let coding_in = |c: &Json| match (c.get("system").and_then(Json::as_str), c.get("code").and_then(Json::as_str)) {
        (Some(system), Some(code)) => value_set.contains(system, code) == Some(true),
        (None, Some(code)) => value_set.contains_code(code) == Some(true),
        _ => false,
    };
    match item.fhir_type() {
        "Coding" => item.as_node().is_some_and(coding_in),
        "CodeableConcept" => item
            .as_node()
            .and_then(|j| j.get("coding"))
            .and_then(Json::as_array)
            .is_some_and(|codings| codings.iter().any(coding_in)),
        _ => match item.to_value() {
            Some(Value::String(code)) => value_set.contains_code(&code) == Some(true),
            _ => false,
        },
    }
}

fn has_value(item: &Item<'_>) -> bool {
    match &item.0 {
        Repr::Node(n) => n.value.is_some() && matches!(model().class(n.class).kind, Kind::Primitive(_)),
        Repr::Value(_) => true,
    }
}

/// The target of a Reference (or of a reference string): in the contained resources, in the
/// Bundle, or else, when the reference names a resource type, a typed item without content.
fn resolve<'a>(ev: &Evaluator<'_, 'a>, item: &Item<'a>) -> Option<Item<'a>> {
    let reference: &'a str = match item.as_node() {
        Some(Json::Object(o)) => o.get("reference")?.as_str()?,
        Some(Json::String(s)) => s,
        _ => return None,
    };
    let env = ev.env;
    if let Some(id) = reference.strip_prefix('#') {
        let roots = [env.root_resource.as_ref(), env.resource.as_ref()];
        for root in roots.into_iter().flatten().filter_map(Item::as_node) {
            if id.is_empty() {
                return Some(Item::resource(root));
            }
            if let Some(found) = contained(root, id) {
                return Some(Item::resource(found));
            }
        }
        return None;
    }
    let (type_name, id) = type_and_id(reference);
    if let Some(entries) = env.bundle.and_then(|b| b.get("entry")).and_then(Json::as_array) {
        for entry in entries {
            if entry.get("fullUrl").and_then(Json::as_str) == Some(reference)
                && let Some(r) = entry.get("resource")
            {
                return Some(Item::resource(r));
            }
        }
        if let (Some(t), Some(id)) = (type_name, id) {
            for entry in entries {
                let Some(r) = entry.get("resource") else { continue };
                if r.get("resourceType").and_then(Json::as_str) == Some(t)
                    && r.get("id").and_then(Json::as_str) == Some(id)
                {
                    return Some(Item::resource(r));
                }
            }
        }
    }
    let class = model().class_named(type_name?)?;
    matches!(model().class(class).kind, Kind::Resource).then(|| Item::node(None, None, class))
}

fn contained<'a>(root: &'a Json, id: &str) -> Option<&'a Json> {
    root.get("contained")?.as_array()?.iter().find(|r| r.get("id").and_then(Json::as_str) == Some(id))
}

/// `Patient/123`, `http://x/fhir/Patient/123/_history/2` -> (`Patient`, `123`).
fn type_and_id(reference: &str) -> (Option<&str>, Option<&str>) {
    let path = reference.split(['?', '#']).next().unwrap_or(reference);
    let mut parts: Vec<&str> = path.split('/').collect();
    if parts.len() >= 4 && parts[parts.len() - 2] == "_history" {
        parts.truncate(parts.len() - 2);
    }
    match parts.as_slice() {
        [.., t, id] if fhir::definitions().is_resource_type(t) => (Some(t), Some(id)),
        _ => (None, None),
    }
}
