//! FHIR R4 (4.0.1) as data: the official definitions, validation of resources against them,
//! `OperationOutcome` issues and reference parsing. Knows nothing of storage or HTTP.

// Lints met by this crate ahead of the workspace; they move to `[workspace.lints]` once every
// crate meets them.
#![warn(missing_docs)]
#![warn(clippy::unwrap_used, clippy::expect_used)]

pub mod definitions;
mod hash;
pub mod outcome;
pub mod reference;
pub mod validation;

pub use definitions::{Definitions, SearchParamDef, definitions};
pub use outcome::{ErrorClass, Issue, IssueCode, Severity, operation_outcome};
pub use reference::ReferenceTarget;
pub use validation::validate;
