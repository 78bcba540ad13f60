//! The HTTP edge of the authorization server (`auth`): the OAuth 2.0 / SMART endpoints as an
//! axum `Router` that the server mounts beside the FHIR API: discovery under the FHIR base,
//! `/auth/authorize` (with its sign-in, code, password and consent forms, [`pages`]),
//! `/auth/token`, `/auth/introspect`, `/auth/revoke`, `/auth/jwks`. What each refusal is
//! answered with is decided in one place, [`errors`].

mod client_keys;
mod errors;
mod pages;

use auth::scope::{ScopeKind, ScopeSet};
use auth::{Authority, AuthorizeError, ClientCredentials, OAuthError, Pending, SignIn, Stage, User};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use base64::Engine;
use errors::PageError;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

type Shared = State<Arc<Authority>>;

/// The authorization server's routes, ready to merge into the application router. Serve them
/// with `ConnectInfo<SocketAddr>` (`into_make_service_with_connect_info`): the sign-in throttle
/// counts per client address, and without one every client shares a single count.
pub fn router(authority: Arc<Authority>) -> Router {
    let fhir = authority.config().fhir_path().to_string();
    let mut sign_in = Router::new().route("/auth/login", post(login)).route("/auth/totp", post(code));
    if let Some(per_minute) = NonZeroU32::new(authority.config().sign_in_attempts_per_minute) {
        let throttle = Arc::new(SignInThrottle {
            limiter: DefaultKeyedRateLimiter::keyed(Quota::per_minute(per_minute)),
            clock: DefaultClock::default(),
            checks: AtomicU64::new(0),
        });
        sign_in = sign_in.route_layer(axum::middleware::from_fn_with_state(throttle, throttle_sign_in));
    }
    Router::new()
        .route(&format!("{fhir}/.well-known/smart-configuration"), get(smart_configuration))
        .route(&format!("{fhir}/.well-known/openid-configuration"), get(openid_configuration))
        .route("/auth/jwks", get(jwks))
        .route("/auth/authorize", get(authorize))
        .merge(sign_in)
        .route("/auth/password", post(password))
        .route("/auth/consent", post(consent))
        .route("/auth/token", post(token))
        .route("/auth/introspect", post(introspect))
        .route("/auth/revoke", post(revoke))
        .with_state(authority)
}

/// Sign-in form posts per client address, in memory: a guessing client is slowed down before
/// the per-user lock-out (which counts in the store) locks its victims.
struct SignInThrottle {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    clock: DefaultClock,
    checks: AtomicU64,
}

/// Client addresses remembered before the idle ones are forgotten.
const THROTTLE_FORGET_ABOVE: usize = 10_000;

async fn throttle_sign_in(State(throttle): State<Arc<SignInThrottle>>, request: Request, next: Next) -> Response {
    let address = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |ConnectInfo(client)| client.ip());
    if throttle.checks.fetch_add(1, Ordering::Relaxed) % 1024 == 0 && throttle.limiter.len() > THROTTLE_FORGET_ABOVE {
        throttle.limiter.retain_recent();
    }
    if let Err(not_until) = throttle.limiter.check_key(&address) {
        return PageError::TooManyAttempts(not_until.wait_time_from(throttle.clock.now())).into_response();
    }
    next.run(request).await
}

/// Runs blocking store (and argon2) work off the async threads.
async fn blocking<T: Send + 'static>(
    authority: &Arc<Authority>,
    work: impl FnOnce(&Authority) -> T + Send + 'static,
) -> Result<T, Response> {
    let authority = Arc::clone(authority);
    tokio::task::spawn_blocking(move || work(&authority)).await.map_err(|_| errors::work_panicked())
}

/// A JSON answer that no cache keeps (tokens, introspection, OAuth errors).
fn json_no_store(status: StatusCode, body: serde_json::Value) -> Response {
    let mut response = (status, axum::Json(body)).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response.headers_mut().insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

fn form(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

/// Single-valued form fields; a repeated field is an error (RFC 6749 §3.1).
fn single(fields: &[(String, String)]) -> Result<HashMap<String, String>, OAuthError> {
    let mut map = HashMap::new();
    for (k, v) in fields {
        if map.insert(k.clone(), v.clone()).is_some() {
            return Err(OAuthError::new("invalid_request", "a parameter is repeated"));
        }
    }
    Ok(map)
}

/// The value of the request's cookie `name`.
fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .and_then(|c| c.value_raw())
}

fn with_params(uri: &str, params: &[(&str, &str)]) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        query.append_pair(k, v);
    }
    let separator = if uri.contains('?') { '&' } else { '?' };
    format!("{uri}{separator}{}", query.finish())
}

