//! The SMART backend-services client of a peer: a token from the peer's token endpoint
//! (found in its `.well-known/smart-configuration`) for a JWT assertion signed with this
//! node's key (ES384; `iss` = `sub` = the client id, `aud` = the token endpoint, five minutes,
//! a fresh `jti`), kept until shortly before it expires; FHIR requests with strict timeouts,
//! no redirects followed, answers capped in size and refused unless JSON.

use super::registry::{Peer, PeerRegistry};
use crate::{Error, Result};
use serde_json::Value;
use std::collections::HashMap;
use std::io::Read;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The longest a connection to a peer may take to open.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest one request to a peer may take, answer included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest answer read from a peer.
pub const MAX_ANSWER_BYTES: u64 = 64 * 1024 * 1024;
/// A token is renewed this long before it expires.
const RENEW_BEFORE: Duration = Duration::from_secs(60);
/// The assertion's lifetime.
const ASSERTION_SECONDS: i64 = 240;
/// Where the system's trusted roots are, for https peers.
const SYSTEM_ROOTS: &[&str] =
    &["/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem"];

/// Whose token: the peer's name, URL and client id.
type TokenKey = (String, String, String);

/// Access tokens obtained from peers, with the instant each is renewed.
#[derive(Default)]
pub(crate) struct TokenCache {
    tokens: Mutex<HashMap<TokenKey, (String, Instant)>>,
}

impl TokenCache {
    fn key(peer: &Peer) -> TokenKey {
        (peer.name.clone(), peer.url.clone(), peer.client_id.clone())
    }

    fn get(&self, peer: &Peer) -> Option<String> {
        let tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        tokens.get(&Self::key(peer)).filter(|(_, until)| Instant::now() < *until).map(|(t, _)| t.clone())
    }

    fn put(&self, peer: &Peer, token: String, lasts: Duration) {
        let until = Instant::now() + lasts.saturating_sub(RENEW_BEFORE);
        self.tokens.lock().unwrap_or_else(|p| p.into_inner()).insert(Self::key(peer), (token, until));
    }

    fn forget(&self, peer: &Peer) {
        self.tokens.lock().unwrap_or_else(|p| p.into_inner()).remove(&Self::key(peer));
    }
}

/// One conversation with a peer (an HTTP client made for it, dropped with it, on the
/// blocking thread that runs the operation).
pub(crate) struct Session<'a> {
    pub(crate) peer: Peer,
    registry: &'a PeerRegistry,
    tokens: &'a TokenCache,
    http: reqwest::blocking::Client,
}

