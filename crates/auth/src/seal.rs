//! Secrets the server must keep recoverably (staff TOTP secrets: it computes codes from them)
//! are sealed at rest with ChaCha20-Poly1305 under a 256-bit key of the server's own, kept in a
//! file readable by its owner only (`DATA/secrets.key`, or the file named with
//! `--secrets-key` for servers sharing a PostgreSQL database: they must share that file). A
//! stolen `auth.db`, backup or database dump without the key file yields no usable secret.
//!
//! A sealed value is `MAGIC || nonce (12 bytes) || ciphertext || tag (16 bytes)`; the
//! associated data names what it is and whose (`totp:USER_ID`), so that a sealed secret copied
//! onto another user's row does not open. Values without the magic are clear text written by
//! an earlier version; [`crate::Authority`] seals them when it starts.

use crate::{Error, Result};
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use std::path::Path;

/// The name of the key file in the data directory.
pub const SECRETS_KEY_FILE: &str = "secrets.key";

/// The first bytes of every sealed value (format version 1).
const MAGIC: &[u8; 4] = b"cs1:";
/// Bytes of a nonce.
const NONCE_BYTES: usize = 12;
/// Bytes of the key.
const KEY_BYTES: usize = 32;

/// The server's key for secrets at rest.
pub struct SecretsKey {
    cipher: ChaCha20Poly1305,
}

impl std::fmt::Debug for SecretsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretsKey(..)")
    }
}

impl SecretsKey {
    /// Loads the key file at `path`, creating it (32 random bytes, mode 0600) if absent.
    pub fn load_or_create(path: &Path) -> Result<SecretsKey> {
        match std::fs::read(path) {
            Ok(bytes) => SecretsKey::from_bytes(&bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = ChaCha20Poly1305::generate_key(&mut OsRng);
                match crate::crypto::write_private(path, &key[..]) {
                    Ok(()) => SecretsKey::from_bytes(&key[..]),
                    // Another process created it first: use theirs.
                    Err(Error::Io(e)) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        SecretsKey::from_bytes(&std::fs::read(path)?)
                    }
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// A fresh key held in memory only (tests).
    pub fn generate() -> SecretsKey {
        SecretsKey { cipher: ChaCha20Poly1305::new(&ChaCha20Poly1305::generate_key(&mut OsRng)) }
    }

    fn from_bytes(bytes: &[u8]) -> Result<SecretsKey> {
        if bytes.len() != KEY_BYTES {
            return Err(Error::Key(format!("the secrets key file must hold exactly {KEY_BYTES} bytes")));
        }
        let cipher =
            ChaCha20Poly1305::new_from_slice(bytes).map_err(|_| Error::Key("the secrets key is unusable".into()))?;
        Ok(SecretsKey { cipher })
    }

    /// Seals `secret`, bound to `context` (what it is and whose).
    pub(crate) fn seal(&self, context: &str, secret: &[u8]) -> Result<Vec<u8>> {
        let nonce = ChaCha20Poly1305::generate_nonce(&mut OsRng);
        let sealed = self
            .cipher
            .encrypt(&nonce, Payload { msg: secret, aad: context.as_bytes() })
            .map_err(|_| Error::Key("cannot seal a secret".into()))?;
        let mut out = Vec::with_capacity(MAGIC.len() + NONCE_BYTES + sealed.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&nonce[..]);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Opens a value sealed with this key for `context`.
    pub(crate) fn open(&self, context: &str, stored: &[u8]) -> Result<Vec<u8>> {
        let Some(rest) = stored.strip_prefix(MAGIC.as_slice()) else {
            return Err(Error::Key("a stored secret is not sealed".into()));
        };
        if rest.len() < NONCE_BYTES {
            return Err(Error::Key("a sealed secret is damaged".into()));
        }
        let (nonce, sealed) = rest.split_at(NONCE_BYTES);
        let nonce: [u8; NONCE_BYTES] = nonce.try_into().map_err(|_| Error::Key("a sealed secret is damaged".into()))?;
        self.cipher.decrypt(&Nonce::from(nonce), Payload { msg: sealed, aad: context.as_bytes() }).map_err(|_| {
            Error::Key(
                "a sealed secret does not open with this server's secrets key (another key file, or damaged)".into(),
            )
        })
    }
}

/// Whether a stored value is sealed (rather than clear text from an earlier version).
pub(crate) fn is_sealed(stored: &[u8]) -> bool {
    stored.starts_with(MAGIC)
}

/// The associated data of a user's TOTP secret.
pub(crate) fn totp_context(user_id: &str) -> String {
    format!("totp:{user_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_open_only_with_their_key_and_context() {
        let key = SecretsKey::generate();
        let secret = b"12345678901234567890";
        let sealed = key.seal("totp:a", secret).unwrap();
        assert!(is_sealed(&sealed));
        assert!(!sealed.windows(secret.len()).any(|w| w == secret));
        assert_ne!(sealed, key.seal("totp:a", secret).unwrap(), "a fresh nonce each time");
        assert_eq!(key.open("totp:a", &sealed).unwrap(), secret);
        assert!(key.open("totp:b", &sealed).is_err(), "bound to its user");
        assert!(SecretsKey::generate().open("totp:a", &sealed).is_err(), "bound to its key");
        assert!(key.open("totp:a", secret).is_err(), "clear text is not taken as sealed");
        let mut damaged = sealed.clone();
        if let Some(last) = damaged.last_mut() {
            *last ^= 1;
        }
        assert!(key.open("totp:a", &damaged).is_err());
    }

    #[test]
    fn the_key_file_is_created_once_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SECRETS_KEY_FILE);
        let first = SecretsKey::load_or_create(&path).unwrap();
        let sealed = first.seal("x", b"secret").unwrap();
        let again = SecretsKey::load_or_create(&path).unwrap();
        assert_eq!(again.open("x", &sealed).unwrap(), b"secret");
        assert_eq!(std::fs::read(&path).unwrap().len(), 32);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        std::fs::write(&path, b"short").unwrap();
        assert!(SecretsKey::load_or_create(&path).is_err());
    }
}
