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
    /// A behavioral-health note written by someone who may not see such records.
    #[error(
        "Behavioral-health notes are written and read by behavioral-health clinicians (the records are labelled PSY)."
    )]
    BehavioralHealthOnly,
    /// A note that is not a draft, or a draft of someone else's, was to be saved as a draft.
    #[error("only its author can change a draft; signed notes are amended")]
    NotYourDraft,
    /// A note that is not signed and in force was to be amended.
    #[error("only a current, signed note can be amended")]
    NotInForce,
    /// A view's filter is malformed (a date that is none, a page link that was not made
    /// here); the text says what is wrong.
    #[error("{0}")]
    InvalidFilter(String),
}

impl Error {
    /// Its class in the one error table (status code and issue code).
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Access(e) => e.class(),
            Error::AllergiesActive | Error::MedicationNotActive => ErrorClass::BusinessRule,
            Error::NotOnChart => ErrorClass::NotFound,
            Error::InvalidFilter(_) => ErrorClass::Invalid,
            Error::BehavioralHealthOnly | Error::NotYourDraft | Error::NotInForce => ErrorClass::Forbidden,
        }
    }
}

/// A chart operation's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
