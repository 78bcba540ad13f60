//! The authorization server's core, without HTTP: users and clients, launch contexts, token
//! issue, validation (`bearer token → Principal`), introspection and revocation.

use crate::crypto::{self, ServerKey};
use crate::model::{Client, ClientKind, Identity, LaunchContext, Role, TokenKind, TokenRecord, User};
use crate::scope::{ScopeKind, ScopeSet};
use crate::seal::{self, SecretsKey};
use crate::store::AuthStore;
use crate::{Error, Result};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Now, in Unix seconds.
pub(crate) fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Settings of the authorization server.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// The FHIR base URL (`http://127.0.0.1:8080/fhir`): the `aud` apps must ask for, the
    /// `iss` of id_tokens, and where `/.well-known/smart-configuration` lives.
    pub fhir_base_url: String,
    /// Lifetime of access tokens, seconds.
    pub access_token_seconds: i64,
    /// Lifetime of refresh tokens, seconds.
    pub refresh_token_seconds: i64,
    /// Lifetime of authorization codes, seconds.
    pub code_seconds: i64,
    /// Lifetime of launch contexts, seconds.
    pub launch_seconds: i64,
    /// Lifetime of one-time passwords, seconds.
    pub one_time_password_seconds: i64,
    /// Consecutive failed sign-ins (wrong password or wrong code) that lock an account
    /// (0: never locked).
    pub max_failed_sign_ins: u32,
    /// How long a locked account stays locked, seconds.
    pub lockout_seconds: i64,
    /// Sign-in form posts (password and code) allowed per client IP address and minute,
    /// counted in memory by each server (0: no limit).
    pub sign_in_attempts_per_minute: u32,
    /// How long the sign-in forms of one authorization request stay valid, seconds.
    pub sign_in_form_seconds: i64,
    /// A user's session (an authorization without `offline_access`) ends when none of its
    /// tokens has been used for this long, seconds: its access and refresh tokens stop working.
    pub session_idle_seconds: i64,
    /// The same for `offline_access` authorizations, which are meant to outlive the user's
    /// presence; `None`: only their lifetime (`refresh_token_seconds`) bounds them.
    pub offline_idle_seconds: Option<i64>,
    /// Every staff user must enter a TOTP code after the password (one not enrolled cannot
    /// sign in until an administrator enrols them).
    pub require_totp_for_staff: bool,
    /// The issuer named in TOTP enrolment URIs (authenticator apps show it).
    pub totp_issuer: String,
}

impl AuthConfig {
    /// Defaults for a server whose FHIR base is `fhir_base_url`.
    pub fn new(fhir_base_url: impl Into<String>) -> AuthConfig {
        AuthConfig {
            fhir_base_url: fhir_base_url.into().trim_end_matches('/').to_string(),
            access_token_seconds: 3600,
            refresh_token_seconds: 90 * 24 * 3600,
            code_seconds: 60,
            launch_seconds: 3600,
            one_time_password_seconds: 24 * 3600,
            max_failed_sign_ins: 5,
            lockout_seconds: 15 * 60,
            sign_in_attempts_per_minute: 10,
            sign_in_form_seconds: 600,
            session_idle_seconds: 30 * 60,
            offline_idle_seconds: None,
            require_totp_for_staff: false,
            totp_issuer: "Continuum".into(),
        }
    }

    /// `scheme://host[:port]` of the FHIR base.
    pub fn origin(&self) -> &str {
        let url = &self.fhir_base_url;
        let after_scheme = url.find("://").map_or(0, |i| i + 3);
        match url[after_scheme..].find('/') {
            Some(i) => &url[..after_scheme + i],
            None => url,
        }
    }

    /// The path of the FHIR base (`/fhir`), empty if the base is the origin.
    pub fn fhir_path(&self) -> &str {
        &self.fhir_base_url[self.origin().len()..]
    }

    /// The absolute URL of an endpoint of this server (`/auth/token`).
    pub fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.origin())
    }
}

