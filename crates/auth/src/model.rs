//! Users, clients, and the records of the authorization server (codes, tokens, launches).

use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A staff role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Physician.
    Physician,
    /// Nurse.
    Nurse,
    /// Behavioral-health clinician (may see behavioral-health records).
    BehavioralHealthClinician,
    /// Care manager.
    CareManager,
    /// Front desk (scheduling, registration).
    FrontDesk,
    /// Billing.
    Billing,
    /// Quality analyst.
    QualityAnalyst,
    /// Administrator of the installation.
    Administrator,
}

impl Role {
    /// Every role, in a stable order.
    pub const ALL: [Role; 8] = [
        Role::Physician,
        Role::Nurse,
        Role::BehavioralHealthClinician,
        Role::CareManager,
        Role::FrontDesk,
        Role::Billing,
        Role::QualityAnalyst,
        Role::Administrator,
    ];

    /// The role's name as written on the command line and stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Physician => "physician",
            Role::Nurse => "nurse",
            Role::BehavioralHealthClinician => "behavioral-health-clinician",
            Role::CareManager => "care-manager",
            Role::FrontDesk => "front-desk",
            Role::Billing => "billing",
            Role::QualityAnalyst => "quality-analyst",
            Role::Administrator => "administrator",
        }
    }
}

impl FromStr for Role {
    type Err = Error;
    fn from_str(s: &str) -> Result<Role> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| Error::Invalid(format!("unknown role (known: {})", Role::ALL.map(Role::as_str).join(", "))))
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who a user is in the record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Identity {
    /// A member of staff.
    Staff {
        /// Roles held.
        roles: Vec<Role>,
        /// Ids of the Organizations the user belongs to (at least one).
        organizations: Vec<String>,
        /// Id of the user's Practitioner resource.
        practitioner: Option<String>,
        /// Ids of the user's PractitionerRole resources.
        practitioner_roles: Vec<String>,
    },
    /// A patient, signing in for their own record.
    Patient {
        /// Id of the Patient resource.
        patient: String,
    },
    /// A proxy (a parent, a carer) acting for a patient, described by a RelatedPerson.
    Proxy {
        /// Id of the RelatedPerson resource.
        related_person: String,
        /// Id of the Patient the proxy acts for.
        patient: String,
    },
}

impl Identity {
    /// The FHIR resource that represents the user (`fhirUser`), relative (`Practitioner/123`).
    pub fn fhir_user(&self) -> Option<String> {
        match self {
            Identity::Staff { practitioner, .. } => practitioner.as_ref().map(|p| format!("Practitioner/{p}")),
            Identity::Patient { patient } => Some(format!("Patient/{patient}")),
            Identity::Proxy { related_person, .. } => Some(format!("RelatedPerson/{related_person}")),
        }
    }

    /// The patient whose record a patient or proxy user acts on.
    pub fn patient(&self) -> Option<&str> {
        match self {
            Identity::Staff { .. } => None,
            Identity::Patient { patient } | Identity::Proxy { patient, .. } => Some(patient),
        }
    }

    /// Staff roles (empty for patients and proxies).
    pub fn roles(&self) -> &[Role] {
        match self {
            Identity::Staff { roles, .. } => roles,
            _ => &[],
        }
    }

    /// Organizations the user belongs to (empty for patients and proxies).
    pub fn organizations(&self) -> &[String] {
        match self {
            Identity::Staff { organizations, .. } => organizations,
            _ => &[],
        }
    }
}

/// A person who signs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Stable id (a UUID).
    pub id: String,
    /// Sign-in name, unique.
    pub username: String,
    /// Who the user is.
    pub identity: Identity,
    /// The argon2id hash of the password (PHC string).
    pub password_hash: String,
    /// The password is one-time: it must be changed at the next sign-in.
    pub must_change_password: bool,
    /// After this time (Unix seconds) the password no longer signs in.
    pub password_expires_at: Option<i64>,
    /// A disabled user cannot sign in and their tokens stop working.
    pub disabled: bool,
    /// When the user was created (Unix seconds).
    pub created_at: i64,
    /// Failed sign-ins (wrong password or wrong second-factor code) since the last successful
    /// one or the last lock.
    pub failed_sign_ins: u32,
    /// Until this time (Unix seconds) the account is locked after repeated failed sign-ins.
    pub locked_until: Option<i64>,
}

