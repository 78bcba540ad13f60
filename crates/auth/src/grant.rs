//! The grants: authorization code with PKCE (request, sign-in, consent, code exchange), refresh
//! and client credentials, and client authentication (secret or `private_key_jwt`).

use crate::authority::{Authority, Issue, TokenResponse, now};
use crate::crypto;
use crate::model::{Client, ClientKind, CodeRecord, LaunchContext, TokenKind, TokenRecord, User};
use crate::scope::{Context, ScopeKind, ScopeSet};
use crate::{Error, Result};
use std::collections::HashMap;

/// At most this many authorization requests wait at once (a bound on memory).
const MAX_PENDING: usize = 10_000;
/// The longest lifetime a client assertion may claim, seconds (SMART: at most five minutes).
const ASSERTION_MAX_SECONDS: i64 = 300;
/// Clock skew tolerated on assertion expiry, seconds.
const ASSERTION_LEEWAY: i64 = 30;
/// How long a fetched `jwks_uri` document is trusted, seconds.
const JWKS_CACHE_SECONDS: i64 = 300;

/// An OAuth error: the `error` code and a description free of submitted values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}: {description}")]
pub struct OAuthError {
    /// RFC 6749 error code (`invalid_grant`, …).
    pub error: &'static str,
    /// Human-readable detail.
    pub description: String,
}

impl OAuthError {
    /// An error with its RFC 6749 code and a description free of submitted values.
    pub fn new(error: &'static str, description: impl Into<String>) -> OAuthError {
        OAuthError { error, description: description.into() }
    }
}

impl From<Error> for OAuthError {
    fn from(e: Error) -> OAuthError {
        tracing::error!(error = %e, "authorization server failure");
        OAuthError::new("server_error", "the authorization server failed")
    }
}

type OAuthResult<T> = std::result::Result<T, OAuthError>;

/// An authorization request waiting for sign-in and consent.
#[derive(Debug, Clone)]
pub struct Pending {
    /// The client asking.
    pub client_id: String,
    /// The client's name, shown on the forms.
    pub client_name: String,
    /// Where the answer goes.
    pub redirect_uri: String,
    /// The app's `state`, sent back with the answer.
    pub state: Option<String>,
    /// The scopes asked for (and grantable to the client).
    pub scopes: ScopeSet,
    /// The PKCE challenge (S256).
    pub code_challenge: String,
    /// The OpenID Connect `nonce`.
    pub nonce: Option<String>,
    /// The EHR launch context, if the request named one.
    pub launch: Option<LaunchContext>,
    /// Bound to a cookie: the form posts must carry the same value (CSRF).
    pub csrf: String,
    /// How far the sign-in has come.
    pub stage: Stage,
    /// When the request was made (Unix seconds).
    pub created_at: i64,
}

/// The steps of a sign-in, in order: password, code (TOTP users), new password (one-time
/// passwords), consent. Each form is accepted only at its own step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stage {
    /// Waiting for the username and password.
    Password,
    /// The password was right; waiting for the user's TOTP code.
    Code {
        /// The user whose password was right.
        user_id: String,
    },
    /// Signed in with a one-time password, which must be replaced first.
    NewPassword {
        /// The user signed in.
        user_id: String,
    },
    /// Signed in; waiting for consent.
    Consent {
        /// The user signed in.
        user_id: String,
    },
}

impl Stage {
    /// Where a user goes once their credentials (password, and code if any) are accepted.
    pub fn after_credentials(user: &User) -> Stage {
        if user.must_change_password {
            Stage::NewPassword { user_id: user.id.clone() }
        } else {
            Stage::Consent { user_id: user.id.clone() }
        }
    }
}

/// Why an authorization request failed: either it can't be trusted to redirect (unknown
/// client, unregistered redirect URI) and is shown as a page, or the error goes back to the app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthorizeError {
    /// Show an error page; do not redirect.
    Page(String),
    /// Redirect to the app with this error.
    Redirect {
        /// Where to.
        redirect_uri: String,
        /// The app's `state`.
        state: Option<String>,
        /// The error.
        error: OAuthError,
    },
}