/// The administrator created on first start, with the one-time password to print once.
#[derive(Debug)]
pub struct OneTimePassword {
    /// The administrator's username.
    pub username: String,
    /// The password; it must be changed at first sign-in and expires at `expires_at`.
    pub password: String,
    /// Expiry (Unix seconds).
    pub expires_at: i64,
}

/// A staff user's TOTP enrolment, to hand over once: the secret is not shown again.
#[derive(Debug)]
pub struct TotpEnrolment {
    /// The `otpauth://totp/…` URI (what a QR code would carry).
    pub uri: String,
    /// The secret in base32, for typing into an authenticator app.
    pub secret_base32: String,
}

/// A user to create.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// Sign-in name.
    pub username: String,
    /// Who they are.
    pub identity: Identity,
    /// Their password; `None` to generate a one-time password (returned once).
    pub password: Option<String>,
}

/// A client to register.
#[derive(Debug, Clone)]
pub struct NewClient {
    /// The `client_id`; `None` to generate one.
    pub id: Option<String>,
    /// Shown on the consent page.
    pub name: String,
    /// Public or confidential.
    pub kind: ClientKind,
    /// Redirect URIs (needed for the authorization code flow).
    pub redirect_uris: Vec<String>,
    /// Scopes it may be granted, space-separated.
    pub allowed_scopes: String,
    /// A JWK Set for `private_key_jwt`.
    pub jwks: Option<serde_json::Value>,
    /// A JWK Set URL for `private_key_jwt`.
    pub jwks_uri: Option<String>,
    /// Generate a client secret (confidential clients without keys).
    pub with_secret: bool,
}

/// Who acts with a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// A signed-in person (staff, patient, proxy).
    User {
        /// The user's id.
        id: String,
        /// The user's sign-in name.
        username: String,
        /// Who they are in the record.
        identity: Identity,
    },
    /// A backend service acting on its own behalf (client_credentials).
    Service {
        /// Its `client_id`.
        client_id: String,
    },
}

impl Subject {
    /// The name it acts under (in the audit trail, on pages): a user's sign-in name, a
    /// service's `client_id`.
    pub fn name(&self) -> &str {
        match self {
            Subject::User { username, .. } => username,
            Subject::Service { client_id } => client_id,
        }
    }
}

/// What a valid bearer token stands for: the input of the policy engine.
#[derive(Debug, Clone)]
pub struct Principal {
    /// Who acts.
    pub subject: Subject,
    /// The app acting (`None` for tokens minted on the command line).
    pub client_id: Option<String>,
    /// Scopes granted.
    pub scopes: ScopeSet,
    /// Launch context: patient id.
    pub patient: Option<String>,
    /// Launch context: encounter id.
    pub encounter: Option<String>,
    /// Expiry of the token (Unix seconds).
    pub expires_at: i64,
}

impl Principal {
    /// Staff roles of the user (empty for patients, proxies and services).
    pub fn roles(&self) -> &[Role] {
        match &self.subject {
            Subject::User { identity, .. } => identity.roles(),
            Subject::Service { .. } => &[],
        }
    }

    /// Organizations of the user (empty for patients, proxies and services).
    pub fn organizations(&self) -> &[String] {
        match &self.subject {
            Subject::User { identity, .. } => identity.organizations(),
            Subject::Service { .. } => &[],
        }
    }

    /// The user's FHIR resource, relative (`Practitioner/123`).
    pub fn fhir_user(&self) -> Option<String> {
        match &self.subject {
            Subject::User { identity, .. } => identity.fhir_user(),
            Subject::Service { .. } => None,
        }
    }
}

/// Why a bearer token was not accepted. Every variant is answered the same way (401,
/// `invalid_token`); the variant is for the audit trail.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BearerError {
    /// Unknown, malformed, or not an access token.
    #[error("the token is not known")]
    Unknown,
    /// Past its expiry.
    #[error("the token has expired")]
    Expired,
    /// Revoked.
    #[error("the token was revoked")]
    Revoked,
    /// Its user is disabled or gone, or its client disabled.
    #[error("the token's user or client is disabled")]
    Disabled,
    /// Its session was idle for longer than the limit (automatic log-off).
    #[error("the session was idle too long")]
    Idle,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] Error),
}

