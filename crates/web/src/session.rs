//! Sign-in, sign-out and the session of every page: the cookie, the caller it stands for,
//! the CSRF value of its forms, and the per-address sign-in throttle.

use crate::WebApp;
use crate::error::{WebError, blocking};
use crate::layout;
use auth::WebSignIn;
use axum::extract::{ConnectInfo, Form, FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use maud::html;
use policy::{Caller, Refusal};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;

/// The session cookie: the web app's access token.
pub(crate) const SESSION_COOKIE: &str = "continuum_app";
/// The sign-in form's own CSRF cookie (before there is a session).
const SIGN_IN_CSRF_COOKIE: &str = "continuum_app_signin";

/// A signed-in user, as every page sees them.
pub(crate) struct Session {
    pub caller: Arc<Caller>,
    /// The value every form of this session must post back as `csrf`.
    pub csrf: String,
    pub address: Option<SocketAddr>,
    token: String,
}

impl Session {
    /// The user's id (for recent patients).
    pub(crate) fn user_id(&self) -> String {
        match &self.caller.principal.subject {
            auth::Subject::User { id, .. } => id.clone(),
            auth::Subject::Service { client_id } => client_id.clone(),
        }
    }

    /// The name shown in the header.
    pub(crate) fn username(&self) -> String {
        self.caller.principal.subject.name().to_string()
    }

    /// Refuses a form post without this session's CSRF value.
    pub(crate) fn check_form(&self, form: &HashMap<String, String>) -> Result<(), WebError> {
        match form.get("csrf") {
            Some(value) if same(value, &self.csrf) => Ok(()),
            _ => Err(WebError::Forbidden("this form has expired or was not sent by this app; reload the page".into())),
        }
    }
}

/// The CSRF value of a session: derived from its token, so that only a page of the session
/// can know it, and nothing needs storing.
fn csrf_for(token: &str) -> String {
    let digest = Sha256::digest(format!("continuum-web-csrf\0{token}").as_bytes());
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// Compares without stopping at the first difference.
fn same(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

pub(crate) fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .and_then(|c| c.value_raw())
}

fn set_cookie(app: &WebApp, name: &str, value: &str, max_age: Option<i64>) -> HeaderValue {
    let mut cookie = cookie::Cookie::build((name, value))
        .path("/app")
        .http_only(true)
        .same_site(cookie::SameSite::Strict)
        .secure(app.inner.secure_cookies);
    if let Some(seconds) = max_age {
        cookie = cookie.max_age(time::Duration::seconds(seconds));
    }
    HeaderValue::from_str(&cookie.to_string()).unwrap_or_else(|_| HeaderValue::from_static("invalid=1"))
}

/// Where a visitor without a session goes: the sign-in page, then back to where they were.
fn to_sign_in(parts: &Parts, why: Option<&str>) -> Response {
    let next = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/app/patients");
    let next = if parts.method == axum::http::Method::GET { next } else { "/app/patients" };
    let mut target = format!("/app/sign-in?next={}", percent_encoding::utf8_percent_encode(next, QUERY));
    if let Some(why) = why {
        target.push_str("&ended=");
        target.push_str(why);
    }
    Redirect::to(&target).into_response()
}

const QUERY: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'/');

impl FromRequestParts<WebApp> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &WebApp) -> Result<Self, Response> {
        let Some(token) = cookie(&parts.headers, SESSION_COOKIE).map(str::to_string).filter(|t| !t.is_empty()) else {
            return Err(to_sign_in(parts, None));
        };
        let policy = app.inner.policy.clone();
        let bearer = format!("Bearer {token}");
        let caller = tokio::task::spawn_blocking(move || policy.authenticate(Some(&bearer)))
            .await
            .map_err(|_| WebError::Internal.into_response())?;
        let caller = match caller {
            Ok(caller) => caller,
            // Expired, idle, revoked or a disabled user: sign in again.
            Err(Refusal::Unauthenticated(_)) => return Err(to_sign_in(parts, Some("1"))),
            Err(other) => return Err(WebError::from(other).into_response()),
        };
        let address = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
        Ok(Session { caller: Arc::new(caller), csrf: csrf_for(&token), address, token })
    }
}

