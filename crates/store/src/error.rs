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
    /// The caller may not do this (403).
    Forbidden,
    /// The storage engine failed (500).
    Storage,
    /// The store is shutting down or overloaded (503).
    Unavailable,
}

impl ErrorKind {
    /// The class of this kind in the one error table ([`fhir::ErrorClass`]).
    pub fn class(self) -> fhir::ErrorClass {
        use fhir::ErrorClass;
        match self {
            ErrorKind::Invalid => ErrorClass::Invalid,
            ErrorKind::NotSupported => ErrorClass::NotSupported,
            ErrorKind::Forbidden => ErrorClass::Forbidden,
            ErrorKind::NotFound => ErrorClass::NotFound,
            ErrorKind::Conflict => ErrorClass::Conflict,
            ErrorKind::Gone => ErrorClass::Gone,
            ErrorKind::PreconditionFailed => ErrorClass::PreconditionFailed,
            ErrorKind::Unprocessable => ErrorClass::BusinessRule,
            ErrorKind::Storage => ErrorClass::Internal,
            ErrorKind::Unavailable => ErrorClass::Unavailable,
        }
    }

    /// The HTTP status code of this class (from the one table).
    pub fn http_status(self) -> u16 {
        self.class().status()
    }

    /// The status line of this class as `Bundle.entry.response.status` shows it, e.g. `412 Precondition Failed`.
    pub fn status_line(self) -> &'static str {
        self.class().status_line()
    }
}

/// An error of the write path or a backend.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A malformed request or resource; the issues say what is wrong (400).
    #[error("invalid: {}", summary(.0))]
    Invalid(Vec<Issue>),
    /// The resource (or version) does not exist (404).
    #[error("{resource_type}/{id} not found")]
    NotFound {
        /// The type asked for.
        resource_type: String,
        /// The id asked for.
        id: String,
    },
    /// The resource was deleted (410).
    #[error("{resource_type}/{id} was deleted")]
    Gone {
        /// The deleted resource's type.
        resource_type: String,
        /// The deleted resource's id.
        id: String,
        /// The version number of its deletion.
        version: u64,
    },
    /// An `If-Match` or version check failed, or a conditional operation matched several (412).
    #[error("precondition failed: {0}")]
    PreconditionFailed(String),
    /// The request conflicts with the current state (409).
    #[error("conflict: {0}")]
    Conflict(String),
    /// Well-formed but breaks a business rule, e.g. a reference to nothing (422).
    #[error("unprocessable: {}", summary(.0))]
    Unprocessable(Vec<Issue>),
    /// A feature the server does not support (400 with `not-supported`).
    #[error("not supported: {0}")]
    NotSupported(String),
    /// The caller may not do this; the text says why (it names no data).
    #[error("{0}")]
    Forbidden(String),
    /// The storage engine failed (500).
    #[error("storage error: {0}")]
    Storage(String),
    /// The store is shutting down or overloaded (503).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The error of one entry of a Bundle; its issues are located at `Bundle.entry[index]`.
    #[error("Bundle.entry[{index}]: {error}")]
    InEntry {
        /// The entry's position in `Bundle.entry`, from 0.
        index: usize,
        /// What went wrong with it.
        error: Box<Error>,
    },
}

fn summary(issues: &[Issue]) -> String {
    issues.iter().map(|i| i.diagnostics.as_str()).collect::<Vec<_>>().join("; ")
}

impl Error {
    /// A single-issue `Invalid` error.
    pub fn invalid(diagnostics: impl Into<String>) -> Self {
        Error::Invalid(vec![Issue::error(IssueCode::Invalid, diagnostics)])
    }

    /// Whether this is a write refused because its audit entry could not be appended.
    pub fn is_audit_unavailable(&self) -> bool {
        match self {
            Error::Unavailable(why) => why == crate::audit::UNAVAILABLE,
            Error::InEntry { error, .. } => error.is_audit_unavailable(),
            _ => false,
        }
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
            Error::Forbidden(_) => ErrorKind::Forbidden,
            Error::Storage(_) => ErrorKind::Storage,
            Error::Unavailable(_) => ErrorKind::Unavailable,
            Error::InEntry { error, .. } => error.kind(),
        }
    }

    /// The OperationOutcome issues describing this error. Storage errors say nothing of the
    /// data involved (no PHI leaves through error text).
    pub fn issues(&self) -> Vec<Issue> {
        match self {
            Error::Invalid(issues) | Error::Unprocessable(issues) => issues.clone(),
            Error::Storage(_) => vec![Issue::error(self.kind().class().issue_code(), "internal storage error")],
            Error::NotFound { .. }
            | Error::Gone { .. }
            | Error::PreconditionFailed(_)
            | Error::Conflict(_)
            | Error::NotSupported(_)
            | Error::Forbidden(_)
            | Error::Unavailable(_) => vec![Issue::error(self.kind().class().issue_code(), self.to_string())],
            Error::InEntry { index, error } => {
                let entry = format!("Bundle.entry[{index}]");
                let storage = matches!(**error, Error::Storage(_));
                error
                    .issues()
                    .into_iter()
                    .map(|mut issue| {
                        issue.expression = Some(in_entry_expression(issue.expression.take(), &entry));
                        if !storage && !issue.diagnostics.starts_with(&entry) {
                            issue.diagnostics = format!("{entry}: {}", issue.diagnostics);
                        }
                        issue
                    })
                    .collect()
            }
        }
    }

    /// This error as the error of Bundle entry `index`.
    pub fn in_entry(self, index: usize) -> Self {
        match self {
            Error::InEntry { .. } => self,
            error => Error::InEntry { index, error: Box::new(error) },
        }
    }
}

/// Relocates an expression of an entry's resource (`Patient.name`) under the entry
/// (`Bundle.entry[3].resource.name`); anything else points at the entry itself.
fn in_entry_expression(expression: Option<String>, entry: &str) -> String {
    match expression {
        Some(e) if e.starts_with("Bundle.entry[") => e,
        Some(e) if e.starts_with(|c: char| c.is_ascii_uppercase()) => match e.split_once('.') {
            Some((_, rest)) => format!("{entry}.resource.{rest}"),
            None => format!("{entry}.resource"),
        },
        _ => entry.to_string(),
    }
}

/// Result of store operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;