/// How a client authenticated at the token, introspection or revocation endpoint.
#[derive(Debug, Clone, Default)]
pub struct ClientCredentials {
    /// `client_id` (form or Basic).
    pub client_id: Option<String>,
    /// `client_secret` (form or Basic).
    pub client_secret: Option<String>,
    /// `client_assertion_type`.
    pub assertion_type: Option<String>,
    /// `client_assertion`.
    pub assertion: Option<String>,
}

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The outcome of the password form.
#[derive(Debug)]
pub enum SignIn {
    /// Signed in (no second factor).
    Ok(User),
    /// The password was right; the user's TOTP code comes next.
    NeedsCode(User),
    /// The password was right, but staff must use TOTP and this user has none enrolled.
    NotEnrolled,
    /// Wrong username or password, or the account is locked, disabled or its password expired:
    /// all answered alike.
    Refused,
}

impl Authority {
    /// Validates an authorization request (RFC 6749 §4.1.1, RFC 7636, SMART) and keeps it
    /// pending; returns its form key.
    pub fn start_authorization(
        &self,
        params: &HashMap<String, String>,
    ) -> std::result::Result<(String, Pending), AuthorizeError> {
        let get = |k: &str| params.get(k).map(String::as_str).filter(|v| !v.is_empty());
        let client_id = get("client_id").ok_or_else(|| AuthorizeError::Page("client_id is missing".into()))?;
        let client = self
            .store
            .client(client_id)
            .map_err(|_| AuthorizeError::Page("the authorization server failed".into()))?
            .filter(|c| !c.disabled)
            .ok_or_else(|| AuthorizeError::Page("the client is not registered".into()))?;
        let redirect_uri = get("redirect_uri").ok_or_else(|| AuthorizeError::Page("redirect_uri is missing".into()))?;
        if !client.redirect_uris.iter().any(|r| r == redirect_uri) {
            return Err(AuthorizeError::Page("redirect_uri is not registered for this client".into()));
        }
        let state = get("state").map(str::to_string);
        let fail = |error: &'static str, description: &str| AuthorizeError::Redirect {
            redirect_uri: redirect_uri.to_string(),
            state: state.clone(),
            error: OAuthError::new(error, description),
        };
        if get("response_type") != Some("code") {
            return Err(fail("unsupported_response_type", "only response_type=code is supported"));
        }
        let challenge =
            get("code_challenge").ok_or_else(|| fail("invalid_request", "PKCE code_challenge is required"))?;
        if get("code_challenge_method") != Some("S256") {
            return Err(fail("invalid_request", "code_challenge_method must be S256"));
        }
        if challenge.len() != 43 {
            return Err(fail("invalid_request", "code_challenge is not a base64url SHA-256"));
        }
        if get("aud").map(|a| a.trim_end_matches('/')) != Some(self.config.fhir_base_url.as_str()) {
            return Err(fail("invalid_request", "aud must be this server's FHIR base URL"));
        }
        let requested = ScopeSet::parse(get("scope").unwrap_or(""));
        // system/ scopes belong to backend services (client_credentials) only.
        let scopes = ScopeSet::parse(&client.allowed_scopes).grantable(&requested).filtered(|s| match s.kind() {
            ScopeKind::Resource(r) => r.context != Context::System,
            _ => true,
        });
        if !scopes.resource_scopes().any(|_| true) && !scopes.has(&ScopeKind::OpenId) {
            return Err(fail("invalid_scope", "no requested scope may be granted to this client"));
        }
        let launch = match get("launch") {
            Some(id) => {
                let launch = self
                    .store
                    .launch(&crypto::secret_hash(id))
                    .map_err(|_| fail("server_error", "the authorization server failed"))?
                    .filter(|l| l.expires_at > now())
                    .ok_or_else(|| fail("invalid_request", "the launch context is unknown or expired"))?;
                Some(launch)
            }
            None if scopes.has(&ScopeKind::Launch) => {
                return Err(fail("invalid_request", "scope launch needs a launch parameter"));
            }
            None => None,
        };
        let pending = Pending {
            client_id: client.id,
            client_name: client.name,
            redirect_uri: redirect_uri.to_string(),
            state,
            scopes,
            code_challenge: challenge.to_string(),
            nonce: get("nonce").map(str::to_string),
            launch,
            csrf: crypto::random_secret(),
            stage: Stage::Password,
            created_at: now(),
        };
        let key = crypto::random_secret();
        let mut all = self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let cutoff = now() - self.config.sign_in_form_seconds;
        all.retain(|_, p| p.created_at > cutoff);
        if all.len() >= MAX_PENDING {
            return Err(AuthorizeError::Page("too many sign-ins are under way; try again in a few minutes".into()));
        }
        all.insert(key.clone(), pending.clone());
        Ok((key, pending))
    }

    /// The pending request with form key `key`, if the CSRF values match and it is still fresh.
    pub fn pending(&self, key: &str, form_csrf: &str, cookie_csrf: Option<&str>) -> Option<Pending> {
        let all = self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let pending = all.get(key)?;
        let fresh = pending.created_at > now() - self.config.sign_in_form_seconds;
        let csrf_ok = crypto::same(&pending.csrf, form_csrf) && cookie_csrf.is_some_and(|c| crypto::same(c, form_csrf));
        (fresh && csrf_ok).then(|| pending.clone())
    }

    /// Moves the pending request with form key `key` on (its stage), if it is still there.
    pub fn update_pending(&self, key: &str, update: impl FnOnce(&mut Pending)) {
        let mut all = self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(pending) = all.get_mut(key) {
            update(pending);
        }
    }

    /// Forgets the pending request with form key `key` (answered, or denied).
    pub fn finish_pending(&self, key: &str) {
        self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(key);
    }

    /// Checks a username and password (argon2: call on a blocking thread). A wrong password
    /// counts towards the lock-out; a locked account is refused without its password being
    /// checked.
    pub fn sign_in(&self, username: &str, password: &str) -> Result<SignIn> {
        let answer = self.check_sign_in(username, password)?;
        let (user, succeeded) = match &answer {
            SignIn::Ok(user) | SignIn::NeedsCode(user) => (Some(user.clone()), true),
            _ => (self.store.user_by_username(username)?, false),
        };
        self.tell_sign_in(username, user.as_ref(), "password", succeeded);
        Ok(answer)
    }

    fn check_sign_in(&self, username: &str, password: &str) -> Result<SignIn> {
        let now = now();
        let Some(user) = self.store.user_by_username(username)? else {
            // Spend the same time as a real check, so response times don't reveal usernames.
            let _ = crypto::verify_password(password, dummy_hash());
            return Ok(SignIn::Refused);
        };
        if user.locked_until.is_some_and(|until| until > now) {
            // Nor do they reveal a locked account: the same time, on a hash no password matches.
            let _ = crypto::verify_password(password, dummy_hash());
            return Ok(SignIn::Refused);
        }
        if !crypto::verify_password(password, &user.password_hash) {
            self.count_failed_sign_in(&user, now)?;
            return Ok(SignIn::Refused);
        }
        if user.disabled || user.password_expires_at.is_some_and(|at| at <= now) {
            return Ok(SignIn::Refused);
        }
        if self.store.totp_secret(&user.id)?.is_some() {
            // The failed sign-ins are forgotten only once the code is right too: otherwise a
            // known password would reset the count between guesses of the code.
            return Ok(SignIn::NeedsCode(user));
        }
        if self.config.require_totp_for_staff && matches!(user.identity, crate::Identity::Staff { .. }) {
            return Ok(SignIn::NotEnrolled);
        }
        self.signed_in(&user)?;
        Ok(SignIn::Ok(user))
    }

    /// Checks the TOTP code of a user whose password was right. A wrong code, or one already
    /// used (a replay), counts as a failed sign-in; a locked account is refused unchecked.
    pub fn second_factor(&self, user_id: &str, code: &str) -> Result<Option<User>> {
        let answer = self.check_second_factor(user_id, code)?;
        let user = match &answer {
            Some(user) => Some(user.clone()),
            None => self.store.user_by_id(user_id)?,
        };
        let username = user.as_ref().map(|u| u.username.clone()).unwrap_or_default();
        self.tell_sign_in(&username, user.as_ref(), "code", answer.is_some());
        Ok(answer)
    }

    fn check_second_factor(&self, user_id: &str, code: &str) -> Result<Option<User>> {
        let now = now();
        let Some(user) = self.store.user_by_id(user_id)?.filter(|u| !u.disabled) else { return Ok(None) };
        if user.locked_until.is_some_and(|until| until > now) {
            return Ok(None);
        }
        let Some(secret) = self.totp_secret(&user.id)? else { return Ok(None) };
        let accepted = match crate::totp::matching_step(&secret, code, now)? {
            Some(step) => self.store.use_totp_step(&user.id, step)?,
            None => false,
        };
        if !accepted {
            self.count_failed_sign_in(&user, now)?;
            return Ok(None);
        }
        self.signed_in(&user)?;
        Ok(Some(user))
    }

    fn count_failed_sign_in(&self, user: &User, now: i64) -> Result<()> {
        if self.config.max_failed_sign_ins == 0 {
            return Ok(());
        }
        let locked = self.store.record_failed_sign_in(
            &user.id,
            now,
            self.config.max_failed_sign_ins,
            self.config.lockout_seconds,
        )?;
        if let Some(until) = locked {
            // The id only: a username can be a person's name.
            tracing::warn!(user_id = %user.id, locked_until = until, "account locked after repeated failed sign-ins");
        }
        Ok(())
    }

    /// A successful sign-in forgets the failed ones.
    fn signed_in(&self, user: &User) -> Result<()> {
        if user.failed_sign_ins > 0 || user.locked_until.is_some() {
            self.store.clear_failed_sign_ins(&user.id)?;
        }
        Ok(())
    }

    /// The user's consent: issues the authorization code for the scopes kept.
    pub fn approve(
        &self,
        pending: &Pending,
        user: &User,
        kept: ScopeSet,
        chosen_patient: Option<&str>,
    ) -> OAuthResult<String> {
        if kept.is_empty() {
            return Err(OAuthError::new("access_denied", "no scope was approved"));
        }
        let own_patient = user.identity.patient();
        let launch_patient = pending.launch.as_ref().and_then(|l| l.patient.as_deref());
        if let (Some(own), Some(launched)) = (own_patient, launch_patient)
            && own != launched
        {
            return Err(OAuthError::new("access_denied", "the launch is for another patient"));
        }
        let wants_patient = kept.has(&ScopeKind::LaunchPatient) || kept.has(&ScopeKind::Launch);
        // A patient or proxy always acts in their patient's context; staff get the EHR's launch
        // context, or the patient they chose for a standalone launch (whether they may see that
        // patient is the policy engine's decision, on every request).
        let patient = launch_patient.or(own_patient).or(chosen_patient.filter(|_| wants_patient)).map(str::to_string);
        if kept.has(&ScopeKind::LaunchPatient) && patient.is_none() {
            return Err(OAuthError::new("invalid_request", "a patient must be chosen"));
        }
        let encounter = pending.launch.as_ref().and_then(|l| l.encounter.clone());
        let code = crypto::random_secret();
        self.store.insert_code(&CodeRecord {
            hash: crypto::secret_hash(&code),
            grant_id: uuid::Uuid::new_v4().to_string(),
            client_id: pending.client_id.clone(),
            redirect_uri: pending.redirect_uri.clone(),
            code_challenge: pending.code_challenge.clone(),
            user_id: user.id.clone(),
            scope: kept.to_string(),
            patient,
            encounter,
            nonce: pending.nonce.clone(),
            expires_at: now() + self.config.code_seconds,
            used: false,
        })?;
        Ok(code)
    }

    /// Authenticates the client at the token endpoint (and introspection, revocation).
    /// Public clients only name themselves; confidential ones prove it with a secret or a
    /// signed JWT. Call [`Authority::prefetch_jwks`] first for clients with a `jwks_uri`.
    pub fn authenticate_client(&self, credentials: &ClientCredentials) -> OAuthResult<Client> {
        let invalid = || OAuthError::new("invalid_client", "client authentication failed");
        if let Some(assertion) = &credentials.assertion {
            if credentials.assertion_type.as_deref() != Some(JWT_BEARER) {
                return Err(OAuthError::new("invalid_client", "unsupported client_assertion_type"));
            }
            return self.verify_assertion(assertion, credentials.client_id.as_deref());
        }
        let client_id = credentials.client_id.as_deref().ok_or_else(invalid)?;
        let client = self.store.client(client_id)?.filter(|c| !c.disabled).ok_or_else(invalid)?;
        // A public client has no secret to present, but HTTP Basic with an empty password is
        // how many OAuth libraries name one (requests-oauthlib does by default): it is taken
        // as naming the client, as a `client_id` in the form is.
        let secret =
            credentials.client_secret.as_ref().filter(|s| !(client.kind == ClientKind::Public && s.is_empty()));
        match (client.kind, &client.secret_hash, secret) {
            (ClientKind::Public, _, None) => Ok(client),
            (ClientKind::Confidential, Some(hash), Some(secret))
                if crypto::same(hash, &crypto::secret_hash(secret)) =>
            {
                Ok(client)
            }
            _ => Err(invalid()),
        }
    }

    /// The client of a refresh request that names none: the public client the refresh token was
    /// issued to. SMART App Launch lets public apps refresh without authenticating ("not
    /// possible, and thus not required"), with only `grant_type`, `refresh_token` and an
    /// optional `scope` (RFC 6749 §6 has no `client_id` either); a confidential client's token
    /// still needs that client's credentials.
    pub fn refresh_token_client(&self, refresh_token: &str) -> OAuthResult<Client> {
        let record = self.live_refresh_token(refresh_token)?;
        let invalid = || OAuthError::new("invalid_client", "client authentication failed");
        let client_id = record.client_id.ok_or_else(invalid)?;
        self.store.client(&client_id)?.filter(|c| !c.disabled && c.kind == ClientKind::Public).ok_or_else(invalid)
    }

    /// The record of `refresh_token` if it is active. A refresh token that was retired (by a
    /// refresh: rotation) and is presented again was copied, by an attacker or from an app
    /// that lost track of it, and nobody can tell which party holds the newer one: the whole
    /// grant is revoked, every access and refresh token of that authorization (OAuth 2.0
    /// Security BCP, refresh token rotation with reuse detection).
    fn live_refresh_token(&self, refresh_token: &str) -> OAuthResult<TokenRecord> {
        match self.active_token(refresh_token, TokenKind::Refresh) {
            Ok(record) => Ok(record),
            Err(crate::BearerError::Store(e)) => Err(e.into()),
            Err(crate::BearerError::Revoked) => {
                if let Some(record) = self.store.token(&crypto::secret_hash(refresh_token))? {
                    self.store.revoke_grant(&record.grant_id)?;
                    tracing::warn!("a retired refresh token was presented again: its whole grant is revoked");
                }
                Err(OAuthError::new("invalid_grant", "the refresh token is not active"))
            }
            Err(_) => Err(OAuthError::new("invalid_grant", "the refresh token is not active")),
        }
    }

    /// Where the JWK Set of the client named by an assertion is to be fetched from, as
    /// `(client id, jwks_uri)`: when the client publishes its keys at a `jwks_uri` and no copy
    /// fetched in the last minutes is kept. A blocking store call; the HTTP edge fetches the
    /// document and hands it to [`Authority::remember_jwks`] before the assertion is checked.
    pub fn jwks_to_fetch(&self, assertion: &str, client_id: Option<&str>) -> Result<Option<(String, String)>> {
        let Some(client_id) = client_id.map(str::to_string).or_else(|| assertion_issuer(assertion)) else {
            return Ok(None);
        };
        let Some(uri) = self.store.client(&client_id)?.and_then(|client| client.jwks_uri) else { return Ok(None) };
        let cached =
            self.fetched_jwks.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&client_id).cloned();
        if cached.is_some_and(|(_, at)| at > now() - JWKS_CACHE_SECONDS) {
            return Ok(None);
        }
        Ok(Some((client_id, uri)))
    }

    /// Keeps the JWK Set fetched from a client's `jwks_uri` (see [`Authority::jwks_to_fetch`])
    /// for checking its assertions during the next minutes.
    pub fn remember_jwks(&self, client_id: String, jwks: serde_json::Value) {
        self.fetched_jwks.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(client_id, (jwks, now()));
    }

    /// SMART backend services / RFC 7523: the assertion is signed (RS384 or ES384) by a key in
    /// the client's JWK Set, `iss` = `sub` = client id, `aud` = our token endpoint, expires
    /// within five minutes, and its `jti` was never seen before.
    fn verify_assertion(&self, assertion: &str, claimed_id: Option<&str>) -> OAuthResult<Client> {
        use jsonwebtoken::{Algorithm, DecodingKey, Validation, jwk::JwkSet};
        let invalid = |why: &str| OAuthError::new("invalid_client", format!("client assertion rejected: {why}"));
        let header = jsonwebtoken::decode_header(assertion).map_err(|_| invalid("malformed"))?;
        if !matches!(header.alg, Algorithm::RS384 | Algorithm::ES384) {
            return Err(invalid("alg must be RS384 or ES384"));
        }
        let client_id = assertion_issuer(assertion).ok_or_else(|| invalid("no issuer"))?;
        if claimed_id.is_some_and(|c| c != client_id) {
            return Err(invalid("client_id differs from the issuer"));
        }
        let client = self
            .store
            .client(&client_id)?
            .filter(|c| !c.disabled && c.kind == ClientKind::Confidential)
            .ok_or_else(|| invalid("unknown client"))?;
        let jwks = match (&client.jwks, &client.jwks_uri) {
            (Some(jwks), _) => jwks.clone(),
            (None, Some(_)) => self
                .fetched_jwks
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(&client.id)
                .map(|(j, _)| j.clone())
                .ok_or_else(|| invalid("the client's keys could not be fetched"))?,
            (None, None) => return Err(invalid("the client has no registered keys")),
        };
        let jwks: JwkSet = serde_json::from_value(jwks).map_err(|_| invalid("the client's key set is malformed"))?;
        let mut validation = Validation::new(header.alg);
        validation.set_audience(&[self.config.endpoint("/auth/token")]);
        validation.set_issuer(&[&client_id]);
        validation.sub = Some(client_id.clone());
        validation.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
        validation.leeway = ASSERTION_LEEWAY as u64;
        let candidates = jwks.keys.iter().filter(|k| {
            header.kid.as_deref().is_none_or(|kid| k.common.key_id.as_deref() == Some(kid))
                && k.common.key_algorithm.is_none_or(|a| a.to_string() == format!("{:?}", header.alg))
        });
        let mut claims = None;
        for jwk in candidates {
            let Ok(key) = DecodingKey::from_jwk(jwk) else { continue };
            if let Ok(data) = jsonwebtoken::decode::<serde_json::Value>(assertion, &key, &validation) {
                claims = Some(data.claims);
                break;
            }
        }
        let claims = claims.ok_or_else(|| invalid("signature, audience, issuer or expiry is wrong"))?;
        let exp = claims["exp"].as_i64().ok_or_else(|| invalid("exp is not a number"))?;
        if exp > now() + ASSERTION_MAX_SECONDS + ASSERTION_LEEWAY {
            return Err(invalid("it must expire within five minutes"));
        }
        let jti = claims["jti"].as_str().filter(|j| !j.is_empty() && j.len() <= 256).ok_or_else(|| invalid("jti"))?;
        if !self.store.record_assertion_id(&client.id, jti, exp + ASSERTION_LEEWAY)? {
            return Err(invalid("jti was already used"));
        }
        Ok(client)
    }

    /// `grant_type=authorization_code`.
    pub fn exchange_code(
        &self,
        client: &Client,
        code: &str,
        redirect_uri: &str,
        verifier: &str,
    ) -> OAuthResult<TokenResponse> {
        let invalid = |why: &str| OAuthError::new("invalid_grant", why.to_string());
        let record = self.store.redeem_code(&crypto::secret_hash(code))?.ok_or_else(|| invalid("unknown code"))?;
        if record.used {
            // RFC 6749 §4.1.2: a replayed code revokes what it already bought.
            self.store.revoke_grant(&record.grant_id)?;
            return Err(invalid("the code was already used"));
        }
        if record.expires_at <= now() {
            return Err(invalid("the code has expired"));
        }
        if record.client_id != client.id {
            return Err(invalid("the code was issued to another client"));
        }
        if record.redirect_uri != redirect_uri {
            return Err(invalid("redirect_uri differs from the authorization request"));
        }
        if !crypto::pkce_matches(verifier, &record.code_challenge) {
            return Err(invalid("the PKCE code_verifier does not match"));
        }
        let user = self.active_user(&record.user_id)?;
        Ok(self.issue(Issue {
            grant_id: record.grant_id,
            client_id: Some(&client.id),
            user: Some(&user),
            scopes: ScopeSet::parse(&record.scope),
            patient: record.patient,
            encounter: record.encounter,
            nonce: record.nonce,
        })?)
    }

    /// `grant_type=refresh_token`: a new access token and a new refresh token (the old one is
    /// retired: rotation), with the same or fewer scopes. Presenting a retired refresh token
    /// again revokes the whole grant ([`Authority::live_refresh_token`]).
    pub fn refresh(&self, client: &Client, refresh_token: &str, scope: Option<&str>) -> OAuthResult<TokenResponse> {
        let invalid = |why: &str| OAuthError::new("invalid_grant", why.to_string());
        let record = self.live_refresh_token(refresh_token)?;
        if record.client_id.as_deref() != Some(client.id.as_str()) {
            return Err(invalid("the refresh token was issued to another client"));
        }
        let user_id = record.user_id.as_deref().ok_or_else(|| invalid("no user"))?;
        let user = self.active_user(user_id)?;
        let granted = ScopeSet::parse(&record.scope);
        let scopes = match scope {
            Some(asked) => {
                let asked = ScopeSet::parse(asked);
                if asked.iter().any(|s| !granted.contains(s.as_str())) {
                    return Err(OAuthError::new("invalid_scope", "a refresh cannot widen the scopes"));
                }
                asked
            }
            None => granted,
        };
        if !self.store.retire_token(&record.hash)? {
            // A concurrent request presented it first: a reuse, as above.
            self.store.revoke_grant(&record.grant_id)?;
            tracing::warn!("a refresh token was presented twice at once: its whole grant is revoked");
            return Err(invalid("the refresh token is not active"));
        }
        Ok(self.issue(Issue {
            grant_id: record.grant_id,
            client_id: Some(&client.id),
            user: Some(&user),
            scopes,
            patient: record.patient,
            encounter: record.encounter,
            nonce: None,
        })?)
    }

    /// `grant_type=client_credentials` (SMART backend services): `system/` scopes only, for
    /// confidential clients.
    pub fn client_credentials(&self, client: &Client, scope: &str) -> OAuthResult<TokenResponse> {
        if client.kind != ClientKind::Confidential {
            return Err(OAuthError::new("unauthorized_client", "public clients cannot use client_credentials"));
        }
        let scopes = ScopeSet::parse(&client.allowed_scopes)
            .grantable(&ScopeSet::parse(scope))
            .filtered(|s| matches!(s.kind(), ScopeKind::Resource(r) if r.context == Context::System));
        if scopes.is_empty() {
            return Err(OAuthError::new("invalid_scope", "no requested system scope may be granted to this client"));
        }
        Ok(self.issue(Issue {
            grant_id: uuid::Uuid::new_v4().to_string(),
            client_id: Some(&client.id),
            user: None,
            scopes,
            patient: None,
            encounter: None,
            nonce: None,
        })?)
    }

    fn active_user(&self, user_id: &str) -> OAuthResult<User> {
        self.store
            .user_by_id(user_id)?
            .filter(|u| !u.disabled)
            .ok_or_else(|| OAuthError::new("invalid_grant", "the user is disabled"))
    }
}

/// The `iss` of a JWT, read without verification (to find the key that verifies it).
fn assertion_issuer(assertion: &str) -> Option<String> {
    let claims = jsonwebtoken::dangerous::insecure_decode::<serde_json::Value>(assertion).ok()?.claims;
    claims["iss"].as_str().map(str::to_string)
}

/// An argon2id hash of a random secret, verified against when the username is unknown.
fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| crypto::hash_password(&crypto::random_secret()).unwrap_or_default())
}

impl From<Error> for AuthorizeError {
    fn from(e: Error) -> AuthorizeError {
        tracing::error!(error = %e, "authorization server failure");
        AuthorizeError::Page("the authorization server failed".into())
    }
}
