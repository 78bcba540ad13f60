//! Why an exchange operation was refused or failed.

use fhir::{ErrorClass, Issue, IssueCode};

/// Why an exchange operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The door refused or failed (not allowed, hidden, invalid, store, audit).
    #[error(transparent)]
    Access(#[from] access::Error),
    /// The document was refused as a whole (too large, not XML, not a ClinicalDocument).
    #[error(transparent)]
    Document(#[from] ccda::Error),
    /// The request is malformed; the issues say where (an NDJSON line, a parameter).
    #[error("{}", text(.0))]
    Invalid(Vec<Issue>),
    /// No such job (or not the caller's).
    #[error("no such bulk data job")]
    NoSuchJob,
    /// No such pair on the duplicate review list.
    #[error("no such pair on the review list")]
    NoSuchPair,
    /// The job's files are gone (expired or cancelled).
    #[error("the job's files have expired or were deleted")]
    Expired,
    /// No peer of that name is registered.
    #[error("no such peer")]
    NoSuchPeer,
    /// The peer could not be reached (refused, no route, TLS failed).
    #[error("the peer could not be reached")]
    PeerUnreachable,
    /// The peer did not answer in time.
    #[error("the peer did not answer in time")]
    PeerTimeout,
    /// The peer answered something this node cannot use (not JSON, not FHIR, a redirect,
    /// too large); says what, never the content.
    #[error("the peer's answer could not be used: {0}")]
    PeerAnswer(String),
    /// The peer refused the request (its HTTP status and the outcome's issue codes).
    #[error("the peer refused the request (HTTP {status}{})", if .codes.is_empty() { String::new() } else { format!(": {}", .codes) })]
    PeerRefused {
        /// The peer's HTTP status.
        status: u16,
        /// Its outcome's issue codes.
        codes: String,
    },
    /// The peer holds no certain match for the patient: its candidates (peer URL, grade,
    /// score), nothing copied.
    #[error("the peer holds no certain match for this patient")]
    NoCertainMatch(Vec<String>),
    /// A file of the server could not be written or read.
    #[error("the server could not keep the job's files")]
    Files(#[source] std::io::Error),
    /// A patient merge or unmerge was refused by a rule (a patient merged into itself, into
    /// a record that was itself merged away); the text says why and names no data (422).
    #[error("{0}")]
    MergeRefused(&'static str),
    /// The source patient was already merged into another record (409).
    #[error("the source patient was already merged into another record; it cannot be merged again")]
    AlreadyMerged,
    /// There is no merge of the two patients to undo (404).
    #[error("no merge of the source patient into the target patient was found to undo")]
    NoMerge,
}

fn text(issues: &[Issue]) -> String {
    issues.iter().map(|i| i.diagnostics.as_str()).collect::<Vec<_>>().join("; ")
}

impl Error {
    /// A malformed request with one issue.
    pub fn invalid(diagnostics: impl Into<String>) -> Error {
        Error::Invalid(vec![Issue::error(IssueCode::Invalid, diagnostics)])
    }

    /// Its class in the one error table (status code and issue code).
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Access(e) => e.class(),
            Error::Document(ccda::Error::TooLarge { .. }) => ErrorClass::TooLarge,
            Error::Document(_) | Error::Invalid(_) => ErrorClass::Invalid,
            Error::NoSuchJob | Error::NoSuchPair | Error::NoSuchPeer => ErrorClass::NotFound,
            Error::PeerUnreachable | Error::PeerAnswer(_) | Error::PeerRefused { .. } => ErrorClass::BadGateway,
            Error::PeerTimeout => ErrorClass::GatewayTimeout,
            Error::NoCertainMatch(_) => ErrorClass::Conflict,
            Error::Expired => ErrorClass::Gone,
            Error::Files(_) => ErrorClass::Internal,
            Error::MergeRefused(_) => ErrorClass::BusinessRule,
            Error::AlreadyMerged => ErrorClass::Conflict,
            Error::NoMerge => ErrorClass::NotFound,
        }
    }

    /// The `OperationOutcome` issues telling the caller about it (never the data involved).
    pub fn issues(&self) -> Vec<Issue> {
        match self {
            Error::Access(e) => e.issues(),
            Error::Invalid(issues) => issues.clone(),
            Error::NoCertainMatch(candidates) => {
                let mut issues = vec![Issue::error(IssueCode::Conflict, self.to_string())];
                issues.extend(candidates.iter().map(|c| Issue::information(format!("candidate: {c}"))));
                issues
            }
            other => vec![Issue::error(other.class().issue_code(), other.to_string())],
        }
    }
}

impl From<store::Error> for Error {
    fn from(error: store::Error) -> Error {
        Error::Access(error.into())
    }
}

/// An exchange operation's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
