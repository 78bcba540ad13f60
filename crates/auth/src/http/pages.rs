//! The server-rendered sign-in, code, password-change and consent pages: plain HTML forms, no
//! script. Every value shown is escaped; none shows what the user submitted.

use crate::grant::Pending;
use crate::scope::{Context, Scope, ScopeKind};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// The cookie that carries the CSRF value of the pending authorization.
pub(crate) const CSRF_COOKIE: &str = "continuum_auth_csrf";

pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(ch),
        }
    }
    out
}

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

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{title} · Continuum</title>\
         <style>{STYLE}</style></head><body><h1>{title}</h1>{body}</body></html>",
        title = escape(title)
    );
    let mut response = (status, html).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::CONTENT_SECURITY_POLICY, content_security_policy().clone());
    response
}

fn hidden(key: &str, pending: &Pending) -> String {
    format!(
        "<input type=\"hidden\" name=\"request\" value=\"{}\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        escape(key),
        escape(&pending.csrf)
    )
}

/// An error that is not sent back to the app (unknown client, bad redirect URI, expired form).
pub(crate) fn error(status: StatusCode, message: &str) -> Response {
    page(status, "Sign-in cannot continue", &format!("<p class=\"error\">{}</p>", escape(message)))
}

/// The sign-in form. Sets the CSRF cookie (`HttpOnly`, `SameSite=Strict`, living as long as the
/// forms, and `Secure` when the server's base URL is https).
pub(crate) fn login(key: &str, pending: &Pending, failed: bool, secure: bool, max_age: i64) -> Response {
    let notice = if failed { "<p class=\"error\">The username or password is not right.</p>" } else { "" };
    let body = format!(
        "<p><strong>{app}</strong> asks to access your record.</p>{notice}\
         <form method=\"post\" action=\"/auth/login\">{hidden}\
         <label for=\"username\">Username</label><input type=\"text\" id=\"username\" name=\"username\" autocomplete=\"username\" required>\
         <label for=\"password\">Password</label><input type=\"password\" id=\"password\" name=\"password\" autocomplete=\"current-password\" required>\
         <button type=\"submit\">Sign in</button></form>",
        app = escape(&pending.client_name),
        hidden = hidden(key, pending),
    );
    let status = if failed { StatusCode::UNAUTHORIZED } else { StatusCode::OK };
    let mut response = page(status, "Sign in", &body);
    let cookie = format!(
        "{CSRF_COOKIE}={}; Path=/auth; HttpOnly; SameSite=Strict; Max-Age={max_age}{}",
        pending.csrf,
        if secure { "; Secure" } else { "" }
    );
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// The second-factor form: the code of the user's authenticator app.
pub(crate) fn code(key: &str, pending: &Pending, failed: bool) -> Response {
    let notice = if failed { "<p class=\"error\">The code is not right.</p>" } else { "" };
    let body = format!(
        "<p>Enter the 6-digit code your authenticator app shows for this account.</p>{notice}\
         <form method=\"post\" action=\"/auth/totp\">{hidden}\
         <label for=\"code\">Code</label><input type=\"text\" id=\"code\" name=\"code\" inputmode=\"numeric\" autocomplete=\"one-time-code\" maxlength=\"8\" required>\
         <button type=\"submit\">Continue</button></form>",
        hidden = hidden(key, pending),
    );
    page(if failed { StatusCode::UNAUTHORIZED } else { StatusCode::OK }, "Enter your code", &body)
}

/// 429 for a client address that posted too many sign-in forms.
pub(crate) fn too_many_attempts(wait: std::time::Duration) -> Response {
    let mut response = page(
        StatusCode::TOO_MANY_REQUESTS,
        "Sign-in cannot continue",
        "<p class=\"error\">Too many sign-in attempts came from this address. Wait a minute and try again.</p>",
    );
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    if let Ok(value) = HeaderValue::from_str(&seconds.max(1).to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

/// The form to replace a one-time password.
pub(crate) fn change_password(key: &str, pending: &Pending, problem: Option<&str>) -> Response {
    let notice = problem.map(|p| format!("<p class=\"error\">{}</p>", escape(p))).unwrap_or_default();
    let body = format!(
        "<p>Your password was for one use only. Choose your own (at least 12 characters).</p>{notice}\
         <form method=\"post\" action=\"/auth/password\">{hidden}\
         <label for=\"new_password\">New password</label><input type=\"password\" id=\"new_password\" name=\"new_password\" autocomplete=\"new-password\" required>\
         <label for=\"confirm\">Repeat it</label><input type=\"password\" id=\"confirm\" name=\"confirm\" autocomplete=\"new-password\" required>\
         <button type=\"submit\">Save and continue</button></form>",
        hidden = hidden(key, pending),
    );
    page(if problem.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK }, "Choose a password", &body)
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
                (crate::Interaction::Read, "read"),
                (crate::Interaction::Search, "search"),
                (crate::Interaction::Create, "create"),
                (crate::Interaction::Update, "update"),
                (crate::Interaction::Delete, "delete"),
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
    let mut items = String::new();
    for scope in pending.scopes.iter() {
        items.push_str(&format!(
            "<li><label><input type=\"checkbox\" name=\"scope\" value=\"{value}\" checked> {text} <code>{value}</code></label></li>",
            value = escape(scope.as_str()),
            text = escape(&describe(scope)),
        ));
    }
    let patient = if ask_patient {
        "<label for=\"patient\">Patient id</label><input type=\"text\" id=\"patient\" name=\"patient\" required>"
    } else {
        ""
    };
    let body = format!(
        "<p><strong>{app}</strong> asks to:</p><form method=\"post\" action=\"/auth/consent\">{hidden}\
         <ul>{items}</ul>{patient}\
         <button type=\"submit\" name=\"decision\" value=\"approve\">Allow</button>\
         <button type=\"submit\" name=\"decision\" value=\"deny\">Deny</button></form>",
        app = escape(&pending.client_name),
        hidden = hidden(key, pending),
    );
    page(StatusCode::OK, "Allow access?", &body)
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn escapes_markup() {
        assert_eq!(escape("<a href=\"x\">'&'</a>"), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
    }
}
