//! The peers a node knows: their base URL, the client id this node has there, the scopes it
//! asks for and the organization the peer speaks for, kept in the store's job table (kind
//! [`KIND`]); the private key this node signs its client assertions with, kept as a file of
//! its own (`NAME.pem`, mode 0600) in the peers' key folder — never in the database, never
//! logged.

use crate::{Error, Result};
use base64::Engine;
use p384::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use store::{JobStore, StoredJob};
use time::OffsetDateTime;

/// The kind of a peer's entry in the store's job table.
pub const KIND: &str = "peer";

/// The scopes asked for when none are given: read everything (the peer's policy and
/// consents still decide what it hands out).
pub const DEFAULT_SCOPE: &str = "system/*.rs";

/// A registered peer node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    /// Its name here (letters, digits, `-`, `_`, `.`).
    pub name: String,
    /// Its FHIR base URL (`https://node-b.example.org/fhir`), without a trailing `/`.
    pub url: String,
    /// The client id this node is registered under at the peer.
    pub client_id: String,
    /// The scopes asked for in its token requests.
    pub scope: String,
    /// The Organization (a reference the peer resolves, e.g. `Organization/hosp-b`) the peer
    /// speaks for, named as the agent of what comes from it; `None`: its name is shown.
    pub organization: Option<String>,
    /// When it was registered (Unix seconds).
    pub added_at: i64,
}

impl Peer {
    /// The id of its entry in the job table.
    fn job_id(name: &str) -> String {
        format!("peer:{name}")
    }
}

/// What `add` takes.
#[derive(Debug, Clone)]
pub struct NewPeer {
    /// Its name here.
    pub name: String,
    /// Its FHIR base URL (http or https).
    pub url: String,
    /// The client id this node is registered under at the peer.
    pub client_id: String,
    /// Scopes (default [`DEFAULT_SCOPE`]).
    pub scope: Option<String>,
    /// The Organization the peer speaks for.
    pub organization: Option<String>,
    /// The private key (PEM: PKCS#8 `PRIVATE KEY` or SEC1 `EC PRIVATE KEY`, P-384) whose
    /// public half the peer has registered for the client.
    pub key_pem: String,
}

/// The peers of one node.
#[derive(Clone)]
pub struct PeerRegistry {
    jobs: Arc<dyn JobStore>,
    key_dir: PathBuf,
}

impl PeerRegistry {
    /// The peers kept in `jobs`, their keys in `key_dir` (e.g. `peers` in the data directory).
    pub fn new(jobs: Arc<dyn JobStore>, key_dir: impl Into<PathBuf>) -> PeerRegistry {
        PeerRegistry { jobs, key_dir: key_dir.into() }
    }

    /// Registers (or replaces) a peer: refuses a name, URL or key that will not do before
    /// anything is written; the key file is written first, the entry then.
    pub fn add(&self, new: NewPeer) -> Result<Peer> {
        check_name(&new.name)?;
        let url = check_url(&new.url)?;
        if new.client_id.trim().is_empty() || new.client_id.len() > 256 {
            return Err(Error::invalid("the client id must be 1 to 256 characters"));
        }
        let scope = new.scope.unwrap_or_else(|| DEFAULT_SCOPE.to_string());
        if scope.trim().is_empty() {
            return Err(Error::invalid("the scope must not be empty"));
        }
        if let Some(org) = &new.organization
            && !org.strip_prefix("Organization/").is_some_and(fhir::reference::is_id)
        {
            return Err(Error::invalid("the organization is a reference such as Organization/ID"));
        }
        let key = p384_key(&new.key_pem)?;
        let pem = key.to_pkcs8_pem(LineEnding::LF).map_err(|_| Error::invalid("the private key cannot be kept"))?;
        write_private(&self.key_dir, &new.name, pem.as_bytes())?;
        let peer = Peer {
            name: new.name,
            url,
            client_id: new.client_id,
            scope,
            organization: new.organization,
            added_at: OffsetDateTime::now_utc().unix_timestamp(),
        };
        let state = serde_json::to_string(&peer).map_err(|_| Error::invalid("the peer could not be written"))?;
        let saved = self.jobs.save_job(&StoredJob {
            id: Peer::job_id(&peer.name),
            kind: KIND.into(),
            state,
            updated_at: OffsetDateTime::now_utc(),
        });
        if let Err(e) = saved {
            let _ = std::fs::remove_file(self.key_path(&peer.name));
            return Err(e.into());
        }
        Ok(peer)
    }

    /// Every peer, by name.
    pub fn list(&self) -> Result<Vec<Peer>> {
        let mut peers: Vec<Peer> =
            self.jobs.jobs(KIND)?.into_iter().filter_map(|job| serde_json::from_str(&job.state).ok()).collect();
        peers.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(peers)
    }

    /// The peer of this name.
    pub fn get(&self, name: &str) -> Result<Peer> {
        if check_name(name).is_err() {
            return Err(Error::NoSuchPeer);
        }
        let job = self.jobs.job(&Peer::job_id(name))?.filter(|j| j.kind == KIND).ok_or(Error::NoSuchPeer)?;
        serde_json::from_str(&job.state).map_err(|_| Error::NoSuchPeer)
    }

    /// Removes a peer and its key; `false` when there was none.
    pub fn remove(&self, name: &str) -> Result<bool> {
        if check_name(name).is_err() {
            return Ok(false);
        }
        let removed = self.jobs.remove_job(&Peer::job_id(name))?;
        match std::fs::remove_file(self.key_path(name)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(removed),
            Err(e) => Err(Error::Files(e)),
        }
    }

