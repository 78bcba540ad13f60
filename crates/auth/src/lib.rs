//! Identities and the OAuth 2.0 / SMART App Launch 2.x authorization server: the domain, with
//! neither HTTP nor SQL. Its HTTP edge (the endpoints and the sign-in and consent pages) is the
//! `auth-http` crate; its SQLite and PostgreSQL stores live beside the other backend code
//! (`store_sqlite::auth`, `store_postgres::auth`).
//!
//! - **Identities** ([`model`]): staff users with roles and Organizations, linked to their
//!   Practitioner/PractitionerRole; patient users linked to their Patient; proxies linked to a
//!   RelatedPerson. Passwords are argon2id hashes.
//! - **Scopes** ([`scope`]): SMART v1 and v2 with search-parameter constraints, and the decision
//!   "may this token do interaction X on type T" the policy engine asks.
//! - **The authorization server** ([`Authority`]): authorization code with PKCE (S256 only),
//!   standalone and EHR launch, refresh with rotation, client credentials with
//!   `private_key_jwt` (RS384/ES384) for backend services, introspection and revocation, and
//!   [`Authority::validate_bearer`] turning a bearer token into a [`Principal`].
//! - **The steps of a sign-in** ([`Pending`], [`Stage`], [`SignIn`]): what the forms of the HTTP
//!   edge drive, from the authorization request through password, code and consent.
//! - **Sign-in safety**: failed sign-ins counted per user in the store and a lock-out after
//!   [`AuthConfig::max_failed_sign_ins`], a per-address throttle of the sign-in forms (kept by
//!   the HTTP edge, set by [`AuthConfig::sign_in_attempts_per_minute`]), a TOTP
//!   second factor for staff (`totp`), and idle user sessions ending after
//!   [`AuthConfig::session_idle_seconds`].
//!
//! Tokens are opaque 256-bit random strings stored as SHA-256 hashes, not JWTs: the resource
//! server is this same process, so a lookup is as cheap as verifying a signature, and
//! revocation, disabling a user and introspection take effect at once with no key to leak
//! for forging tokens. Only `id_token`s are signed JWTs (ES256, the key generated at first start
//! and kept beside the rest of the authorization data), because OpenID Connect requires it.
//!
//! Storage is behind [`AuthStore`]; `store_sqlite::auth` keeps it in `auth.db` in the data
//! directory (the signing key in `auth-signing-key.p8` beside it), apart from the record
//! database; `store_postgres::auth` keeps it in `auth_` tables of a PostgreSQL database, the
//! signing key included, so that servers sharing the database share users, tokens and key.
//! Each opens its store and calls [`Authority::start`].
//!
//! Staff TOTP secrets, the one secret the server must keep recoverably, are sealed at rest
//! (ChaCha20-Poly1305, [`SecretsKey`]) under a key file of the server's: `secrets.key` in the
//! data directory, or a file named by the operator for PostgreSQL (servers sharing the database
//! share that file; the database alone does not open them).

mod authority;
mod crypto;
mod grant;
pub mod model;
pub mod scope;
mod seal;
mod store;
mod totp;
mod web;

pub use authority::{
    AuthConfig, Authority, BearerError, NewClient, NewUser, OneTimePassword, Principal, SignInAttempt, SignInAudit,
    Subject, TokenResponse, TotpEnrolment,
};
pub use crypto::{SIGNING_KEY_FILE, ServerKey};
pub use grant::{AuthorizeError, ClientCredentials, OAuthError, Pending, SignIn, Stage};
pub use model::{Client, ClientKind, Identity, Role, User};
pub use scope::{Context, Decision, Interaction, ScopeSet};
pub use seal::{SECRETS_KEY_FILE, SecretsKey};
pub use store::{AuthStore, Reseal};
pub use web::{WEB_APP_CLIENT_ID, WEB_APP_SCOPE, WEB_SESSION_SECONDS, WebSignIn};

/// Errors of the authorization server's store and administration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The store failed (details are internal; never shown to users).
    #[error("auth storage: {0}")]
    Storage(String),
    /// A value given (username, role, client setting) is not acceptable.
    #[error("{0}")]
    Invalid(String),
    /// The username or client id is taken.
    #[error("{0}")]
    Conflict(String),
    /// No such user or client.
    #[error("{0}")]
    NotFound(String),
    /// Keys or hashing failed.
    #[error("auth key: {0}")]
    Key(String),
    /// The data directory could not be read or written.
    #[error("auth files: {0}")]
    Io(#[from] std::io::Error),
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
