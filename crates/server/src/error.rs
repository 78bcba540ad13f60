//! The one table from errors to HTTP status codes, and the `OperationOutcome` they answer with.

use crate::format::fhir_json_response;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use fhir::{ErrorClass, Issue, IssueCode, operation_outcome};
use store::ErrorKind;

/// An error answered as an `OperationOutcome` with a status code.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status code answered.
    pub status: StatusCode,
    /// The issues of the `OperationOutcome` answered.
    pub issues: Vec<Issue>,
}

impl ApiError {
    /// An error with one issue.
    pub fn new(status: StatusCode, code: IssueCode, diagnostics: impl Into<String>) -> Self {
        ApiError { status, issues: vec![Issue::error(code, diagnostics)] }
    }

    /// 400 with an `invalid` issue.
    pub fn bad_request(diagnostics: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, IssueCode::Invalid, diagnostics)
    }

    /// 404 with a `not-found` issue.
    pub fn not_found(diagnostics: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, IssueCode::NotFound, diagnostics)
    }
}

/// The status code of a class in the one error table ([`fhir::ErrorClass`]).
pub(crate) fn status_of(class: ErrorClass) -> StatusCode {
    StatusCode::from_u16(class.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

impl From<store::Error> for ApiError {
    fn from(error: store::Error) -> Self {
        if error.kind() == ErrorKind::Storage {
            // The detail may name data; it goes to the log, not to the client.
            tracing::error!(error = %error, "storage failure");
        }
        ApiError { status: status_of(error.kind().class()), issues: error.issues() }
    }
}

impl From<access::Error> for ApiError {
    fn from(error: access::Error) -> Self {
        match error {
            access::Error::Store(e) => e.into(),
            other => ApiError { status: status_of(other.class()), issues: other.issues() },
        }
    }
}

impl From<access::AuditUnavailable> for ApiError {
    fn from(unavailable: access::AuditUnavailable) -> Self {
        access::Error::from(unavailable).into()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = fhir_json_response(self.status, &operation_outcome(&self.issues));
        if self.status == StatusCode::UNAUTHORIZED {
            // RFC 6750: the challenge names the scheme; the outcome says why.
            response
                .headers_mut()
                .insert("www-authenticate", axum::http::HeaderValue::from_static("Bearer error=\"invalid_token\""));
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert("retry-after", axum::http::HeaderValue::from_static("1"));
        }
        response
    }
}
