//! The values a statement binds, in no backend's types.

/// A bound value; each backend converts it to its driver's parameter type.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A 64-bit integer (row keys, parameter keys, times in microseconds, `LIMIT`).
    Int(i64),
    /// A double (numbers and quantities).
    Real(f64),
    /// Text.
    Text(String),
    /// A list of integers bound as one array; only dialects whose
    /// [`Dialect::among`](crate::Dialect::among) binds lists this way produce it.
    Ints(Vec<i64>),
}

impl From<i64> for Value {
    fn from(v: i64) -> Value {
        Value::Int(v)
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Value {
        Value::Real(v)
    }
}

impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Text(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::Text(v.to_string())
    }
}