fn redirect_error(redirect_uri: &str, state: Option<&str>, error: &OAuthError) -> Response {
    let mut params = vec![("error", error.error), ("error_description", error.description.as_str())];
    if let Some(state) = state {
        params.push(("state", state));
    }
    Redirect::to(&with_params(redirect_uri, &params)).into_response()
}

fn is_https(authority: &Authority) -> bool {
    authority.config().fhir_base_url.starts_with("https://")
}

async fn smart_configuration(State(authority): Shared) -> Response {
    let config = authority.config();
    let body = serde_json::json!({
        "issuer": config.fhir_base_url,
        "jwks_uri": config.endpoint("/auth/jwks"),
        "authorization_endpoint": config.endpoint("/auth/authorize"),
        "token_endpoint": config.endpoint("/auth/token"),
        "introspection_endpoint": config.endpoint("/auth/introspect"),
        "revocation_endpoint": config.endpoint("/auth/revoke"),
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
        "scopes_supported": [
            "openid", "fhirUser", "launch", "launch/patient", "launch/encounter", "offline_access",
            "online_access", "patient/*.rs", "user/*.rs", "patient/*.cruds", "user/*.cruds", "system/*.rs",
            "patient/*.read", "user/*.read", "patient/*.write", "user/*.write"
        ],
        "capabilities": [
            "launch-ehr", "launch-standalone", "client-public", "client-confidential-symmetric",
            "client-confidential-asymmetric", "context-ehr-patient", "context-ehr-encounter",
            "context-standalone-patient", "context-banner", "sso-openid-connect", "permission-offline",
            "permission-online", "permission-patient", "permission-user", "permission-v1", "permission-v2"
        ],
    });
    ([(header::CACHE_CONTROL, HeaderValue::from_static("max-age=300"))], axum::Json(body)).into_response()
}

async fn openid_configuration(State(authority): Shared) -> Response {
    let config = authority.config();
    axum::Json(serde_json::json!({
        "issuer": config.fhir_base_url,
        "authorization_endpoint": config.endpoint("/auth/authorize"),
        "token_endpoint": config.endpoint("/auth/token"),
        "jwks_uri": config.endpoint("/auth/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "scopes_supported": ["openid", "fhirUser"],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "fhirUser", "nonce"],
    }))
    .into_response()
}

async fn jwks(State(authority): Shared) -> Response {
    axum::Json(authority.jwks()).into_response()
}

async fn authorize(State(authority): Shared, RawQuery(query): RawQuery) -> Response {
    let fields = form(query.unwrap_or_default().as_bytes());
    let params = match single(&fields) {
        Ok(params) => params,
        Err(_) => return PageError::RepeatedParameter.into_response(),
    };
    let secure = is_https(&authority);
    let max_age = authority.config().sign_in_form_seconds;
    match blocking(&authority, move |a| a.start_authorization(&params)).await {
        Err(response) => response,
        Ok(Ok((key, pending))) => pages::login(&key, &pending, false, secure, max_age),
        Ok(Err(AuthorizeError::Page(message))) => PageError::Request(message).into_response(),
        Ok(Err(AuthorizeError::Redirect { redirect_uri, state, error })) => {
            redirect_error(&redirect_uri, state.as_deref(), &error)
        }
    }
}

/// The pending authorization a form post belongs to, checked against the CSRF cookie.
fn pending_of(
    authority: &Authority,
    headers: &HeaderMap,
    fields: &HashMap<String, String>,
) -> Option<(String, Pending)> {
    let key = fields.get("request").cloned().unwrap_or_default();
    let csrf = fields.get("csrf").map(String::as_str).unwrap_or_default();
    authority.pending(&key, csrf, cookie(headers, pages::CSRF_COOKIE)).map(|p| (key, p))
}

fn expired_form() -> Response {
    PageError::ExpiredForm.into_response()
}

fn repeated_field() -> Response {
    PageError::RepeatedField.into_response()
}

/// Whether the consent page must ask a staff member which patient to launch with.
fn asks_patient(authority: &Authority, pending: &Pending, user_id: &str) -> bool {
    let wants = pending.scopes.has(&ScopeKind::LaunchPatient)
        && pending.launch.as_ref().and_then(|l| l.patient.as_ref()).is_none();
    wants && authority.store().user_by_id(user_id).ok().flatten().is_some_and(|u| u.identity.patient().is_none())
}

fn server_failed(e: &auth::Error) -> Response {
    PageError::failed("sign-in", e).into_response()
}

fn sign_in_first() -> Response {
    PageError::SignInFirst.into_response()
}

async fn login(State(authority): Shared, headers: HeaderMap, body: Bytes) -> Response {
    let Ok(fields) = single(&form(&body)) else { return repeated_field() };
    let Some((key, pending)) = pending_of(&authority, &headers, &fields) else { return expired_form() };
    let username = fields.get("username").cloned().unwrap_or_default();
    let password = fields.get("password").cloned().unwrap_or_default();
    let outcome = match blocking(&authority, move |a| a.sign_in(&username, &password)).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(e)) => return server_failed(&e),
        Err(response) => return response,
    };
    match outcome {
        SignIn::Refused => {
            authority.update_pending(&key, |p| p.stage = Stage::Password);
            pages::login(&key, &pending, true, is_https(&authority), authority.config().sign_in_form_seconds)
        }
        SignIn::NotEnrolled => {
            authority.update_pending(&key, |p| p.stage = Stage::Password);
            PageError::NotEnrolled.into_response()
        }
        SignIn::NeedsCode(user) => {
            authority.update_pending(&key, |p| p.stage = Stage::Code { user_id: user.id });
            pages::code(&key, &pending, false)
        }
        SignIn::Ok(user) => next_after_credentials(&authority, &key, &pending, &user).await,
    }
}