/// Sign-in posts per client address.
pub(crate) struct Throttle {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    clock: DefaultClock,
}

impl Throttle {
    pub(crate) fn new(per_minute: u32) -> Option<Throttle> {
        NonZeroU32::new(per_minute).map(|per_minute| Throttle {
            limiter: DefaultKeyedRateLimiter::keyed(Quota::per_minute(per_minute)),
            clock: DefaultClock::default(),
        })
    }

    /// `Err(seconds to wait)` when this address has posted too often.
    fn check(&self, address: Option<SocketAddr>) -> Result<(), u64> {
        let ip = address.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip());
        if self.limiter.len() > 10_000 {
            self.limiter.retain_recent();
        }
        self.limiter.check_key(&ip).map_err(|not_until| not_until.wait_time_from(self.clock.now()).as_secs().max(1))
    }
}

fn sign_in_page(message: Option<&str>, next: &str, csrf: &str, status: StatusCode, app: &WebApp) -> Response {
    let body = layout::bare_page(
        "Sign in",
        html! {
            main class="narrow" {
                h1 { "Continuum — sign in" }
                @if let Some(message) = message { p class="error" role="alert" { (message) } }
                form method="post" action="/app/sign-in" {
                    input type="hidden" name="csrf" value=(csrf);
                    input type="hidden" name="next" value=(next);
                    p { label for="username" { "Username" } br; input id="username" name="username" autocomplete="username" required autofocus; }
                    p { label for="password" { "Password" } br; input id="password" name="password" type="password" autocomplete="current-password" required; }
                    p { button type="submit" { "Sign in" } }
                }
            }
        },
    );
    let mut response = (status, body).into_response();
    response.headers_mut().append(header::SET_COOKIE, set_cookie(app, SIGN_IN_CSRF_COOKIE, csrf, Some(1800)));
    no_store(&mut response);
    response
}

fn no_store(response: &mut Response) {
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// A `next` that stays inside the app (no open redirect).
fn safe_next(next: Option<&String>) -> String {
    match next {
        Some(n) if n.starts_with("/app/") && !n.starts_with("//") && !n.contains('\\') => n.clone(),
        _ => "/app/patients".to_string(),
    }
}

fn random_value() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// `GET /app/sign-in`.
pub(crate) async fn sign_in_form(State(app): State<WebApp>, Query(query): Query<HashMap<String, String>>) -> Response {
    let message = query.contains_key("ended").then_some("Your session ended. Please sign in again.");
    sign_in_page(message, &safe_next(query.get("next")), &random_value(), StatusCode::OK, &app)
}

fn sign_in_csrf_ok(headers: &HeaderMap, form: &HashMap<String, String>) -> bool {
    match (cookie(headers, SIGN_IN_CSRF_COOKIE), form.get("csrf")) {
        (Some(c), Some(f)) => !c.is_empty() && same(c, f),
        _ => false,
    }
}

/// The checks every sign-in post passes first: the form's own CSRF value, then the
/// per-address throttle (the password and code forms share the count).
fn refuse_sign_in_post(
    app: &WebApp,
    extensions: &axum::http::Extensions,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
    next: &str,
) -> Option<Response> {
    if !sign_in_csrf_ok(headers, form) {
        return Some(sign_in_page(
            Some("The form expired. Please try again."),
            next,
            &random_value(),
            StatusCode::FORBIDDEN,
            app,
        ));
    }
    if let Some(throttle) = &app.inner.throttle
        && let Err(wait) = throttle.check(extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0))
    {
        let message = format!("Too many sign-in attempts. Try again in {wait} seconds.");
        return Some(sign_in_page(Some(&message), next, &random_value(), StatusCode::TOO_MANY_REQUESTS, app));
    }
    None
}

