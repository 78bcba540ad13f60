//! Security headers on every answer (the outermost layer, so refusals carry them too):
//!
//! - everywhere: `X-Content-Type-Options: nosniff`, `Referrer-Policy: no-referrer` (URLs can
//!   carry patient ids and search values) and `X-Frame-Options: DENY` (no framing, against
//!   click-jacking; `frame-ancestors 'none'` says the same to browsers that read the CSP);
//! - the FHIR API (except `metadata` and `.well-known`, which hold no patient data) and the web
//!   app's pages: `Cache-Control: no-store`, so that neither a shared cache nor the browser's
//!   disk keeps patient data;
//! - the web app (`/app`): a strict Content-Security-Policy. The app is server-rendered HTML
//!   with no JavaScript, one stylesheet of its own (`/app/static/app.css`), inline SVG charts
//!   drawn with presentation attributes (no `style` attributes), and forms that post to itself.
//!
//! The authorization server's pages set their own policy (`auth::http::pages`): they may not
//! restrict `form-action`, since their consent form ends in a redirect to the app.

use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

/// The web app's Content-Security-Policy.
pub const APP_CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Adds the headers above to every response.
pub(crate) async fn secure(request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let app = path == "/app" || path.starts_with("/app/");
    let app_page = app && !path.starts_with("/app/static/");
    let fhir_data = (path == "/fhir" || path.starts_with("/fhir/"))
        && !matches!(path.trim_end_matches('/'), "/fhir/metadata")
        && !path.starts_with("/fhir/.well-known/");
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if fhir_data || app_page {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if app {
        headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(APP_CONTENT_SECURITY_POLICY));
    }
    response
}
