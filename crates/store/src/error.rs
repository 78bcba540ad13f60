//! Errors of the write path and the store, each carrying its OperationOutcome issues.

use fhir::{Issue, IssueCode};

/// The class of an error; edges map each class to a status code in one table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Malformed request or resource (400).
    Invalid,
    /// Resource or version does not exist (404).
    NotFound,
    /// Resource was deleted (410).
    Gone,
    /// `If-Match` or version check failed, or a conditional operation matched several (412).
    PreconditionFailed,
    /// The request conflicts with the current state (409).
    Conflict,
    /// Well-formed but breaks a business rule, e.g. a reference to nothing (422).
    Unprocessable,
    /// A feature the server does not support (400 with `not-supported`).
    NotSupported,
    /// The storage engine failed (500).
    Storage,
    /// The store is shutting down or overloaded (503).
    Unavailable,
}

/// An error of the write path or a backend.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("invalid: {}", summary(.0))]
    Invalid(Vec<Issue>),
    #[error("{resource_type}/{id} not found")]
    NotFound { resource_type: String, id: String },
    #[error("{resource_type}/{id} was deleted")]
    Gone { resource_type: String, id: String, version: u64 },
    #[error("precondition failed: {0}")]
    PreconditionFailed(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("unprocessable: {}", summary(.0))]
    Unprocessable(Vec<Issue>),
    #[error("not supported: {0}")]
    NotSupported(String),
    #[error("storage error: {0}")]
    Storage(String),
    #[error("unavailable: {0}")]
    Unavailable(String),
}

fn summary(issues: &[Issue]) -> String {
    issues.iter().map(|i| i.diagnostics.as_str()).collect::<Vec<_>>().join("; ")
}

impl Error {
    /// A single-issue `Invalid` error.
    pub fn invalid(diagnostics: impl Into<String>) -> Self {
        Error::Invalid(vec![Issue::error(IssueCode::Invalid, diagnostics)])
    }

    /// The class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Invalid(_) => ErrorKind::Invalid,
            Error::NotFound { .. } => ErrorKind::NotFound,
            Error::Gone { .. } => ErrorKind::Gone,
            Error::PreconditionFailed(_) => ErrorKind::PreconditionFailed,
            Error::Conflict(_) => ErrorKind::Conflict,
            Error::Unprocessable(_) => ErrorKind::Unprocessable,
            Error::NotSupported(_) => ErrorKind::NotSupported,
            Error::Storage(_) => ErrorKind::Storage,
            Error::Unavailable(_) => ErrorKind::Unavailable,
        }
    }

    /// The OperationOutcome issues describing this error. Storage errors say nothing of the
    /// data involved (no PHI leaves through error text).
    pub fn issues(&self) -> Vec<Issue> {
        match self {
            Error::Invalid(issues) | Error::Unprocessable(issues) => issues.clone(),
            Error::NotFound { .. } => vec![Issue::error(IssueCode::NotFound, self.to_string())],
            Error::Gone { .. } => vec![Issue::error(IssueCode::Deleted, self.to_string())],
            Error::PreconditionFailed(_) | Error::Conflict(_) => {
                vec![Issue::error(IssueCode::Conflict, self.to_string())]
            }
            Error::NotSupported(_) => vec![Issue::error(IssueCode::NotSupported, self.to_string())],
            Error::Storage(_) => vec![Issue::error(IssueCode::Exception, "internal storage error")],
            Error::Unavailable(_) => vec![Issue::error(IssueCode::Transient, self.to_string())],
        }
    }
}

/// Result of store operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;