/// `POST /app/sign-in`: the password step.
pub(crate) async fn sign_in(
    State(app): State<WebApp>,
    extensions: axum::http::Extensions,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let next = safe_next(form.get("next"));
    if let Some(refused) = refuse_sign_in_post(&app, &extensions, &headers, &form, &next) {
        return refused;
    }
    let username = form.get("username").map(|u| u.trim().to_string()).unwrap_or_default();
    let password = form.get("password").cloned().unwrap_or_default();
    if username.is_empty() || password.is_empty() {
        return sign_in_page(
            Some("Enter your username and password."),
            &next,
            &random_value(),
            StatusCode::BAD_REQUEST,
            &app,
        );
    }
    let authority = app.inner.policy.authority().clone();
    let answer = blocking(move || authority.web_sign_in(&username, &password).map_err(|_| WebError::Internal)).await;
    signed_in(&app, answer, &next)
}

/// `POST /app/sign-in/code`: the TOTP step.
pub(crate) async fn sign_in_code(
    State(app): State<WebApp>,
    extensions: axum::http::Extensions,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let next = safe_next(form.get("next"));
    if let Some(refused) = refuse_sign_in_post(&app, &extensions, &headers, &form, &next) {
        return refused;
    }
    let ticket = form.get("ticket").cloned().unwrap_or_default();
    let code = form.get("code").map(|c| c.trim().to_string()).unwrap_or_default();
    let authority = app.inner.policy.authority().clone();
    let answer = blocking(move || authority.web_second_factor(&ticket, &code).map_err(|_| WebError::Internal)).await;
    signed_in(&app, answer, &next)
}

fn signed_in(app: &WebApp, answer: Result<WebSignIn, WebError>, next: &str) -> Response {
    let refused = |message: &str, status| sign_in_page(Some(message), next, &random_value(), status, app);
    match answer {
        Ok(WebSignIn::Session { token, .. }) => {
            let mut response = Redirect::to(next).into_response();
            response.headers_mut().append(header::SET_COOKIE, set_cookie(app, SESSION_COOKIE, &token, None));
            response.headers_mut().append(header::SET_COOKIE, set_cookie(app, SIGN_IN_CSRF_COOKIE, "", Some(0)));
            response
        }
        Ok(WebSignIn::NeedsCode { ticket }) => {
            let csrf = random_value();
            let body = layout::bare_page(
                "Sign in — code",
                html! {
                    main class="narrow" {
                        h1 { "Second step" }
                        form method="post" action="/app/sign-in/code" {
                            input type="hidden" name="csrf" value=(csrf);
                            input type="hidden" name="next" value=(next);
                            input type="hidden" name="ticket" value=(ticket);
                            p { label for="code" { "Code from your authenticator app" } br;
                                input id="code" name="code" inputmode="numeric" autocomplete="one-time-code" required autofocus; }
                            p { button type="submit" { "Continue" } }
                        }
                    }
                },
            );
            let mut response = body.into_response();
            response.headers_mut().append(header::SET_COOKIE, set_cookie(app, SIGN_IN_CSRF_COOKIE, &csrf, Some(300)));
            no_store(&mut response);
            response
        }
        Ok(WebSignIn::NotEnrolled) => refused(
            "Staff must use a second factor: ask an administrator to enrol you (continuum user totp).",
            StatusCode::FORBIDDEN,
        ),
        Ok(WebSignIn::NotStaff) => refused(
            "This app is for clinical and practice staff. Patients use the patient portal.",
            StatusCode::FORBIDDEN,
        ),
        Ok(WebSignIn::Refused) => refused("Wrong username or password.", StatusCode::UNAUTHORIZED),
        Err(_) => refused("Sign-in is not available right now.", StatusCode::INTERNAL_SERVER_ERROR),
    }
}

/// `POST /app/sign-out`: revokes the session's token and clears the cookie.
pub(crate) async fn sign_out(
    State(app): State<WebApp>,
    session: Session,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, WebError> {
    session.check_form(&form)?;
    let authority = app.inner.policy.authority().clone();
    let token = session.token.clone();
    blocking(move || authority.web_sign_out(&token).map_err(|_| WebError::Internal)).await?;
    let mut response = Redirect::to("/app/sign-in").into_response();
    response.headers_mut().append(header::SET_COOKIE, set_cookie(&app, SESSION_COOKIE, "", Some(0)));
    Ok(response)
}
