//! The server-rendered sign-in, code, password-change and consent pages: plain HTML forms, no
//! script, written with maud (every interpolated value is escaped). None shows what the user
//! submitted.

use auth::scope::{Context, Scope, ScopeKind};
use auth::{Interaction, Pending};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cookie::{Cookie, SameSite};
use maud::{DOCTYPE, Markup, PreEscaped, html};

/// The cookie that carries the CSRF value of the pending authorization.
pub(crate) const CSRF_COOKIE: &str = "continuum_auth_csrf";

/// The pages' one style sheet, inline; the Content-Security-Policy admits it by its hash.
const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;\
     color:#1b1b1b}label{display:block;margin:.8rem 0 .2rem}input[type=text],input[type=password]{width:100%;\
     padding:.4rem}button{margin:1rem .5rem 0 0;padding:.5rem 1rem}.error{color:#a00}li{margin:.3rem 0}";

/// The pages' Content-Security-Policy: nothing but the inline style above (by its SHA-256), no
/// framing, no `<base>`. `form-action` stays open: the consent form's answer redirects to the
/// app's redirect URI, which browsers check against `form-action` too.
fn content_security_policy() -> &'static HeaderValue {
    static POLICY: std::sync::OnceLock<HeaderValue> = std::sync::OnceLock::new();
    POLICY.get_or_init(|| {
        use base64::Engine;
        use sha2::Digest;
        let hash = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(STYLE.as_bytes()));
        let policy = format!("default-src 'none'; style-src 'sha256-{hash}'; frame-ancestors 'none'; base-uri 'none'");
        HeaderValue::from_str(&policy)
            .unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'; base-uri 'none'"))
    })
}

fn page(status: StatusCode, title: &str, body: Markup) -> Response {
    let html = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Continuum" }
                // The sheet exactly as hashed into the Content-Security-Policy.
                style { (PreEscaped(STYLE)) }
            }
            body {
                h1 { (title) }
                (body)
            }
        }
    };
    let mut response = (status, html.into_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::CONTENT_SECURITY_POLICY, content_security_policy().clone());
    response
}

/// The fields every form posts back: the pending request's key and its CSRF value.
fn hidden(key: &str, pending: &Pending) -> Markup {
    html! {
        input type="hidden" name="request" value=(key);
        input type="hidden" name="csrf" value=(pending.csrf);
    }
}

fn notice(text: Option<&str>) -> Markup {
    html! {
        @if let Some(text) = text {
            p class="error" { (text) }
        }
    }
}

/// A page that says why sign-in cannot continue (not sent back to the app: unknown client, bad
/// redirect URI, expired form). Its status comes from [`crate::errors`].
pub(crate) fn error(status: StatusCode, message: &str) -> Response {
    page(status, "Sign-in cannot continue", notice(Some(message)))
}

/// The CSRF cookie of the forms: `HttpOnly`, `SameSite=Strict`, for `/auth` only, living as long
/// as the forms, and `Secure` when the server's base URL is https.
fn csrf_cookie(value: &str, secure: bool, max_age: i64) -> Cookie<'_> {
    Cookie::build((CSRF_COOKIE, value))
        .path("/auth")
        .http_only(true)
        .same_site(SameSite::Strict)
        .max_age(time::Duration::seconds(max_age))
        .secure(secure)
        .build()
}

