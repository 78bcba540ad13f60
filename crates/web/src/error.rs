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

impl From<store::Error> for WebError {
    fn from(error: store::Error) -> Self {
        match error.kind() {
            store::ErrorKind::NotFound | store::ErrorKind::Gone => WebError::NotFound,
            store::ErrorKind::Forbidden => WebError::Forbidden(error.to_string()),
            store::ErrorKind::Invalid | store::ErrorKind::Unprocessable | store::ErrorKind::NotSupported => {
                WebError::BadRequest(error.to_string())
            }
            store::ErrorKind::Unavailable => {
                tracing::warn!("web app: the store is unavailable");
                if error.is_audit_unavailable() { WebError::AuditUnavailable } else { WebError::Unavailable }
            }
            _ => {
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
