//! The search planner both SQL backends share: a parsed [`search::SearchQuery`] turned into
//! SQL text and its bound values, over `resource_current` (alias `r`) and the index tables
//! (one per parameter type, keyed by the resource row).
//!
//! What the planner decides is the same for every backend: which filter drives a search
//! (listed once through an index) and which are checked per row, how chains, `_has`,
//! compartments, composites, `:missing`, `:not`, sorting and includes are written. What
//! differs between backends (placeholders, booleans, the row key's name, full text, lists of
//! keys, table names, planner hints) is asked of a [`Dialect`]. Every value is a bound
//! parameter ([`Value`]); only table and column names, chosen here or by the dialect, are
//! spliced into the text.

mod builder;
mod conditions;
mod dialect;
mod filters;
mod statements;
mod value;

pub use builder::Params;
pub use dialect::Dialect;
pub use statements::{Statement, count, include, revinclude, search, search_ids};
pub use value::Value;

#[cfg(test)]
mod tests;