/// The sign-in form, with the CSRF cookie of the pending request.
pub(crate) fn login(key: &str, pending: &Pending, failed: bool, secure: bool, max_age: i64) -> Response {
    let body = html! {
        p { strong { (pending.client_name) } " asks to access your record." }
        (notice(failed.then_some("The username or password is not right.")))
        form method="post" action="/auth/login" {
            (hidden(key, pending))
            label for="username" { "Username" }
            input type="text" id="username" name="username" autocomplete="username" required;
            label for="password" { "Password" }
            input type="password" id="password" name="password" autocomplete="current-password" required;
            button type="submit" { "Sign in" }
        }
    };
    let status = if failed { StatusCode::UNAUTHORIZED } else { StatusCode::OK };
    let mut response = page(status, "Sign in", body);
    if let Ok(value) = HeaderValue::from_str(&csrf_cookie(&pending.csrf, secure, max_age).to_string()) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// The second-factor form: the code of the user's authenticator app.
pub(crate) fn code(key: &str, pending: &Pending, failed: bool) -> Response {
    let body = html! {
        p { "Enter the 6-digit code your authenticator app shows for this account." }
        (notice(failed.then_some("The code is not right.")))
        form method="post" action="/auth/totp" {
            (hidden(key, pending))
            label for="code" { "Code" }
            input type="text" id="code" name="code" inputmode="numeric" autocomplete="one-time-code" maxlength="8" required;
            button type="submit" { "Continue" }
        }
    };
    page(if failed { StatusCode::UNAUTHORIZED } else { StatusCode::OK }, "Enter your code", body)
}

/// The page of a client address that posted too many sign-in forms, with its `Retry-After`.
pub(crate) fn too_many_attempts(status: StatusCode, wait: std::time::Duration) -> Response {
    let mut response = page(
        status,
        "Sign-in cannot continue",
        notice(Some("Too many sign-in attempts came from this address. Wait a minute and try again.")),
    );
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    if let Ok(value) = HeaderValue::from_str(&seconds.max(1).to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

/// The form to replace a one-time password.
pub(crate) fn change_password(key: &str, pending: &Pending, problem: Option<&str>) -> Response {
    let body = html! {
        p { "Your password was for one use only. Choose your own (at least 12 characters)." }
        (notice(problem))
        form method="post" action="/auth/password" {
            (hidden(key, pending))
            label for="new_password" { "New password" }
            input type="password" id="new_password" name="new_password" autocomplete="new-password" required;
            label for="confirm" { "Repeat it" }
            input type="password" id="confirm" name="confirm" autocomplete="new-password" required;
            button type="submit" { "Save and continue" }
        }
    };
    page(if problem.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK }, "Choose a password", body)
}

fn describe(scope: &Scope) -> String {
    match scope.kind() {
        ScopeKind::Resource(r) => {
            let what = r.resource_type.as_deref().unwrap_or("all kinds of data");
            let whose = match r.context {
                Context::Patient => "for the patient in context",
                Context::User => "that you may access",
                Context::System => "on its own behalf",
            };
            let mut verbs = Vec::new();
            for (interaction, verb) in [
                (Interaction::Read, "read"),
                (Interaction::Search, "search"),
                (Interaction::Create, "create"),
                (Interaction::Update, "update"),
                (Interaction::Delete, "delete"),
            ] {
                if r.permissions.allows(interaction) {
                    verbs.push(verb);
                }
            }
            let narrowed = if r.constraints.is_empty() { "" } else { " (only some of it)" };
            format!("{} {what} {whose}{narrowed}", verbs.join(", "))
        }
        ScopeKind::OpenId | ScopeKind::FhirUser => "know who you are".into(),
        ScopeKind::Launch | ScopeKind::LaunchPatient | ScopeKind::LaunchEncounter => {
            "know the patient in context".into()
        }
        ScopeKind::OfflineAccess => "keep access after you sign out".into(),
        ScopeKind::OnlineAccess => "keep access while you are signed in".into(),
        ScopeKind::Hl7MessageLog => "read the HL7 v2 messages received, with their content".into(),
        ScopeKind::Other => "other access".into(),
    }
}

/// The consent page: each scope a checkbox; a patient field when a staff member launches a
/// standalone app that asks for a patient.
pub(crate) fn consent(key: &str, pending: &Pending, ask_patient: bool) -> Response {
    let body = html! {
        p { strong { (pending.client_name) } " asks to:" }
        form method="post" action="/auth/consent" {
            (hidden(key, pending))
            ul {
                @for scope in pending.scopes.iter() {
                    li {
                        label {
                            input type="checkbox" name="scope" value=(scope.as_str()) checked;
                            " " (describe(scope)) " "
                            code { (scope.as_str()) }
                        }
                    }
                }
            }
            @if ask_patient {
                label for="patient" { "Patient id" }
                input type="text" id="patient" name="patient" required;
            }
            button type="submit" name="decision" value="approve" { "Allow" }
            button type="submit" name="decision" value="deny" { "Deny" }
        }
    };
    page(StatusCode::OK, "Allow access?", body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_shown_are_escaped() {
        let response = error(StatusCode::BAD_REQUEST, "<a href=\"x\">'&'</a>");
        let html = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(axum::body::to_bytes(response.into_body(), usize::MAX))
            .unwrap();
        let html = String::from_utf8(html.to_vec()).unwrap();
        assert!(html.contains("&lt;a href=&quot;x&quot;&gt;'&amp;'&lt;/a&gt;"), "{html}");
        assert!(!html.contains("<a href"), "{html}");
    }

    #[test]
    fn the_csrf_cookie_is_http_only_strict_and_secure_over_https() {
        let cookie = csrf_cookie("v", true, 600).to_string();
        assert!(cookie.starts_with("continuum_auth_csrf=v;"), "{cookie}");
        for attribute in ["; HttpOnly", "; SameSite=Strict", "; Secure", "; Path=/auth", "; Max-Age=600"] {
            assert!(cookie.contains(attribute), "{attribute} in {cookie}");
        }
        assert!(!csrf_cookie("v", false, 600).to_string().contains("Secure"));
    }
}