/// The page after the credentials were accepted: a new password first if the one used was
/// one-time, else consent.
async fn next_after_credentials(authority: &Arc<Authority>, key: &str, pending: &Pending, user: &User) -> Response {
    let stage = Stage::after_credentials(user);
    authority.update_pending(key, |p| p.stage = stage.clone());
    match stage {
        Stage::NewPassword { .. } => pages::change_password(key, pending, None),
        _ => consent_page(authority, key, pending, &user.id).await,
    }
}

async fn consent_page(authority: &Arc<Authority>, key: &str, pending: &Pending, user_id: &str) -> Response {
    let ask = blocking(authority, {
        let (pending, user_id) = (pending.clone(), user_id.to_string());
        move |a| asks_patient(a, &pending, &user_id)
    })
    .await
    .unwrap_or(false);
    pages::consent(key, pending, ask)
}

/// The second factor: the TOTP code of the user whose password was right.
async fn code(State(authority): Shared, headers: HeaderMap, body: Bytes) -> Response {
    let Ok(fields) = single(&form(&body)) else { return repeated_field() };
    let Some((key, pending)) = pending_of(&authority, &headers, &fields) else { return expired_form() };
    let Stage::Code { user_id } = pending.stage.clone() else { return sign_in_first() };
    let code = fields.get("code").cloned().unwrap_or_default();
    match blocking(&authority, move |a| a.second_factor(&user_id, &code)).await {
        Ok(Ok(Some(user))) => next_after_credentials(&authority, &key, &pending, &user).await,
        Ok(Ok(None)) => pages::code(&key, &pending, true),
        Ok(Err(e)) => server_failed(&e),
        Err(response) => response,
    }
}

async fn password(State(authority): Shared, headers: HeaderMap, body: Bytes) -> Response {
    let Ok(fields) = single(&form(&body)) else { return repeated_field() };
    let Some((key, pending)) = pending_of(&authority, &headers, &fields) else { return expired_form() };
    let Stage::NewPassword { user_id } = pending.stage.clone() else { return sign_in_first() };
    let new_password = fields.get("new_password").cloned().unwrap_or_default();
    if fields.get("confirm") != Some(&new_password) {
        return pages::change_password(&key, &pending, Some("The two passwords differ."));
    }
    let changed = {
        let user_id = user_id.clone();
        blocking(&authority, move |a| a.change_password(&user_id, &new_password)).await
    };
    match changed {
        Ok(Ok(())) => {
            authority.update_pending(&key, |p| p.stage = Stage::Consent { user_id: user_id.clone() });
            consent_page(&authority, &key, &pending, &user_id).await
        }
        Ok(Err(auth::Error::Invalid(message))) => pages::change_password(&key, &pending, Some(&message)),
        Ok(Err(e)) => PageError::failed("password change", &e).into_response(),
        Err(response) => response,
    }
}

