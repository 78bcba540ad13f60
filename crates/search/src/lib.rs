//! FHIR R4 search, independent of any database: the search parameters of every resource type
//! compiled from the official definitions ([`registry`]), the index rows a resource yields
//! ([`index::extract`]), the parsed form of a search request ([`query`]) and the value
//! semantics both share ([`values`]: string normalisation, date and number ranges, UCUM, and
//! times as Unix microseconds, [`micros`], which the stores keep too). `store-sql` turns a
//! [`query::SearchQuery`] into SQL for the backends.

pub mod index;
pub mod query;
pub mod registry;
pub mod values;

pub use index::{FullText, IndexContext, IndexEntry, IndexValue, extract};
pub use query::{Condition, Filter, QueryError, SearchQuery};
pub use registry::{CompiledParam, ParamKind, param_key, registry};
pub use values::{from_micros, micros};
