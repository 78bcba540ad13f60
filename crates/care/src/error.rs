//! Why a care-coordination operation was refused: the door's errors, and the rules of care
//! coordination broken.

use fhir::ErrorClass;

/// Why a care operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The door refused or failed (not allowed, hidden, changed meanwhile, store, audit).
    #[error(transparent)]
    Access(#[from] access::Error),
    /// A chart rule or read failed (the chart service's error, with its class).
    #[error(transparent)]
    Chart(#[from] chart::Error),
    /// The store failed outside the door (the outbox, job states).
    #[error(transparent)]
    Store(#[from] store::Error),
    /// The item named is not part of this patient's care (answered as if it did not exist).
    #[error("resource not found")]
    NotFound,
    /// A state change the lifecycle does not allow (the text names both states).
    #[error("{0}")]
    Transition(String),
    /// Input that is not acceptable; the text says what is wrong (never the value).
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    /// Its class in the one error table (status code and issue code).
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Access(e) => e.class(),
            Error::Store(e) => e.kind().class(),
            Error::Chart(e) => e.class(),
            Error::NotFound => ErrorClass::NotFound,
            Error::Transition(_) => ErrorClass::BusinessRule,
            Error::Invalid(_) => ErrorClass::Invalid,
        }
    }
}

/// A care operation's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