async fn consent(State(authority): Shared, headers: HeaderMap, body: Bytes) -> Response {
    let all = form(&body);
    let kept: Vec<String> = all.iter().filter(|(k, _)| k == "scope").map(|(_, v)| v.clone()).collect();
    let fields: HashMap<String, String> = all.into_iter().filter(|(k, _)| k != "scope").collect();
    let Some((key, pending)) = pending_of(&authority, &headers, &fields) else { return expired_form() };
    let Stage::Consent { user_id } = pending.stage.clone() else { return sign_in_first() };
    authority.finish_pending(&key);
    let state = pending.state.clone();
    if fields.get("decision").map(String::as_str) != Some("approve") {
        let denied = OAuthError::new("access_denied", "the user denied access");
        return redirect_error(&pending.redirect_uri, state.as_deref(), &denied);
    }
    let kept: ScopeSet = pending.scopes.filtered(|s| kept.iter().any(|k| k == s.as_str()));
    let patient = fields.get("patient").map(|p| p.trim().to_string()).filter(|p| !p.is_empty());
    let issued = {
        let pending = pending.clone();
        blocking(&authority, move |a| {
            let user = a.store().user_by_id(&user_id)?.filter(|u| !u.disabled);
            match user {
                Some(user) => Ok(a.approve(&pending, &user, kept, patient.as_deref())),
                None => Ok(Err(OAuthError::new("access_denied", "the user is disabled"))),
            }
        })
        .await
    };
    match issued {
        Ok(Ok(Ok(code))) => {
            let mut params = vec![("code", code.as_str())];
            if let Some(state) = state.as_deref() {
                params.push(("state", state));
            }
            Redirect::to(&with_params(&pending.redirect_uri, &params)).into_response()
        }
        Ok(Ok(Err(error))) => redirect_error(&pending.redirect_uri, state.as_deref(), &error),
        Ok(Err::<_, auth::Error>(e)) => {
            tracing::error!(error = %e, "consent failed");
            redirect_error(
                &pending.redirect_uri,
                state.as_deref(),
                &OAuthError::new("server_error", "the authorization server failed"),
            )
        }
        Err(response) => response,
    }
}

/// Client credentials from HTTP Basic (RFC 6749 §2.3.1) and the form.
fn client_credentials(headers: &HeaderMap, fields: &HashMap<String, String>) -> Result<ClientCredentials, OAuthError> {
    let mut credentials = ClientCredentials {
        client_id: fields.get("client_id").cloned(),
        client_secret: fields.get("client_secret").cloned(),
        assertion_type: fields.get("client_assertion_type").cloned(),
        assertion: fields.get("client_assertion").cloned(),
    };
    if let Some(basic) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic ").or_else(|| v.strip_prefix("basic ")))
    {
        let bad = || OAuthError::new("invalid_client", "malformed Basic credentials");
        let decoded = base64::engine::general_purpose::STANDARD.decode(basic.trim()).map_err(|_| bad())?;
        let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
        let (id, secret) = decoded.split_once(':').ok_or_else(bad)?;
        let decode = |s: &str| {
            form_urlencoded::parse(format!("x={s}").as_bytes()).next().map(|(_, v)| v.into_owned()).unwrap_or_default()
        };
        if credentials.client_secret.is_some() || credentials.client_id.as_deref().is_some_and(|c| c != decode(id)) {
            return Err(OAuthError::new("invalid_request", "use one client authentication method"));
        }
        credentials.client_id = Some(decode(id));
        credentials.client_secret = Some(decode(secret));
    }
    Ok(credentials)
}

fn has_client_credentials(credentials: &ClientCredentials) -> bool {
    credentials.client_secret.is_some() || credentials.assertion.is_some()
}