/// Whether a client can keep a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKind {
    /// A browser or native app: no secret, PKCE only.
    Public,
    /// A server-side app or backend service: authenticates with a secret or a signed JWT.
    Confidential,
}

impl ClientKind {
    /// The name as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            ClientKind::Public => "public",
            ClientKind::Confidential => "confidential",
        }
    }
}

impl FromStr for ClientKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<ClientKind> {
        match s {
            "public" => Ok(ClientKind::Public),
            "confidential" => Ok(ClientKind::Confidential),
            _ => Err(Error::Invalid("client kind must be public or confidential".into())),
        }
    }
}

/// A registered client application.
#[derive(Debug, Clone, PartialEq)]
pub struct Client {
    /// The `client_id`.
    pub id: String,
    /// A name shown on the consent page.
    pub name: String,
    /// Public or confidential.
    pub kind: ClientKind,
    /// SHA-256 (hex) of the client secret, for `client_secret_basic`/`_post`.
    pub secret_hash: Option<String>,
    /// Registered redirect URIs (exact match).
    pub redirect_uris: Vec<String>,
    /// The scopes it may be granted, space-separated.
    pub allowed_scopes: String,
    /// Its public keys (a JWK Set) for `private_key_jwt`.
    pub jwks: Option<serde_json::Value>,
    /// Where its public keys are published, for `private_key_jwt`.
    pub jwks_uri: Option<String>,
    /// A disabled client gets no tokens.
    pub disabled: bool,
    /// When it was registered (Unix seconds).
    pub created_at: i64,
}

/// A pending authorization code (stored by hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeRecord {
    /// SHA-256 (hex) of the code.
    pub hash: String,
    /// The grant it starts: tokens issued from it share this id, so a replayed code revokes them.
    pub grant_id: String,
    /// The client it was issued to.
    pub client_id: String,
    /// The redirect URI of the authorization request.
    pub redirect_uri: String,
    /// The PKCE S256 challenge.
    pub code_challenge: String,
    /// The user who approved.
    pub user_id: String,
    /// Scopes granted.
    pub scope: String,
    /// Launch context: patient id.
    pub patient: Option<String>,
    /// Launch context: encounter id.
    pub encounter: Option<String>,
    /// OpenID Connect nonce.
    pub nonce: Option<String>,
    /// Expiry (Unix seconds).
    pub expires_at: i64,
    /// Already exchanged once.
    pub used: bool,
}

/// Access or refresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// A bearer token for the FHIR API.
    Access,
    /// A refresh token for the token endpoint.
    Refresh,
}

impl TokenKind {
    /// The name as stored (and as a `token_type_hint`).
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Access => "access_token",
            TokenKind::Refresh => "refresh_token",
        }
    }
}

/// An issued token (stored by hash: the token itself is never kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    /// SHA-256 (hex) of the token.
    pub hash: String,
    /// Access or refresh.
    pub kind: TokenKind,
    /// The grant it belongs to (one authorization, its refreshes included).
    pub grant_id: String,
    /// The client it was issued to (`None` for tokens minted by `continuum token`).
    pub client_id: Option<String>,
    /// The user it acts for (`None` for backend services).
    pub user_id: Option<String>,
    /// Scopes granted.
    pub scope: String,
    /// Launch context: patient id.
    pub patient: Option<String>,
    /// Launch context: encounter id.
    pub encounter: Option<String>,
    /// Issued at (Unix seconds).
    pub issued_at: i64,
    /// Expiry (Unix seconds).
    pub expires_at: i64,
    /// Revoked (explicitly, by refresh rotation, or by a replayed code).
    pub revoked: bool,
    /// When the token was last used (Unix seconds), recorded at most about once a minute;
    /// `None` until its first use. The idle limit of a session counts from here.
    pub last_used_at: Option<i64>,
}

/// A launch context created by the EHR for an EHR launch (`launch` parameter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchContext {
    /// The SHA-256 (hex) of the opaque `launch` value handed to the app.
    pub id: String,
    /// The patient in context.
    pub patient: Option<String>,
    /// The encounter in context.
    pub encounter: Option<String>,
    /// Expiry (Unix seconds).
    pub expires_at: i64,
}
