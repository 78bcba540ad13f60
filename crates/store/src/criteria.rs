//! Search criteria of conditional operations (`If-None-Exist`, conditional update and delete,
//! conditional references). Until full search lands, `_id` and `identifier` are supported;
//! any other parameter is refused as not supported rather than silently ignored.

use crate::{Error, Result};

/// Parsed criteria: all listed conditions must hold.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Criteria {
    /// `_id=…` values (any of them).
    pub ids: Vec<String>,
    /// `identifier=[system]|value` conditions; each entry is one OR-list of `(system, value)`
    /// where `system: None` means any system.
    pub identifiers: Vec<Vec<(Option<String>, String)>>,
}

impl Criteria {
    /// Parses a query string such as `identifier=http://x|123&_id=abc`.
    pub fn parse(_query: &str) -> Result<Criteria> {
        Err(Error::NotSupported("criteria".into()))
    }
}
