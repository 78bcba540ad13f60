//! SQL text and its bound values, built together.

use crate::{Dialect, Value};

/// The values bound so far, each with its placeholder.
pub struct Params {
    values: Vec<Value>,
    placeholder: fn(usize, &Value) -> String,
}

impl Params {
    /// No values yet, placeholders written by `placeholder` (see [`Dialect::placeholder`]).
    pub(crate) fn new(placeholder: fn(usize, &Value) -> String) -> Params {
        Params { values: Vec::new(), placeholder }
    }

    /// Binds `value`; its placeholder.
    pub fn bind(&mut self, value: impl Into<Value>) -> String {
        let value = value.into();
        let placeholder = (self.placeholder)(self.values.len() + 1, &value);
        self.values.push(value);
        placeholder
    }

    /// The bound values, in placeholder order.
    pub(crate) fn into_values(self) -> Vec<Value> {
        self.values
    }
}

/// The state of one statement being written: its values, the aliases used, and the scope of
/// the rows being matched.
pub(crate) struct Builder<'d, D: Dialect> {
    pub(crate) dialect: &'d D,
    pub(crate) params: Params,
    aliases: usize,
    pub(crate) scope: D::Scope,
}

impl<'d, D: Dialect> Builder<'d, D> {
    pub(crate) fn new(dialect: &'d D) -> Self {
        Builder { dialect, params: Params::new(D::placeholder), aliases: 0, scope: D::Scope::default() }
    }

    /// A placeholder for `value`.
    pub(crate) fn bind(&mut self, value: impl Into<Value>) -> String {
        self.params.bind(value)
    }

    /// Placeholders for `values`, comma-separated.
    pub(crate) fn bind_list(&mut self, values: &[String]) -> String {
        let list: Vec<String> = values.iter().map(|v| self.bind(v.as_str())).collect();
        list.join(", ")
    }

    /// The test, after a column, that it holds one of `keys`.
    pub(crate) fn bind_keys(&mut self, keys: &[i64]) -> String {
        match keys {
            [one] => format!("= {}", self.bind(*one)),
            _ => self.dialect.among(&mut self.params, keys),
        }
    }

    /// A new table alias starting with `prefix`.
    pub(crate) fn alias(&mut self, prefix: &str) -> String {
        self.aliases += 1;
        format!("{prefix}{}", self.aliases)
    }

    /// The table `base` of the rows being matched.
    pub(crate) fn table(&self, base: &str) -> String {
        self.dialect.table(&self.scope, base)
    }

    /// ` AND {condition}` of the scope for rows `alias`, else `""`.
    pub(crate) fn pinned(&self, alias: &str) -> String {
        match self.dialect.scope_condition(&self.scope, alias) {
            Some(condition) => format!(" AND {condition}"),
            None => String::new(),
        }
    }

    /// Runs `f` for rows of another `scope` (a chain's targets, `_has` sources).
    pub(crate) fn within<T>(&mut self, scope: D::Scope, f: impl FnOnce(&mut Self) -> T) -> T {
        let saved = std::mem::replace(&mut self.scope, scope);
        let out = f(self);
        self.scope = saved;
        out
    }

    /// The statement's text with its values.
    pub(crate) fn finish(self, sql: String) -> crate::Statement {
        crate::Statement { sql, values: self.params.into_values() }
    }
}

/// Alternatives joined with `OR`. SQLite parses `a OR b OR c …` into a tree as deep as the
/// list is long, and refuses trees deeper than 1,000; long lists (a reach of a thousand
/// organizations, `code=` with many values) are nested in parenthesized groups instead, so
/// the depth grows with the logarithm of the length.
pub(crate) fn any_sql(ors: &[String]) -> String {
    const GROUP: usize = 64;
    if ors.len() <= GROUP {
        return ors.join(" OR ");
    }
    let groups: Vec<String> = ors.chunks(GROUP).map(|chunk| format!("({})", any_sql(chunk))).collect();
    any_sql(&groups)
}
