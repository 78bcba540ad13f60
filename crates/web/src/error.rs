//! Errors of the app's pages, each answered as a plain page with its status (never a stack
//! trace, never health data).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use policy::Refusal;

/// Why a page cannot be shown.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// Not allowed (403): the message says why.
    #[error("{0}")]
    Forbidden(String),
    /// No such thing, or outside what the user may see (404, alike).
    #[error("not found")]
    NotFound,
    /// A request the app cannot read (400).
    #[error("{0}")]
    BadRequest(String),
    /// Someone changed the record since the page was shown (409/412): reload and redo.
    #[error(
        "the record changed while you were working on it; reload the page to see the latest version, then try again"
    )]
    Changed,
    /// The store failed (500; details go to the log without health data).
    #[error("the record could not be read or written")]
    Internal,
    /// The audit trail could not record the request, so it was not served (503).
    #[error("the audit trail is unavailable, so nothing was shown or changed; try again shortly")]
    AuditUnavailable,
    /// The store is busy or shutting down (503).
    #[error("the record is unavailable just now; try again shortly")]
    Unavailable,
}

impl From<Refusal> for WebError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Unauthenticated(why) | Refusal::Forbidden(why) => WebError::Forbidden(why),
            Refusal::Hidden => WebError::NotFound,
            Refusal::Store(e) => e.into(),
        }
    }
}

impl From<access::Error> for WebError {
    fn from(error: access::Error) -> Self {
        use fhir::ErrorClass;
        match error {
            access::Error::Store(e) => e.into(),
            access::Error::AuditUnavailable => WebError::AuditUnavailable,
            other => match other.class() {
                ErrorClass::NotFound | ErrorClass::Gone => WebError::NotFound,
                ErrorClass::Unauthenticated | ErrorClass::Forbidden => WebError::Forbidden(other.to_string()),
                _ => WebError::BadRequest(other.to_string()),
            },
        }
    }
}

impl From<store::Error> for WebError {
    fn from(error: store::Error) -> Self {
        // The class from the one error table decides the page.
        use fhir::ErrorClass;
        match error.kind().class() {
            ErrorClass::NotFound | ErrorClass::Gone => WebError::NotFound,
            ErrorClass::Forbidden | ErrorClass::Unauthenticated => WebError::Forbidden(error.to_string()),
            ErrorClass::Conflict | ErrorClass::PreconditionFailed => WebError::Changed,
            ErrorClass::Invalid
            | ErrorClass::NotSupported
            | ErrorClass::BusinessRule
            | ErrorClass::TooLarge
            | ErrorClass::Throttled => WebError::BadRequest(error.to_string()),
            ErrorClass::Unavailable | ErrorClass::BadGateway | ErrorClass::GatewayTimeout => {
                tracing::warn!("web app: the store is unavailable");
                if error.is_audit_unavailable() { WebError::AuditUnavailable } else { WebError::Unavailable }
            }
            ErrorClass::Internal => {
                // The kind only: store errors can quote resource content.
                tracing::error!(kind = ?error.kind(), "web app: store error");
                WebError::Internal
            }
        }
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let (status, title) = match &self {
            WebError::Forbidden(_) => (StatusCode::FORBIDDEN, "Not allowed"),
            WebError::NotFound => (StatusCode::NOT_FOUND, "Not found"),
            WebError::BadRequest(_) => (StatusCode::BAD_REQUEST, "Cannot do that"),
            WebError::Changed => (StatusCode::CONFLICT, "The record changed meanwhile"),
            WebError::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong"),
            WebError::AuditUnavailable | WebError::Unavailable => {
                (StatusCode::SERVICE_UNAVAILABLE, "Try again shortly")
            }
        };
        let body = crate::layout::bare_page(
            title,
            maud::html! {
                h1 { (title) }
                p { (self.to_string()) }
                @if matches!(self, WebError::Changed) {
                    // An empty href is this same address: the page as it is now.
                    p { a href="" { "Reload the latest version" } }
                }
                p { a href="/app/patients" { "Back to patient search" } }
            },
        );
        (status, body).into_response()
    }
}

/// Runs store and policy work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, WebError> + Send + 'static,
) -> Result<T, WebError> {
    tokio::task::spawn_blocking(work).await.map_err(|_| {
        tracing::error!("web app: blocking work panicked");
        WebError::Internal
    })?
}
