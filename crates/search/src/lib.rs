//! FHIR R4 search, independent of any database: the search parameters of every resource type
//! compiled from the official definitions ([`registry`]), the index rows a resource yields
//! ([`index::extract`]), the parsed form of a search request ([`query`]) and the value
//! semantics both share ([`values`]: string normalisation, date and number ranges, UCUM).
//! Backends turn a [`query::SearchQuery`] into their own SQL.

// Lints met by this crate ahead of the workspace; they move to `[workspace.lints]` once every
// crate meets them.
#![warn(missing_docs)]
#![warn(clippy::unwrap_used, clippy::expect_used)]

pub mod index;
pub mod query;
pub mod registry;
pub mod values;

pub use index::{FullText, IndexContext, IndexEntry, IndexValue, extract};
pub use query::{Condition, Filter, QueryError, SearchQuery};
pub use registry::{CompiledParam, ParamKind, param_key, registry};
