//! Every refusal and failure of the authorization server's HTTP edge and the status it is
//! answered with, in one place: the OAuth errors of the JSON endpoints (RFC 6749 §5.2), the
//! pages shown when sign-in cannot continue, and failures of the server itself. Each is given
//! its class in the workspace's one error table ([`fhir::ErrorClass`]), which decides its status.

use crate::{json_no_store, pages};
use auth::OAuthError;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use fhir::ErrorClass;

/// Why a sign-in page cannot go on. Shown as a page, never sent back to the app (its redirect
/// URI may not be trusted yet, or the form is not one of this server's).
#[derive(Debug)]
pub(crate) enum PageError {
    /// A parameter of the authorization request is repeated.
    RepeatedParameter,
    /// A field of a form post is repeated.
    RepeatedField,
    /// The authorization request cannot be trusted to redirect (unknown client, unregistered
    /// redirect URI); the message names what is wrong, never a submitted value.
    Request(String),
    /// The form expired or did not come from this server (CSRF values).
    ExpiredForm,
    /// A form posted out of order (consent before sign-in, …).
    SignInFirst,
    /// Staff must use a second factor and this account has none enrolled.
    NotEnrolled,
    /// The client address posted too many sign-in forms; it may try again after this long.
    TooManyAttempts(std::time::Duration),
    /// The authorization server failed (already logged, without data).
    ServerFailed,
}

impl PageError {
    /// The class of each refusal in the one error table ([`fhir::ErrorClass`]).
    fn class(&self) -> ErrorClass {
        match self {
            PageError::RepeatedParameter | PageError::RepeatedField | PageError::Request(_) => ErrorClass::Invalid,
            PageError::ExpiredForm | PageError::SignInFirst | PageError::NotEnrolled => ErrorClass::Forbidden,
            PageError::TooManyAttempts(_) => ErrorClass::Throttled,
            PageError::ServerFailed => ErrorClass::Internal,
        }
    }

    /// The status each refusal is answered with (from the one table).
    fn status(&self) -> StatusCode {
        status_of(self.class())
    }

    fn message(&self) -> &str {
        match self {
            PageError::RepeatedParameter => "a parameter is repeated",
            PageError::RepeatedField => "a field is repeated",
            PageError::Request(message) => message,
            PageError::ExpiredForm => {
                "This form has expired or did not come from this server. Start again from the app."
            }
            PageError::SignInFirst => "Sign in first.",
            PageError::NotEnrolled => {
                "This account must sign in with a code from an authenticator app, and none is set up for it yet. \
                 Ask an administrator to enrol it."
            }
            PageError::TooManyAttempts(_) => "",
            PageError::ServerFailed => "the authorization server failed",
        }
    }

    /// A failure of the authorization server during `what`: logged (the error carries no
    /// submitted value), answered with a page that says no more.
    pub(crate) fn failed(what: &'static str, error: &auth::Error) -> PageError {
        tracing::error!(error = %error, "{what} failed");
        PageError::ServerFailed
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            PageError::TooManyAttempts(wait) => pages::too_many_attempts(self.status(), wait),
            _ => pages::error(self.status(), self.message()),
        }
    }
}

/// The class of an OAuth error at the token, introspection and revocation endpoints (RFC 6749
/// §5.2: 401 for a client that failed to authenticate, 400 for the rest).
fn oauth_class(error: &OAuthError) -> ErrorClass {
    match error.error {
        "invalid_client" => ErrorClass::Unauthenticated,
        "server_error" => ErrorClass::Internal,
        _ => ErrorClass::Invalid,
    }
}

fn status_of(class: ErrorClass) -> StatusCode {
    StatusCode::from_u16(class.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// An OAuth error as JSON (RFC 6749 §5.2), not cached.
pub(crate) fn oauth_error(error: &OAuthError) -> Response {
    let status = status_of(oauth_class(error));
    let mut response =
        json_no_store(status, serde_json::json!({ "error": error.error, "error_description": error.description }));
    if status == StatusCode::UNAUTHORIZED {
        // RFC 6749 §5.2: a 401 names the authentication scheme.
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"continuum\""));
    }
    response
}

/// The answer when blocking work panicked.
pub(crate) fn work_panicked() -> Response {
    tracing::error!("authorization work panicked");
    StatusCode::INTERNAL_SERVER_ERROR.into_response()
}
