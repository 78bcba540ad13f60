//! FHIRPath System values: what literals, operators and functions compute.

mod decimal;
mod quantity;
mod temporal;

pub use decimal::Decimal;
pub use quantity::Quantity;
pub(crate) use quantity::{Comparable, calendar_keyword, duration_unit};
pub(crate) use temporal::days_in_month;
pub use temporal::{DateTime, Precision, Time};

use serde_json::Value as Json;

/// A value of one of FHIRPath's System types.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Value {
    /// `System.Boolean`
    Boolean(bool),
    /// `System.Integer` (kept in 64 bits; FHIR integers are 32-bit)
    Integer(i64),
    /// `System.Decimal`
    Decimal(Decimal),
    /// `System.String`
    String(String),
    /// `System.Date`
    Date(DateTime),
    /// `System.DateTime`
    DateTime(DateTime),
    /// `System.Time`
    Time(Time),
    /// `System.Quantity`
    Quantity(Quantity),
    /// The result of `type()`: a namespace (`System`, `FHIR`) and a type name.
    Type {
        /// `System` or `FHIR`.
        namespace: String,
        /// The type's name within the namespace.
        name: String,
    },
}

impl Value {
    /// The qualified System type name (`System.String`...).
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Boolean(_) => "System.Boolean",
            Value::Integer(_) => "System.Integer",
            Value::Decimal(_) => "System.Decimal",
            Value::String(_) => "System.String",
            Value::Date(_) => "System.Date",
            Value::DateTime(_) => "System.DateTime",
            Value::Time(_) => "System.Time",
            Value::Quantity(_) => "System.Quantity",
            Value::Type { .. } => "System.TypeInfo",
        }
    }

    /// The value as `toString()` renders it.
    pub fn render(&self) -> String {
        match self {
            Value::Boolean(b) => b.to_string(),
            Value::Integer(i) => i.to_string(),
            Value::Decimal(d) => d.to_string(),
            Value::String(s) => s.clone(),
            Value::Date(d) => d.render(true),
            Value::DateTime(d) => d.render(false),
            Value::Time(t) => t.to_string(),
            Value::Quantity(q) => {
                if calendar_keyword(&q.unit).is_some() {
                    format!("{} {}", q.value, q.unit)
                } else {
                    format!("{} '{}'", q.value, q.unit)
                }
            }
            Value::Type { namespace, name } => format!("{namespace}.{name}"),
        }
    }

    /// The value written as JSON (a FHIR-like rendering for quantities and type infos).
    pub fn to_json(&self) -> Json {
        match self {
            Value::Boolean(b) => Json::Bool(*b),
            Value::Integer(i) => Json::from(*i),
            Value::Decimal(d) => {
                serde_json::from_str::<Json>(&d.to_string()).unwrap_or_else(|_| Json::String(d.to_string()))
            }
            Value::Quantity(q) => {
                let mut m = serde_json::Map::new();
                m.insert("value".into(), Value::Decimal(q.value).to_json());
                match calendar_keyword(&q.unit) {
                    Some(k) => {
                        m.insert("unit".into(), Json::String(k.into()));
                    }
                    None => {
                        m.insert("unit".into(), Json::String(q.unit.clone()));
                        m.insert("system".into(), Json::String("http://unitsofmeasure.org".into()));
                        m.insert("code".into(), Json::String(q.unit.clone()));
                    }
                }
                Json::Object(m)
            }
            Value::Type { namespace, name } => {
                let mut m = serde_json::Map::new();
                m.insert("namespace".into(), Json::String(namespace.clone()));
                m.insert("name".into(), Json::String(name.clone()));
                Json::Object(m)
            }
            other => Json::String(other.render()),
        }
    }
}