/// The answer of the token endpoint (RFC 6749 §5.1 with SMART's launch context).
#[derive(Debug, Clone, Serialize)]
pub struct TokenResponse {
    /// The bearer token.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    /// Scopes granted.
    pub scope: String,
    /// With `offline_access` or `online_access`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// With `openid`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    /// Launch context: patient id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patient: Option<String>,
    /// Launch context: encounter id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encounter: Option<String>,
    /// SMART: whether the app should show a patient banner (true when launched in a patient context).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub need_patient_banner: Option<bool>,
}

/// What a grant is issued for (the parts shared by every grant type).
pub(crate) struct Issue<'a> {
    pub grant_id: String,
    pub client_id: Option<&'a str>,
    pub user: Option<&'a User>,
    pub scopes: ScopeSet,
    pub patient: Option<String>,
    pub encounter: Option<String>,
    pub nonce: Option<String>,
}

/// The authorization server.
pub struct Authority {
    pub(crate) store: Arc<dyn AuthStore>,
    pub(crate) key: ServerKey,
    /// Seals the secrets kept recoverably (TOTP secrets).
    pub(crate) secrets: SecretsKey,
    pub(crate) config: AuthConfig,
    /// Authorization requests waiting for sign-in and consent, by form key. In memory: they
    /// live minutes, and a restart merely asks the user to start again.
    pub(crate) pending: Mutex<HashMap<String, crate::grant::Pending>>,
    /// Fetched `jwks_uri` documents: client id → (JWK Set, fetched at).
    pub(crate) fetched_jwks: Mutex<HashMap<String, (serde_json::Value, i64)>>,
    /// Grants issued since start; every [`PURGE_EVERY`]th clears out expired records.
    issued: AtomicU64,
    /// Told of every sign-in attempt (the audit trail), once set.
    pub(crate) sign_in_audit: std::sync::OnceLock<Arc<dyn SignInAudit>>,
    /// Web sign-ins waiting for their TOTP code: ticket hash → (user id, until). In memory,
    /// like pending authorizations.
    pub(crate) web_tickets: Mutex<HashMap<String, (String, i64)>>,
}

/// One sign-in attempt, for the audit trail.
#[derive(Debug)]
pub struct SignInAttempt<'a> {
    /// The name typed.
    pub username: &'a str,
    /// The user it names, when there is one.
    pub user: Option<&'a User>,
    /// `password` or `code` (the TOTP step).
    pub step: &'static str,
    /// Whether this step succeeded.
    pub succeeded: bool,
}

/// What is told of sign-in attempts (the server records them in its audit trail). Called on
/// the blocking thread that checked the attempt.
pub trait SignInAudit: Send + Sync {
    /// One attempt, successful or not.
    fn attempted(&self, attempt: &SignInAttempt<'_>);
}

/// How many grants are issued between two purges of expired codes, tokens and assertion ids.
const PURGE_EVERY: u64 = 1000;

impl Authority {
    /// An authority over `store`, signing with `key`, sealing secrets with `secrets`.
    pub fn new(store: Arc<dyn AuthStore>, key: ServerKey, secrets: SecretsKey, config: AuthConfig) -> Authority {
        Authority {
            store,
            key,
            secrets,
            config,
            pending: Mutex::new(HashMap::new()),
            fetched_jwks: Mutex::new(HashMap::new()),
            issued: AtomicU64::new(0),
            sign_in_audit: std::sync::OnceLock::new(),
            web_tickets: Mutex::new(HashMap::new()),
        }
    }

    /// Tells `audit` of every sign-in attempt from now on (once; later calls are ignored).
    pub fn set_sign_in_audit(&self, audit: Arc<dyn SignInAudit>) {
        let _ = self.sign_in_audit.set(audit);
    }

    pub(crate) fn tell_sign_in(&self, username: &str, user: Option<&User>, step: &'static str, succeeded: bool) {
        if let Some(audit) = self.sign_in_audit.get() {
            audit.attempted(&SignInAttempt { username, user, step, succeeded });
        }
    }