    fn key_path(&self, name: &str) -> PathBuf {
        self.key_dir.join(format!("{name}.pem"))
    }

    /// The key this node signs its assertions to `peer` with.
    pub(crate) fn signing_key(&self, name: &str) -> Result<SigningKey> {
        let pem = std::fs::read_to_string(self.key_path(name)).map_err(Error::Files)?;
        let key = p384_key(&pem)?;
        SigningKey::of(&key)
    }
}

/// A peer's private key, ready to sign (ES384), with its key id (the RFC 7638 thumbprint).
pub(crate) struct SigningKey {
    pub(crate) key: jsonwebtoken::EncodingKey,
    pub(crate) kid: String,
}

impl SigningKey {
    fn of(key: &p384::SecretKey) -> Result<SigningKey> {
        let der = key.to_pkcs8_der().map_err(|_| Error::invalid("the private key cannot be used"))?;
        Ok(SigningKey { key: jsonwebtoken::EncodingKey::from_ec_der(der.as_bytes()), kid: thumbprint(key) })
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// `(x, y)` of the public key, base64url.
fn coordinates(key: &p384::SecretKey) -> (String, String) {
    use p384::elliptic_curve::sec1::ToEncodedPoint;
    let point = key.public_key().to_encoded_point(false);
    (b64(point.x().map(|x| &x[..]).unwrap_or_default()), b64(point.y().map(|y| &y[..]).unwrap_or_default()))
}

/// The RFC 7638 thumbprint of the public key.
fn thumbprint(key: &p384::SecretKey) -> String {
    let (x, y) = coordinates(key);
    let canonical = format!(r#"{{"crv":"P-384","kty":"EC","x":"{x}","y":"{y}"}}"#);
    b64(&Sha256::digest(canonical.as_bytes()))
}

/// The public JWK Set of a private key (what the peer registers for this node's client,
/// e.g. `continuum client add --jwks`).
pub fn public_jwks(key_pem: &str) -> Result<Value> {
    let key = p384_key(key_pem)?;
    let (x, y) = coordinates(&key);
    Ok(
        json!({"keys": [{"kty": "EC", "crv": "P-384", "x": x, "y": y, "kid": thumbprint(&key), "alg": "ES384", "use": "sig"}]}),
    )
}

/// A new P-384 private key (PKCS#8 PEM) and its public JWK Set.
pub fn generate_key() -> Result<(String, Value)> {
    let key = p384::SecretKey::random(&mut rand_core::OsRng);
    let pem = key.to_pkcs8_pem(LineEnding::LF).map_err(|_| Error::invalid("the key could not be written"))?;
    let jwks = public_jwks(&pem)?;
    Ok((pem.to_string(), jwks))
}

fn p384_key(pem: &str) -> Result<p384::SecretKey> {
    let pem = pem.trim();
    let key = if pem.starts_with("-----BEGIN EC PRIVATE KEY-----") {
        p384::SecretKey::from_sec1_pem(pem).ok()
    } else {
        p384::SecretKey::from_pkcs8_pem(pem).ok()
    };
    key.ok_or_else(|| {
        Error::invalid(
            "the key must be a P-384 private key in PEM (PKCS#8 PRIVATE KEY or SEC1 EC PRIVATE KEY), unencrypted",
        )
    })
}

fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with('.');
    if ok { Ok(()) } else { Err(Error::invalid("a peer name is 1 to 64 letters, digits, `-`, `_` or `.`")) }
}

/// The peer's base URL, checked: http or https, a host, no credentials, query or fragment.
pub(crate) fn check_url(url: &str) -> Result<String> {
    let parsed = reqwest::Url::parse(url.trim()).map_err(|_| Error::invalid("the peer URL is not a URL"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(Error::invalid("the peer URL must be http or https"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(Error::invalid("the peer URL has no host"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(Error::invalid("the peer URL must not carry credentials"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(Error::invalid("the peer URL must not have a query or fragment"));
    }
    Ok(parsed.as_str().trim_end_matches('/').to_string())
}

/// Writes `bytes` as `dir/NAME.pem`, readable by its owner only, replacing any earlier file
/// at once (written beside it, then renamed).
fn write_private(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(dir).map_err(Error::Files)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(Error::Files)?;
    }
    let temporary = dir.join(format!(".{name}.pem.{}", uuid::Uuid::new_v4()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let written = (|| {
        let mut file = options.open(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temporary, dir.join(format!("{name}.pem")))
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temporary);
        return Err(Error::Files(e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        assert_eq!(check_url("http://127.0.0.1:8080/fhir/").unwrap(), "http://127.0.0.1:8080/fhir");
        assert!(check_url("ftp://x/fhir").is_err());
        assert!(check_url("file:///etc/passwd").is_err());
        assert!(check_url("https://u:p@x/fhir").is_err());
        assert!(check_url("https://x/fhir?a=b").is_err());
        assert!(check_url("not a url").is_err());
    }

    #[test]
    fn keys_make_jwks_with_their_thumbprint() {
        let (pem, jwks) = generate_key().unwrap();
        assert_eq!(jwks["keys"][0]["crv"], "P-384");
        let signing = SigningKey::of(&p384_key(&pem).unwrap()).unwrap();
        assert_eq!(jwks["keys"][0]["kid"], signing.kid.as_str());
        assert!(p384_key("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----").is_err());
    }
}
