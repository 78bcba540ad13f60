//! Sessions of the clinician web app (`/app`), the server's own first-party client.
//!
//! The app signs staff in with the same checks as the authorization server's forms (argon2id,
//! lock-out, TOTP), then holds an ordinary access token of the built-in client
//! [`WEB_APP_CLIENT_ID`] in a cookie. Every page therefore reaches health data through the
//! same [`Authority::validate_bearer`] and policy as the API, and the session ends after
//! [`crate::AuthConfig::session_idle_seconds`] without use (automatic log-off), like any
//! app's user session.

use crate::authority::now;
use crate::grant::SignIn;
use crate::model::{Client, ClientKind, Identity, TokenKind, TokenRecord, User};
use crate::{Authority, Error, Result, crypto};

/// The client id of the web app's sessions.
pub const WEB_APP_CLIENT_ID: &str = "continuum-web";
/// What a web app session may do: whatever the policy lets its user do.
pub const WEB_APP_SCOPE: &str = "openid fhirUser user/*.cruds";
/// The longest a web session lasts even when in use (a long shift).
pub const WEB_SESSION_SECONDS: i64 = 12 * 60 * 60;
/// How long the password step is remembered while the TOTP code is asked for.
const TICKET_SECONDS: i64 = 5 * 60;

/// The answer to a sign-in step of the web app.
#[derive(Debug)]
pub enum WebSignIn {
    /// Signed in: the session token (kept in a cookie) and its user.
    Session {
        /// The session token, the cookie's value.
        token: String,
        /// The signed-in user.
        user: Box<User>,
    },
    /// The password was right; the TOTP code is next, posted with this ticket.
    NeedsCode {
        /// Proof of the password step, sent back with the code (it expires after a few minutes).
        ticket: String,
    },
    /// Staff must use a second factor and this user has none enrolled.
    NotEnrolled,
    /// The app is for staff; patients use their own apps.
    NotStaff,
    /// Wrong username, password or code, or the account is locked or disabled (alike).
    Refused,
}

impl Authority {
    /// The password step of a web sign-in (argon2: call on a blocking thread).
    pub fn web_sign_in(&self, username: &str, password: &str) -> Result<WebSignIn> {
        Ok(match self.sign_in(username, password)? {
            SignIn::Ok(user) => self.web_session(user)?,
            SignIn::NeedsCode(user) => {
                if !matches!(user.identity, Identity::Staff { .. }) {
                    return Ok(WebSignIn::NotStaff);
                }
                let ticket = crypto::random_secret();
                let mut tickets = self.web_tickets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                let now = now();
                tickets.retain(|_, (_, until)| *until > now);
                tickets.insert(crypto::secret_hash(&ticket), (user.id.clone(), now + TICKET_SECONDS));
                WebSignIn::NeedsCode { ticket }
            }
            SignIn::NotEnrolled => WebSignIn::NotEnrolled,
            SignIn::Refused => WebSignIn::Refused,
        })
    }

    /// The TOTP step of a web sign-in, with the ticket of the password step (used once).
    pub fn web_second_factor(&self, ticket: &str, code: &str) -> Result<WebSignIn> {
        let user_id = {
            let mut tickets = self.web_tickets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            match tickets.remove(&crypto::secret_hash(ticket)) {
                Some((user_id, until)) if until > now() => user_id,
                _ => return Ok(WebSignIn::Refused),
            }
        };
        match self.second_factor(&user_id, code)? {
            Some(user) => self.web_session(user),
            None => Ok(WebSignIn::Refused),
        }
    }

    /// Ends a web session (signing out): its token is revoked.
    pub fn web_sign_out(&self, token: &str) -> Result<()> {
        if token.is_empty() || token.len() > 256 {
            return Ok(());
        }
        self.store.revoke_token(&crypto::secret_hash(token)).map(|_| ())
    }

    fn web_session(&self, user: User) -> Result<WebSignIn> {
        if !matches!(user.identity, Identity::Staff { .. }) {
            return Ok(WebSignIn::NotStaff);
        }
        self.ensure_web_client()?;
        let token = crypto::random_secret();
        let now = now();
        self.store.insert_token(&TokenRecord {
            hash: crypto::secret_hash(&token),
            kind: TokenKind::Access,
            grant_id: uuid::Uuid::new_v4().to_string(),
            client_id: Some(WEB_APP_CLIENT_ID.to_string()),
            user_id: Some(user.id.clone()),
            scope: WEB_APP_SCOPE.to_string(),
            patient: None,
            encounter: None,
            issued_at: now,
            expires_at: now + WEB_SESSION_SECONDS,
            revoked: false,
            last_used_at: None,
        })?;
        Ok(WebSignIn::Session { token, user: Box::new(user) })
    }

    /// Registers the web app's client on first use: public, with no redirect URI, so that no
    /// OAuth flow can ask for tokens in its name.
    fn ensure_web_client(&self) -> Result<()> {
        if self.store.client(WEB_APP_CLIENT_ID)?.is_some() {
            return Ok(());
        }
        let client = Client {
            id: WEB_APP_CLIENT_ID.to_string(),
            name: "Continuum web app".to_string(),
            kind: ClientKind::Public,
            secret_hash: None,
            redirect_uris: Vec::new(),
            allowed_scopes: WEB_APP_SCOPE.to_string(),
            jwks: None,
            jwks_uri: None,
            disabled: false,
            created_at: now(),
        };
        match self.store.insert_client(&client) {
            // Another request registered it first.
            Err(Error::Conflict(_)) => Ok(()),
            other => other,
        }
    }
}