    /// Starts the authority over an opened store (see `store_sqlite::auth` and
    /// `store_postgres::auth` for opening one with its key files): seals the TOTP secrets an
    /// earlier version kept in clear, purges expired records, and on the first start of an
    /// empty store creates the administrator `admin`, whose one-time password it returns for
    /// the caller to print once.
    pub fn start(
        store: Arc<dyn AuthStore>,
        key: ServerKey,
        secrets: SecretsKey,
        config: AuthConfig,
    ) -> Result<(Authority, Option<OneTimePassword>)> {
        let authority = Authority::new(store, key, secrets, config);
        authority.seal_stored_secrets()?;
        authority.store.purge_expired(now())?;
        let first = authority.bootstrap_administrator()?;
        Ok((authority, first))
    }

    /// Seals the TOTP secrets an earlier version stored in clear, and checks that the sealed
    /// ones open with this server's key (a server given another key file than the one they
    /// were sealed with must not start and then refuse every code). Returns how many it sealed.
    fn seal_stored_secrets(&self) -> Result<usize> {
        let sealed = self.store.reseal_totp_secrets(&|user_id, stored| {
            let context = seal::totp_context(user_id);
            if seal::is_sealed(stored) {
                self.secrets.open(&context, stored)?;
                Ok(None)
            } else {
                self.secrets.seal(&context, stored).map(Some)
            }
        })?;
        if sealed > 0 {
            tracing::info!(sealed, "clear-text TOTP secrets of an earlier version were sealed");
        }
        Ok(sealed)
    }

    /// The user's TOTP secret, opened, if enrolled.
    pub(crate) fn totp_secret(&self, user_id: &str) -> Result<Option<Vec<u8>>> {
        let Some(stored) = self.store.totp_secret(user_id)? else { return Ok(None) };
        let context = seal::totp_context(user_id);
        if seal::is_sealed(&stored) {
            self.secrets.open(&context, &stored).map(Some)
        } else {
            // Written in clear by a server of an earlier version sharing the database since
            // this one started: still the user's secret; sealed at the next start.
            Ok(Some(stored))
        }
    }

    /// The settings.
    pub fn config(&self) -> &AuthConfig {
        &self.config
    }

    /// The store.
    pub fn store(&self) -> &dyn AuthStore {
        &*self.store
    }

