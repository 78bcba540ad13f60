//! Why a chart operation was refused: the door's errors, and the chart's own rules broken.

use fhir::ErrorClass;

/// Why a chart operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The door refused or failed (not allowed, hidden, changed meanwhile, store, audit).
    #[error(transparent)]
    Access(#[from] access::Error),
    /// "No known allergies" cannot be recorded while allergies are recorded as active.
    #[error("allergies are recorded as active: inactivate them before recording “No known allergies”")]
    AllergiesActive,
    /// Only an active medication can be discontinued.
    #[error("only an active medication can be discontinued")]
    MedicationNotActive,
    /// The item named is not on this patient's chart (answered as if it did not exist).
    #[error("resource not found")]
    NotOnChart,
}

impl Error {
    /// Its class in the one error table (status code and issue code).
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Access(e) => e.class(),
            Error::AllergiesActive | Error::MedicationNotActive => ErrorClass::BusinessRule,
            Error::NotOnChart => ErrorClass::NotFound,
        }
    }
}

/// A chart operation's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
