//! Items of FHIRPath collections: borrowed JSON nodes with their FHIR type, or computed values.

use crate::model::{ANY_RESOURCE, ClassId, Kind, Sys, UNKNOWN, model};
use crate::value::{DateTime, Decimal, Quantity, Time, Value};
use serde_json::Value as Json;
use std::borrow::Cow;

/// A node of the evaluated JSON. For a primitive element, `value` is the JSON value and `ext`
/// the `_name` sibling object (id, extensions); either may be missing. A node with neither is
/// a resource known only by its type (a reference `resolve()` could not follow).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Node<'a> {
    pub value: Option<&'a Json>,
    pub ext: Option<&'a Json>,
    pub class: ClassId,
}

#[derive(Debug, Clone)]
pub(crate) enum Repr<'a> {
    Node(Node<'a>),
    Value(Value),
}

/// One item of a FHIRPath result: a node borrowed from the JSON or a computed System value.
///
/// [`fhir_type`](Item::fhir_type) names a node's FHIR type (`HumanName`, `dateTime`,
/// `BackboneElement`...; `Element` when the definitions do not type it) and a computed value's
/// System type (`System.String`, `System.Integer`, `System.Decimal`, `System.Boolean`,
/// `System.Date`, `System.DateTime`, `System.Time`, `System.Quantity`).
#[derive(Debug, Clone)]
pub struct Item<'a>(pub(crate) Repr<'a>);

impl<'a> Item<'a> {
    pub(crate) fn node(value: Option<&'a Json>, ext: Option<&'a Json>, class: ClassId) -> Item<'a> {
        Item(Repr::Node(Node { value, ext, class }))
    }

    /// A resource's JSON, typed by its `resourceType`.
    pub(crate) fn resource(json: &'a Json) -> Item<'a> {
        Item::node(Some(json), None, model().resource_class(json))
    }

    /// A node of a named FHIR type.
    pub(crate) fn typed(json: &'a Json, type_name: &str) -> Item<'a> {
        let m = model();
        match m.class_named(type_name) {
            Some(c) if matches!(m.class(c).kind, Kind::Resource) => Item::resource(json),
            Some(c) => Item::node(Some(json), None, c),
            None => Item::node(Some(json), None, UNKNOWN),
        }
    }

    /// A computed value.
    pub fn from_value(value: Value) -> Item<'a> {
        Item(Repr::Value(value))
    }

    /// A JSON node of the given FHIR type (for variables); `None` types it by `resourceType`.
    pub fn from_json(json: &'a Json, type_name: Option<&str>) -> Item<'a> {
        match type_name {
            Some(t) => Item::typed(json, t),
            None => Item::resource(json),
        }
    }

    /// The FHIR type of a node, or `System.*` for a computed value (see the type's docs).
    pub fn fhir_type(&self) -> &str {
        match &self.0 {
            Repr::Node(n) => &model().class(n.class).name,
            Repr::Value(v) => v.type_name(),
        }
    }

    /// The node's JSON (for a primitive, the value itself; `null` when it has only
    /// extensions), or the computed value rendered as JSON.
    pub fn json(&self) -> Cow<'a, Json> {
        match &self.0 {
            Repr::Node(Node { value: Some(v), .. }) => Cow::Borrowed(*v),
            Repr::Node(n) if n.ext.is_none() => {
                let mut m = serde_json::Map::new();
                m.insert("resourceType".into(), Json::String(model().class(n.class).name.to_string()));
                Cow::Owned(Json::Object(m))
            }
            Repr::Node(_) => Cow::Owned(Json::Null),
            Repr::Value(v) => Cow::Owned(v.to_json()),
        }
    }

    /// The JSON node, for items that are nodes of the evaluated JSON.
    pub fn as_node(&self) -> Option<&'a Json> {
        match &self.0 {
            Repr::Node(n) => n.value,
            Repr::Value(_) => None,
        }
    }

    /// The item as a System value: computed values, FHIR primitives with a value (a `date`
    /// becomes a `Date`, a `code` a `String`...) and Quantity-typed nodes.
    pub fn to_value(&self) -> Option<Value> {
        match &self.0 {
            Repr::Value(v) => Some(v.clone()),
            Repr::Node(n) => node_value(n),
        }
    }

    pub(crate) fn as_node_repr(&self) -> Option<&Node<'a>> {
        match &self.0 {
            Repr::Node(n) => Some(n),
            Repr::Value(_) => None,
        }
    }

    pub(crate) fn class(&self) -> Option<ClassId> {
        self.as_node_repr().map(|n| n.class)
    }
}

/// The class a JSON value found under an element of class `class` takes.
pub(crate) fn class_of_json(class: ClassId, json: &Json) -> ClassId {
    match class {
        ANY_RESOURCE => model().resource_class(json),
        UNKNOWN => match json {
            Json::Object(_) if json.get("resourceType").is_some() => model().resource_class(json),
            Json::String(_) => model().class_named("string").unwrap_or(UNKNOWN),
            Json::Bool(_) => model().class_named("boolean").unwrap_or(UNKNOWN),
            Json::Number(n) if n.is_i64() => model().class_named("integer").unwrap_or(UNKNOWN),
            Json::Number(_) => model().class_named("decimal").unwrap_or(UNKNOWN),
            _ => UNKNOWN,
        },
        c => c,
    }
}

fn node_value(n: &Node<'_>) -> Option<Value> {
    let class = model().class(n.class);
    let json = n.value?;
    match class.kind {
        Kind::Primitive(sys) => primitive_value(sys, json),
        _ if class.quantity => {
            let value = Decimal::parse(&json.get("value")?.to_string())?;
            let ucum = json.get("system").and_then(Json::as_str) == Some("http://unitsofmeasure.org");
            let unit = match (json.get("code").and_then(Json::as_str), json.get("unit").and_then(Json::as_str)) {
                (Some(code), _) if ucum => code,
                (_, Some(unit)) => unit,
                (Some(code), None) => code,
                (None, None) => "1",
            };
            Some(Value::Quantity(Quantity { value, unit: unit.to_owned() }))
        }
        _ => None,
    }
}

fn primitive_value(sys: Sys, json: &Json) -> Option<Value> {
    Some(match (sys, json) {
        (Sys::Boolean, Json::Bool(b)) => Value::Boolean(*b),
        (Sys::Integer, Json::Number(n)) if n.as_i64().is_some() => Value::Integer(n.as_i64()?),
        (Sys::Decimal | Sys::Integer, Json::Number(n)) => Value::Decimal(Decimal::parse(&n.to_string())?),
        (Sys::Date, Json::String(s)) => match DateTime::parse(s) {
            Some((d, false)) => Value::Date(d),
            _ => Value::String(s.clone()),
        },
        (Sys::DateTime, Json::String(s)) => match DateTime::parse(s) {
            Some((d, _)) => Value::DateTime(d),
            None => Value::String(s.clone()),
        },
        (Sys::Time, Json::String(s)) => Time::parse(s).map_or_else(|| Value::String(s.clone()), Value::Time),
        (_, Json::String(s)) => Value::String(s.clone()),
        (_, Json::Bool(b)) => Value::Boolean(*b),
        (_, Json::Number(n)) => match n.as_i64() {
            Some(i) => Value::Integer(i),
            None => Value::Decimal(Decimal::parse(&n.to_string())?),
        },
        _ => return None,
    })
}