    /// Creates `admin` with a one-time password if there are no users yet.
    pub fn bootstrap_administrator(&self) -> Result<Option<OneTimePassword>> {
        if self.store.count_users()? > 0 {
            return Ok(None);
        }
        let identity = Identity::Staff {
            roles: vec![Role::Administrator],
            organizations: Vec::new(),
            practitioner: None,
            practitioner_roles: Vec::new(),
        };
        match self.add_user(NewUser { username: "admin".into(), identity, password: None }) {
            Ok((_, password)) => Ok(password),
            // Another process created it first.
            Err(Error::Conflict(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates a user. Without a password, a one-time password is generated and returned: it
    /// must be changed at first sign-in and expires.
    pub fn add_user(&self, new: NewUser) -> Result<(User, Option<OneTimePassword>)> {
        let username = new.username.trim();
        if username.is_empty() || username.len() > 128 || username.chars().any(char::is_whitespace) {
            return Err(Error::Invalid("a username is 1 to 128 characters without spaces".into()));
        }
        if let Identity::Staff { roles, .. } = &new.identity
            && roles.is_empty()
        {
            return Err(Error::Invalid("a staff user needs at least one role".into()));
        }
        let now = now();
        let (password, one_time) = match new.password {
            Some(p) => {
                check_password_strength(&p)?;
                (p, None)
            }
            None => {
                let p = crypto::random_password();
                let expires_at = now + self.config.one_time_password_seconds;
                (p.clone(), Some(OneTimePassword { username: username.to_string(), password: p, expires_at }))
            }
        };
        let user = User {
            id: uuid::Uuid::new_v4().to_string(),
            username: username.to_string(),
            identity: new.identity,
            password_hash: crypto::hash_password(&password)?,
            must_change_password: one_time.is_some(),
            password_expires_at: one_time.as_ref().map(|o| o.expires_at),
            disabled: false,
            created_at: now,
            failed_sign_ins: 0,
            locked_until: None,
        };
        self.store.insert_user(&user)?;
        Ok((user, one_time))
    }

    /// Disables a user: they can no longer sign in and their tokens stop working.
    pub fn disable_user(&self, username: &str) -> Result<()> {
        if self.store.set_user_disabled(username, true)? { Ok(()) } else { Err(Error::NotFound("no such user".into())) }
    }

    /// Lifts a lock-out and forgets the user's failed sign-ins.
    pub fn unlock_user(&self, username: &str) -> Result<()> {
        let user = self.store.user_by_username(username)?.ok_or_else(|| Error::NotFound("no such user".into()))?;
        self.store.clear_failed_sign_ins(&user.id)
    }

    /// Enrols a staff user for TOTP with a new secret (replacing an earlier one). From now on
    /// they enter a code after their password.
    pub fn enrol_totp(&self, username: &str) -> Result<TotpEnrolment> {
        let user = self.store.user_by_username(username)?.ok_or_else(|| Error::NotFound("no such user".into()))?;
        if !matches!(user.identity, Identity::Staff { .. }) {
            return Err(Error::Invalid("TOTP is enrolled for staff users only".into()));
        }
        let secret = crate::totp::new_secret();
        let sealed = self.secrets.seal(&seal::totp_context(&user.id), &secret)?;
        self.store.set_totp_secret(&user.id, Some(&sealed), now())?;
        Ok(TotpEnrolment {
            uri: crate::totp::uri(&self.config.totp_issuer, &user.username, &secret),
            secret_base32: crate::totp::base32(&secret),
        })
    }

    /// Removes a user's TOTP enrolment.
    pub fn remove_totp(&self, username: &str) -> Result<()> {
        let user = self.store.user_by_username(username)?.ok_or_else(|| Error::NotFound("no such user".into()))?;
        self.store.set_totp_secret(&user.id, None, now())
    }

    /// Whether the user has TOTP enrolled.
    pub fn has_totp(&self, user_id: &str) -> Result<bool> {
        Ok(self.store.totp_secret(user_id)?.is_some())
    }

    /// Sets a new password chosen by the user (clears the one-time flag and expiry).
    pub fn change_password(&self, user_id: &str, password: &str) -> Result<()> {
        check_password_strength(password)?;
        self.store.set_password(user_id, &crypto::hash_password(password)?, false, None)
    }

    /// Registers a client; returns it with its secret (shown once) if one was asked for.
    pub fn add_client(&self, new: NewClient) -> Result<(Client, Option<String>)> {
        let id = new.id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        if id.is_empty() || id.len() > 128 || id.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(Error::Invalid("a client id is 1 to 128 characters without spaces".into()));
        }
        if new.kind == ClientKind::Public && (new.with_secret || new.jwks.is_some() || new.jwks_uri.is_some()) {
            return Err(Error::Invalid("a public client has neither secret nor keys".into()));
        }
        if let Some(jwks) = &new.jwks
            && !jwks.get("keys").is_some_and(serde_json::Value::is_array)
        {
            return Err(Error::Invalid("jwks must be a JWK Set ({\"keys\": [...]})".into()));
        }
        for uri in &new.redirect_uris {
            if !(uri.starts_with("https://") || uri.starts_with("http://")) || uri.contains('#') {
                return Err(Error::Invalid("redirect URIs are absolute http(s) URLs without fragment".into()));
            }
        }
        let secret = new.with_secret.then(crypto::random_secret);
        let client = Client {
            id,
            name: new.name,
            kind: new.kind,
            secret_hash: secret.as_deref().map(crypto::secret_hash),
            redirect_uris: new.redirect_uris,
            allowed_scopes: ScopeSet::parse(&new.allowed_scopes).to_string(),
            jwks: new.jwks,
            jwks_uri: new.jwks_uri,
            disabled: false,
            created_at: now(),
        };
        self.store.insert_client(&client)?;
        Ok((client, secret))
    }

    /// Creates a launch context for an EHR launch; the returned id is the `launch` parameter
    /// the EHR hands to the app.
    /// Only its hash is stored, as for tokens: the value opens the launch, so a copy of the
    /// store must not.
    pub fn create_launch(&self, patient: Option<&str>, encounter: Option<&str>) -> Result<String> {
        let value = crypto::random_secret();
        let launch = LaunchContext {
            id: crypto::secret_hash(&value),
            patient: patient.map(str::to_string),
            encounter: encounter.map(str::to_string),
            expires_at: now() + self.config.launch_seconds,
        };
        self.store.insert_launch(&launch)?;
        Ok(value)
    }

    /// Mints an access token for `username` with `scope` (for scripts and tests on the same
    /// machine: `continuum token`). No client, no refresh token.
    pub fn mint_token(
        &self,
        username: &str,
        scope: &str,
        patient: Option<&str>,
        seconds: i64,
    ) -> Result<TokenResponse> {
        let user = self.store.user_by_username(username)?.ok_or_else(|| Error::NotFound("no such user".into()))?;
        if user.disabled {
            return Err(Error::Invalid("the user is disabled".into()));
        }
        let scopes = ScopeSet::parse(scope).filtered(|s| *s.kind() != ScopeKind::Other);
        if scopes.is_empty() {
            return Err(Error::Invalid("no known scope was given".into()));
        }
        let patient = patient.map(str::to_string).or_else(|| user.identity.patient().map(str::to_string));
        let now = now();
        let token = crypto::random_secret();
        self.store.insert_token(&TokenRecord {
            hash: crypto::secret_hash(&token),
            kind: TokenKind::Access,
            grant_id: uuid::Uuid::new_v4().to_string(),
            client_id: None,
            user_id: Some(user.id.clone()),
            scope: scopes.to_string(),
            patient: patient.clone(),
            encounter: None,
            issued_at: now,
            expires_at: now + seconds,
            revoked: false,
            last_used_at: None,
        })?;
        Ok(TokenResponse {
            access_token: token,
            token_type: "Bearer",
            expires_in: seconds,
            scope: scopes.to_string(),
            refresh_token: None,
            id_token: None,
            need_patient_banner: patient.as_ref().map(|_| true),
            patient,
            encounter: None,
        })
    }

    /// Issues an access token (and a refresh token and id_token when the scopes ask for them).
    pub(crate) fn issue(&self, issue: Issue<'_>) -> Result<TokenResponse> {
        let now = now();
        if self.issued.fetch_add(1, Ordering::Relaxed) % PURGE_EVERY == PURGE_EVERY - 1 {
            self.store.purge_expired(now)?;
        }
        let access = crypto::random_secret();
        let scope = issue.scopes.to_string();
        let record = |hash: String, kind: TokenKind, expires_at: i64| TokenRecord {
            hash,
            kind,
            grant_id: issue.grant_id.clone(),
            client_id: issue.client_id.map(str::to_string),
            user_id: issue.user.map(|u| u.id.clone()),
            scope: scope.clone(),
            patient: issue.patient.clone(),
            encounter: issue.encounter.clone(),
            issued_at: now,
            expires_at,
            revoked: false,
            last_used_at: None,
        };
        self.store.insert_token(&record(
            crypto::secret_hash(&access),
            TokenKind::Access,
            now + self.config.access_token_seconds,
        ))?;
        let wants_refresh = issue.user.is_some()
            && (issue.scopes.has(&ScopeKind::OfflineAccess) || issue.scopes.has(&ScopeKind::OnlineAccess));
        let refresh_token = if wants_refresh {
            let refresh = crypto::random_secret();
            self.store.insert_token(&record(
                crypto::secret_hash(&refresh),
                TokenKind::Refresh,
                now + self.config.refresh_token_seconds,
            ))?;
            Some(refresh)
        } else {
            None
        };
        let id_token = match (issue.user, issue.client_id) {
            (Some(user), Some(client_id)) if issue.scopes.has(&ScopeKind::OpenId) => {
                Some(self.id_token(user, client_id, &issue.scopes, issue.nonce.as_deref(), now)?)
            }
            _ => None,
        };
        Ok(TokenResponse {
            access_token: access,
            token_type: "Bearer",
            expires_in: self.config.access_token_seconds,
            scope,
            refresh_token,
            id_token,
            need_patient_banner: issue.patient.as_ref().map(|_| true),
            patient: issue.patient,
            encounter: issue.encounter,
        })
    }

    fn id_token(
        &self,
        user: &User,
        client_id: &str,
        scopes: &ScopeSet,
        nonce: Option<&str>,
        now: i64,
    ) -> Result<String> {
        let mut claims = serde_json::json!({
            "iss": self.config.fhir_base_url,
            "sub": user.id,
            "aud": client_id,
            "iat": now,
            "exp": now + self.config.access_token_seconds,
        });
        if scopes.has(&ScopeKind::FhirUser)
            && let Some(fhir_user) = user.identity.fhir_user()
        {
            claims["fhirUser"] = format!("{}/{fhir_user}", self.config.fhir_base_url).into();
        }
        if let Some(nonce) = nonce {
            claims["nonce"] = nonce.into();
        }
        self.key.sign(&claims)
    }

    /// The server's public keys (JWK Set), to verify id_tokens.
    pub fn jwks(&self) -> serde_json::Value {
        self.key.jwks()
    }

    /// Checks a bearer token and says who it stands for. This is what the policy engine calls
    /// on every request.
    pub fn validate_bearer(&self, token: &str) -> std::result::Result<Principal, BearerError> {
        let record = self.active_token(token, TokenKind::Access)?;
        if let Some(idle) = self.idle_limit(&record) {
            // The use keeps the session alive; noted at most every quarter of the limit (and
            // at most a minute apart), so that requests rarely write.
            let now = now();
            if now - record.last_used_at.unwrap_or(record.issued_at) >= (idle / 4).clamp(1, 60) {
                self.store.touch_token(&record.hash, now)?;
            }
        }
        let actor = match &record.user_id {
            Some(user_id) => {
                let user = self.store.user_by_id(user_id)?.ok_or(BearerError::Disabled)?;
                if user.disabled {
                    return Err(BearerError::Disabled);
                }
                Subject::User { id: user.id, username: user.username, identity: user.identity }
            }
            None => Subject::Service { client_id: record.client_id.clone().ok_or(BearerError::Unknown)? },
        };
        if let Some(client_id) = &record.client_id {
            let client = self.store.client(client_id)?.ok_or(BearerError::Disabled)?;
            if client.disabled {
                return Err(BearerError::Disabled);
            }
        }
        Ok(Principal {
            subject: actor,
            client_id: record.client_id,
            scopes: ScopeSet::parse(&record.scope),
            patient: record.patient,
            encounter: record.encounter,
            expires_at: record.expires_at,
        })
    }

    /// The stored record of a token of `kind` that is neither expired nor revoked.
    pub(crate) fn active_token(&self, token: &str, kind: TokenKind) -> std::result::Result<TokenRecord, BearerError> {
        if token.is_empty() || token.len() > 256 {
            return Err(BearerError::Unknown);
        }
        let record = self.store.token(&crypto::secret_hash(token))?.ok_or(BearerError::Unknown)?;
        if record.kind != kind {
            return Err(BearerError::Unknown);
        }
        if record.revoked {
            return Err(BearerError::Revoked);
        }
        let now = now();
        if record.expires_at <= now {
            return Err(BearerError::Expired);
        }
        if let Some(idle) = self.idle_limit(&record) {
            // An access token counts its own uses; a refresh token those of its whole grant
            // (the access tokens it came with, and itself).
            let last_used = match kind {
                TokenKind::Access => record.last_used_at.unwrap_or(record.issued_at),
                TokenKind::Refresh => self.store.grant_last_used(&record.grant_id)?.unwrap_or(record.issued_at),
            };
            if now - last_used > idle {
                return Err(BearerError::Idle);
            }
        }
        Ok(record)
    }

    /// The idle limit of the session a token belongs to: user sessions of apps have one
    /// (`offline_access` ones the offline limit, if any); tokens of backend services and those
    /// minted on the command line (with their own lifetime) have none.
    fn idle_limit(&self, record: &TokenRecord) -> Option<i64> {
        if record.user_id.is_none() || record.client_id.is_none() {
            return None;
        }
        if ScopeSet::parse(&record.scope).has(&ScopeKind::OfflineAccess) {
            self.config.offline_idle_seconds
        } else {
            Some(self.config.session_idle_seconds)
        }
    }

    /// RFC 7662 introspection of an access or refresh token.
    pub fn introspect(&self, token: &str) -> Result<serde_json::Value> {
        let inactive = serde_json::json!({ "active": false });
        for kind in [TokenKind::Access, TokenKind::Refresh] {
            let record = match self.active_token(token, kind) {
                Ok(record) => record,
                Err(BearerError::Store(e)) => return Err(e),
                Err(_) => continue,
            };
            let user = match &record.user_id {
                Some(id) => match self.store.user_by_id(id)? {
                    Some(user) if !user.disabled => Some(user),
                    _ => return Ok(inactive),
                },
                None => None,
            };
            let mut answer = serde_json::json!({
                "active": true,
                "scope": record.scope,
                "token_type": if kind == TokenKind::Access { "Bearer" } else { "refresh_token" },
                "exp": record.expires_at,
                "iat": record.issued_at,
                "iss": self.config.fhir_base_url,
                "aud": self.config.fhir_base_url,
            });
            if let Some(client_id) = &record.client_id {
                answer["client_id"] = client_id.as_str().into();
            }
            if let Some(user) = user {
                answer["sub"] = user.id.into();
                answer["username"] = user.username.into();
                if let Some(fhir_user) = user.identity.fhir_user() {
                    answer["fhirUser"] = format!("{}/{fhir_user}", self.config.fhir_base_url).into();
                }
            } else if let Some(client_id) = &record.client_id {
                answer["sub"] = client_id.as_str().into();
            }
            if let Some(patient) = record.patient {
                answer["patient"] = patient.into();
            }
            if let Some(encounter) = record.encounter {
                answer["encounter"] = encounter.into();
            }
            return Ok(answer);
        }
        Ok(inactive)
    }

    /// RFC 7009 revocation by `client` (`None`: unauthenticated). A refresh token takes its
    /// whole grant with it. Unknown tokens and tokens of other clients are ignored, as the RFC
    /// asks (the answer is the same either way).
    pub fn revoke(&self, client: Option<&Client>, token: &str) -> Result<()> {
        if token.is_empty() || token.len() > 256 {
            return Ok(());
        }
        let hash = crypto::secret_hash(token);
        let Some(record) = self.store.token(&hash)? else { return Ok(()) };
        let owner_ok = match (&record.client_id, client) {
            (None, _) => true,
            (Some(owner), Some(client)) => owner == &client.id,
            (Some(_), None) => false,
        };
        if !owner_ok {
            return Ok(());
        }
        match record.kind {
            TokenKind::Refresh => self.store.revoke_grant(&record.grant_id),
            TokenKind::Access => self.store.revoke_token(&hash).map(|_| ()),
        }
    }
}

/// At least 12 characters: long enough to resist guessing without composition rules.
fn check_password_strength(password: &str) -> Result<()> {
    if password.chars().count() < 12 {
        return Err(Error::Invalid("a password has at least 12 characters".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_splits_the_base_url() {
        let config = AuthConfig::new("http://127.0.0.1:8080/fhir/");
        assert_eq!(config.origin(), "http://127.0.0.1:8080");
        assert_eq!(config.fhir_path(), "/fhir");
        assert_eq!(config.endpoint("/auth/token"), "http://127.0.0.1:8080/auth/token");
        let bare = AuthConfig::new("https://ehr.example");
        assert_eq!(bare.origin(), "https://ehr.example");
        assert_eq!(bare.fhir_path(), "");
    }
}
