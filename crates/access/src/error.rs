//! The errors of the door: the policy's refusals, the store's errors and malformed requests,
//! each with its class in the one error table ([`fhir::ErrorClass`]).

use fhir::{ErrorClass, Issue};
use policy::Refusal;

/// Why the door refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No token, or one that is not valid (401).
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller may not do this (403); the text says why and names no data.
    #[error("{0}")]
    Forbidden(String),
    /// Outside what the caller may see: answered as if it did not exist (404).
    #[error("resource not found")]
    Hidden,
    /// The request cannot be read (a malformed search, an unknown parameter…).
    #[error("{}", text(.0))]
    Invalid(Vec<Issue>),
    /// The store's answer (not found, gone, conflict, precondition failed, invalid…).
    #[error(transparent)]
    Store(#[from] store::Error),
    /// The audit trail could not record the access, so it must not be served (503).
    #[error("{}", store::audit::UNAVAILABLE)]
    AuditUnavailable,
}

fn text(issues: &[Issue]) -> String {
    issues.iter().map(|i| i.diagnostics.as_str()).collect::<Vec<_>>().join("; ")
}

impl Error {
    /// A malformed request with one issue.
    pub fn invalid(diagnostics: impl Into<String>) -> Error {
        Error::Invalid(vec![Issue::error(fhir::IssueCode::Invalid, diagnostics)])
    }

    /// Its class in the one error table (status code and issue code).
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Unauthenticated(_) => ErrorClass::Unauthenticated,
            Error::Forbidden(_) => ErrorClass::Forbidden,
            Error::Hidden => ErrorClass::NotFound,
            Error::Invalid(_) => ErrorClass::Invalid,
            Error::Store(e) => e.kind().class(),
            Error::AuditUnavailable => ErrorClass::Unavailable,
        }
    }

    /// The `OperationOutcome` issues telling the caller about it (never the data involved).
    pub fn issues(&self) -> Vec<Issue> {
        match self {
            Error::Invalid(issues) => issues.clone(),
            Error::Store(e) => e.issues(),
            Error::AuditUnavailable => vec![Issue::error(
                self.class().issue_code(),
                format!("{}; the request was not served", store::audit::UNAVAILABLE),
            )],
            other => vec![Issue::error(other.class().issue_code(), other.to_string())],
        }
    }
}

impl From<Refusal> for Error {
    fn from(refusal: Refusal) -> Error {
        match refusal {
            Refusal::Unauthenticated(why) => Error::Unauthenticated(why),
            Refusal::Forbidden(why) => Error::Forbidden(why),
            Refusal::Hidden => Error::Hidden,
            Refusal::Store(e) => Error::Store(e),
        }
    }
}

impl From<search::query::QueryError> for Error {
    fn from(error: search::query::QueryError) -> Error {
        Error::Invalid(error.0)
    }
}

impl From<crate::AuditUnavailable> for Error {
    fn from(_: crate::AuditUnavailable) -> Error {
        Error::AuditUnavailable
    }
}
