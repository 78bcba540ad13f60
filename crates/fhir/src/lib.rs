//! FHIR R4 (4.0.1) as data: the official definitions, validation of resources against them,
//! `OperationOutcome` issues and reference parsing. Knows nothing of storage or HTTP.

pub mod definitions;
mod hash;
pub mod outcome;
pub mod reference;
pub mod validation;

pub use definitions::{Definitions, SearchParamDef, definitions};
pub use outcome::{ErrorClass, Issue, IssueCode, Severity, operation_outcome};
pub use reference::ReferenceTarget;
pub use validation::validate;