impl<'a> Session<'a> {
    pub(crate) fn open(registry: &'a PeerRegistry, tokens: &'a TokenCache, peer: Peer) -> Result<Session<'a>> {
        let mut builder = reqwest::blocking::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("continuum-peer/", env!("CARGO_PKG_VERSION")));
        if peer.url.starts_with("https://") {
            for path in SYSTEM_ROOTS {
                if let Ok(bundle) = std::fs::read(path) {
                    for certificate in reqwest::Certificate::from_pem_bundle(&bundle).unwrap_or_default() {
                        builder = builder.add_root_certificate(certificate);
                    }
                    break;
                }
            }
        }
        let http = builder.build().map_err(|_| Error::PeerUnreachable)?;
        Ok(Session { peer, registry, tokens, http })
    }

    /// `GET url` (an absolute URL on the peer) as FHIR JSON.
    pub(crate) fn get(&self, url: &str) -> Result<Value> {
        self.fhir(|token| self.http.get(url).bearer_auth(token).header("Accept", "application/fhir+json"))
    }

    /// `POST {base}/{path}` with `body` as FHIR JSON.
    pub(crate) fn post(&self, path: &str, body: &Value) -> Result<Value> {
        let url = format!("{}/{path}", self.peer.url);
        let text = serde_json::to_vec(body).map_err(|_| Error::invalid("the request could not be written"))?;
        self.fhir(|token| {
            self.http
                .post(&url)
                .bearer_auth(token)
                .header("Accept", "application/fhir+json")
                .header("Content-Type", "application/fhir+json")
                .body(text.clone())
        })
    }

    /// A FHIR request with the peer's token; once more with a new token when the peer
    /// answers 401 (its token was revoked or it restarted).
    fn fhir(&self, request: impl Fn(&str) -> reqwest::blocking::RequestBuilder) -> Result<Value> {
        let token = self.token()?;
        let (status, body) = send(request(&token))?;
        let (status, body) = if status == 401 {
            self.tokens.forget(&self.peer);
            send(request(&self.token()?))?
        } else {
            (status, body)
        };
        answer(status, body)
    }

    /// An access token for the peer (cached until shortly before it expires).
    fn token(&self) -> Result<String> {
        if let Some(token) = self.tokens.get(&self.peer) {
            return Ok(token);
        }
        let configuration = {
            let url = format!("{}/.well-known/smart-configuration", self.peer.url);
            let (status, body) = send(self.http.get(url).header("Accept", "application/json"))?;
            answer(status, body)?
        };
        let endpoint = configuration
            .get("token_endpoint")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::PeerAnswer("its SMART configuration names no token endpoint".into()))?
            .to_string();
        let endpoint = super::registry::check_url(&endpoint)
            .map_err(|_| Error::PeerAnswer("its token endpoint is not an http(s) URL".into()))?;
        let assertion = self.assertion(&endpoint)?;
        let form = [
            ("grant_type", "client_credentials"),
            ("scope", self.peer.scope.as_str()),
            ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
            ("client_assertion", assertion.as_str()),
        ];
        let (status, body) = send(self.http.post(&endpoint).header("Accept", "application/json").form(&form))?;
        if status == 400 || status == 401 {
            let reason = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
                .filter(|e| e.len() < 64 && e.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
                .unwrap_or_else(|| "refused".into());
            return Err(Error::PeerAnswer(format!("its token endpoint refused this node's client ({reason})")));
        }
        let body = answer(status, body)?;
        let token = body
            .get("access_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Error::PeerAnswer("its token answer has no access_token".into()))?
            .to_string();
        let lasts = body.get("expires_in").and_then(Value::as_u64).unwrap_or(300).min(24 * 3600);
        self.tokens.put(&self.peer, token.clone(), Duration::from_secs(lasts));
        Ok(token)
    }

    fn assertion(&self, endpoint: &str) -> Result<String> {
        let signing = self.registry.signing_key(&self.peer.name)?;
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let claims = serde_json::json!({
            "iss": self.peer.client_id,
            "sub": self.peer.client_id,
            "aud": endpoint,
            "exp": now + ASSERTION_SECONDS,
            "iat": now,
            "jti": uuid::Uuid::new_v4().to_string(),
        });
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES384);
        header.kid = Some(signing.kid.clone());
        jsonwebtoken::encode(&header, &claims, &signing.key).map_err(|_| Error::invalid("the peer's key cannot sign"))
    }
}

/// Sends a request: its status and body (at most [`MAX_ANSWER_BYTES`]); a redirect is an
/// error.
fn send(request: reqwest::blocking::RequestBuilder) -> Result<(u16, Vec<u8>)> {
    let response =
        request.send().map_err(|e| if e.is_timeout() { Error::PeerTimeout } else { Error::PeerUnreachable })?;
    let status = response.status();
    if status.is_redirection() {
        return Err(Error::PeerAnswer(format!("it redirected (HTTP {}); redirects are not followed", status.as_u16())));
    }
    let json = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("json"));
    let mut body = Vec::new();
    response.take(MAX_ANSWER_BYTES + 1).read_to_end(&mut body).map_err(|e| {
        let timed_out = e.kind() == std::io::ErrorKind::TimedOut
            || std::error::Error::source(&e)
                .and_then(|s| s.downcast_ref::<reqwest::Error>())
                .is_some_and(|r| r.is_timeout());
        if timed_out { Error::PeerTimeout } else { Error::PeerAnswer("its answer broke off".into()) }
    })?;
    if body.len() as u64 > MAX_ANSWER_BYTES {
        return Err(Error::PeerAnswer(format!("its answer is larger than {MAX_ANSWER_BYTES} bytes")));
    }
    if !json && status.is_success() {
        return Err(Error::PeerAnswer(format!("it answered HTTP {} without JSON", status.as_u16())));
    }
    Ok((status.as_u16(), body))
}

/// The JSON of a successful answer; a failure as an error naming the status and the
/// outcome's issue codes (never its texts: they are the peer's).
fn answer(status: u16, body: Vec<u8>) -> Result<Value> {
    if !(200..300).contains(&status) {
        let codes: Vec<String> = serde_json::from_slice::<Value>(&body)
            .ok()
            .filter(|v| v.get("resourceType").and_then(Value::as_str) == Some("OperationOutcome"))
            .and_then(|v| v.get("issue").and_then(Value::as_array).cloned())
            .into_iter()
            .flatten()
            .filter_map(|i| i.get("code").and_then(Value::as_str).map(str::to_string))
            .filter(|c| c.len() < 32 && c.chars().all(|c| c.is_ascii_lowercase() || c == '-'))
            .collect();
        return Err(Error::PeerRefused { status, codes: codes.join(", ") });
    }
    serde_json::from_slice(&body).map_err(|_| Error::PeerAnswer("its answer is not valid JSON".into()))
}
