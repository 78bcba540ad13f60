//! Random secrets, their hashes, PKCE, passwords, and the server's own signing key.

use crate::{Error, Result};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::ecdsa::SigningKey;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};
use std::path::Path;

/// A new random secret: 256 bits, base64url (43 characters). Used for tokens, codes, client
/// secrets and form keys.
pub(crate) fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A one-time password that is easy to type: 20 characters from a 54-letter alphabet without
/// look-alikes (over 110 bits).
pub(crate) fn random_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut out = String::with_capacity(20);
    while out.len() < 20 {
        let mut byte = [0u8; 1];
        OsRng.fill_bytes(&mut byte);
        // Reject the top of the range so every letter is equally likely.
        let limit = 256 - 256 % ALPHABET.len();
        if usize::from(byte[0]) < limit {
            out.push(char::from(ALPHABET[usize::from(byte[0]) % ALPHABET.len()]));
        }
    }
    out
}

/// SHA-256 of a secret, hex. Tokens and codes are 256-bit random values, so a fast hash is
/// enough: nothing to brute-force, and a stolen `auth.db` yields no usable token.
pub(crate) fn secret_hash(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Constant-time equality of two strings (lengths may leak, contents do not).
pub(crate) fn same(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Whether `verifier` matches the S256 `challenge` (RFC 7636 §4.6).
pub(crate) fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    // RFC 7636 §4.1: 43 to 128 unreserved characters.
    let well_formed = (43..=128).contains(&verifier.len())
        && verifier.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    well_formed && same(&URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())), challenge)
}

/// The argon2id hash (PHC string) of a password, with a random salt.
pub(crate) fn hash_password(password: &str) -> Result<String> {
    use argon2::PasswordHasher;
    argon2::Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|_| Error::Key("cannot hash the password".into()))
}

/// Whether `password` matches an argon2 PHC string.
pub(crate) fn verify_password(password: &str, hash: &str) -> bool {
    use argon2::PasswordVerifier;
    argon2::Argon2::default().verify_password(password.as_bytes(), hash).is_ok()
}

/// The name of the server's signing key file in the data directory.
pub const SIGNING_KEY_FILE: &str = "auth-signing-key.p8";

/// The server's key for signing `id_token`s: ECDSA P-256 (ES256), generated at first start and
/// kept as PKCS#8 DER in the data directory, readable by its owner only, or, for servers
/// sharing a PostgreSQL database, in that database (`store_postgres::auth`).
pub struct ServerKey {
    encoding: jsonwebtoken::EncodingKey,
    kid: String,
    jwk: serde_json::Value,
}

impl ServerKey {
    /// Loads `dir/auth-signing-key.p8`, generating it if absent.
    pub fn load_or_create(dir: &Path) -> Result<ServerKey> {
        let path = dir.join(SIGNING_KEY_FILE);
        let der = match std::fs::read(&path) {
            Ok(der) => der,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let der = new_signing_key_pkcs8()?;
                write_private(&path, &der)?;
                der
            }
            Err(e) => return Err(e.into()),
        };
        ServerKey::from_pkcs8(&der)
    }

    /// A fresh key held in memory only (tests).
    pub fn generate() -> Result<ServerKey> {
        ServerKey::from_pkcs8(&new_signing_key_pkcs8()?)
    }

    /// A new random P-256 signing key as PKCS#8 DER, for a store that keeps the key itself
    /// (the first of several servers sharing a database proposes it; see [`ServerKey::from_pkcs8`]).
    pub fn new_pkcs8() -> Result<Vec<u8>> {
        new_signing_key_pkcs8()
    }

    /// The key kept as PKCS#8 DER (see [`ServerKey::new_pkcs8`]).
    pub fn from_pkcs8(der: &[u8]) -> Result<ServerKey> {
        let key =
            SigningKey::from_pkcs8_der(der).map_err(|_| Error::Key("the stored signing key is damaged".into()))?;
        let point = key.verifying_key().to_encoded_point(false);
        let (Some(x), Some(y)) = (point.x(), point.y()) else {
            return Err(Error::Key("the signing key has no affine point".into()));
        };
        let (x, y): (&[u8], &[u8]) = (x, y);
        let thumb = Sha256::digest([x, y].concat());
        let kid = URL_SAFE_NO_PAD.encode(&thumb[..12]);
        let jwk = serde_json::json!({
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y),
        });
        Ok(ServerKey { encoding: jsonwebtoken::EncodingKey::from_ec_der(der), kid, jwk })
    }

    /// Signs `claims` as an ES256 JWT.
    pub fn sign(&self, claims: &serde_json::Value) -> Result<String> {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).map_err(|_| Error::Key("cannot sign".into()))
    }

    /// The public key as a JWK Set, for `/auth/jwks`.
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({ "keys": [self.jwk] })
    }
}

/// A new random P-256 signing key, PKCS#8 DER.
pub(crate) fn new_signing_key_pkcs8() -> Result<Vec<u8>> {
    let der = SigningKey::random(&mut OsRng)
        .to_pkcs8_der()
        .map_err(|_| Error::Key("cannot encode the signing key".into()))?;
    Ok(der.as_bytes().to_vec())
}

/// Writes a new file readable and writable by its owner only (mode 0600); fails if it exists.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::sync::atomic::{AtomicU64, Ordering};
    // Written whole under a name of its own, then linked into place: the link fails if the file
    // exists (no clobbering) and is atomic, so a process or thread racing to create the same
    // file never reads it half written.
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}-{}.partial", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)));
    let partial = path.with_file_name(name);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let written = (|| -> std::io::Result<()> {
        let mut file = options.open(&partial)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::hard_link(&partial, path)
    })();
    let _ = std::fs::remove_file(&partial);
    Ok(written?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_matches_the_rfc_example() {
        // RFC 7636 Appendix B.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert!(pkce_matches(verifier, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"));
        assert!(!pkce_matches(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXx",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
        assert!(!pkce_matches("short", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"));
    }

    #[test]
    fn passwords_hash_and_verify() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("wrong horse", &hash));
        assert!(!verify_password("correct horse", "not a hash"));
    }

    #[test]
    fn secrets_are_random_and_hashes_stable() {
        assert_ne!(random_secret(), random_secret());
        assert_eq!(random_secret().len(), 43);
        assert_eq!(random_password().len(), 20);
        assert_eq!(secret_hash("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn the_server_key_is_kept_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let first = ServerKey::load_or_create(dir.path()).unwrap();
        let again = ServerKey::load_or_create(dir.path()).unwrap();
        assert_eq!(first.jwks(), again.jwks());
        let token = first.sign(&serde_json::json!({"sub": "x"})).unwrap();
        assert_eq!(token.split('.').count(), 3);
    }
}