async fn token(State(authority): Shared, headers: HeaderMap, body: Bytes) -> Response {
    let fields = match single(&form(&body)) {
        Ok(fields) => fields,
        Err(error) => return errors::oauth_error(&error),
    };
    let credentials = match client_credentials(&headers, &fields) {
        Ok(credentials) => credentials,
        Err(error) => return errors::oauth_error(&error),
    };
    if let Some(assertion) = &credentials.assertion {
        client_keys::prefetch(&authority, assertion, credentials.client_id.as_deref()).await;
    }
    let outcome = blocking(&authority, move |a| {
        let get = |k: &str| fields.get(k).map(String::as_str).unwrap_or_default();
        let names_no_client = credentials.client_id.is_none() && !has_client_credentials(&credentials);
        let client = if names_no_client && get("grant_type") == "refresh_token" {
            a.refresh_token_client(get("refresh_token"))?
        } else {
            a.authenticate_client(&credentials)?
        };
        match get("grant_type") {
            "authorization_code" => a.exchange_code(&client, get("code"), get("redirect_uri"), get("code_verifier")),
            "refresh_token" => a.refresh(&client, get("refresh_token"), fields.get("scope").map(String::as_str)),
            "client_credentials" => a.client_credentials(&client, get("scope")),
            "" => Err(OAuthError::new("invalid_request", "grant_type is missing")),
            _ => Err(OAuthError::new("unsupported_grant_type", "this grant_type is not supported")),
        }
    })
    .await;
    match outcome {
        Ok(Ok(tokens)) => json_no_store(StatusCode::OK, serde_json::to_value(tokens).unwrap_or_default()),
        Ok(Err(error)) => errors::oauth_error(&error),
        Err(response) => response,
    }
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_string())
}

async fn introspect(State(authority): Shared, headers: HeaderMap, body: Bytes) -> Response {
    let fields = match single(&form(&body)) {
        Ok(fields) => fields,
        Err(error) => return errors::oauth_error(&error),
    };
    let caller_token = bearer(&headers);
    let credentials = if caller_token.is_some() {
        None
    } else {
        match client_credentials(&headers, &fields) {
            Ok(c) if has_client_credentials(&c) => Some(c),
            Ok(_) => return errors::oauth_error(&OAuthError::new("invalid_client", "authenticate to introspect")),
            Err(error) => return errors::oauth_error(&error),
        }
    };
    if let Some(assertion) = credentials.as_ref().and_then(|c| c.assertion.clone()) {
        client_keys::prefetch(&authority, &assertion, credentials.as_ref().and_then(|c| c.client_id.as_deref())).await;
    }
    let outcome = blocking(&authority, move |a| {
        // RFC 7662 §2.1: the caller must be authorized, by a bearer token or client credentials.
        match (&caller_token, &credentials) {
            (Some(token), _) => {
                a.validate_bearer(token)
                    .map_err(|_| OAuthError::new("invalid_client", "the bearer token is not active"))?;
            }
            (None, Some(credentials)) => {
                a.authenticate_client(credentials)?;
            }
            (None, None) => return Err(OAuthError::new("invalid_client", "authenticate to introspect")),
        }
        Ok(a.introspect(fields.get("token").map(String::as_str).unwrap_or_default())?)
    })
    .await;
    match outcome {
        Ok(Ok(answer)) => json_no_store(StatusCode::OK, answer),
        Ok(Err(error)) => errors::oauth_error(&error),
        Err(response) => response,
    }
}

async fn revoke(State(authority): Shared, headers: HeaderMap, body: Bytes) -> Response {
    let fields = match single(&form(&body)) {
        Ok(fields) => fields,
        Err(error) => return errors::oauth_error(&error),
    };
    let credentials = match client_credentials(&headers, &fields) {
        Ok(credentials) => credentials,
        Err(error) => return errors::oauth_error(&error),
    };
    if let Some(assertion) = &credentials.assertion {
        client_keys::prefetch(&authority, assertion, credentials.client_id.as_deref()).await;
    }
    let outcome = blocking(&authority, move |a| {
        let client = if credentials.client_id.is_some() || credentials.assertion.is_some() {
            Some(a.authenticate_client(&credentials)?)
        } else {
            None
        };
        a.revoke(client.as_ref(), fields.get("token").map(String::as_str).unwrap_or_default())?;
        Ok::<_, OAuthError>(())
    })
    .await;
    match outcome {
        Ok(Ok(())) => json_no_store(StatusCode::OK, serde_json::json!({})),
        Ok(Err(error)) => errors::oauth_error(&error),
        Err(response) => response,
    }
}
