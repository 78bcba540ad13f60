//! Time-based one-time passwords (RFC 6238) for the staff's second factor: HMAC-SHA-1, 6 digits,
//! 30-second steps, one step of clock skew either way — what every authenticator app accepts
//! from an `otpauth://` URI. The codes come from `totp-rs`; which step matched is returned so
//! that the store can refuse a code used before (RFC 6238 §5.2).

use crate::{Error, Result};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use rand_core::{OsRng, RngCore};
use totp_rs::{Algorithm, Builder, Secret, Totp};

/// Digits of a code.
const DIGITS: u8 = 6;
/// Seconds of a step.
const STEP_SECONDS: u64 = 30;
/// Bytes of a secret: 160 bits, as RFC 4226 §4 recommends.
const SECRET_BYTES: usize = 20;

/// Characters left as they are in an `otpauth://` label and query (RFC 3986 unreserved).
const URI_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// A new random secret.
pub(crate) fn new_secret() -> Vec<u8> {
    let mut secret = vec![0u8; SECRET_BYTES];
    OsRng.fill_bytes(&mut secret);
    secret
}

fn generator(secret: &[u8]) -> Result<Totp> {
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(DIGITS)
        .with_skew(1)
        .with_step_duration(STEP_SECONDS)
        .with_secret(secret.to_vec())
        .build()
        .map_err(|_| Error::Key("a stored TOTP secret is unusable".into()))
}

/// The time step whose code `code` is at `now` (Unix seconds), one step early or late
/// included; `None` if it is no such code.
pub(crate) fn matching_step(secret: &[u8], code: &str, now: i64) -> Result<Option<i64>> {
    // Apps show codes as "123 456".
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if code.len() != usize::from(DIGITS) || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(None);
    }
    let Ok(now) = u64::try_from(now) else { return Ok(None) };
    Ok(generator(secret)?.check(&code, now).and_then(|step| i64::try_from(step).ok()))
}

/// The secret in base32 (RFC 4648, no padding), for typing into an app.
pub(crate) fn base32(secret: &[u8]) -> String {
    Secret::from(secret).to_base32()
}

/// The `otpauth://totp/…` URI an authenticator app enrols from (the key URI format).
pub(crate) fn uri(issuer: &str, username: &str, secret: &[u8]) -> String {
    let issuer = utf8_percent_encode(issuer, URI_COMPONENT).to_string();
    let account = utf8_percent_encode(username, URI_COMPONENT);
    format!(
        "otpauth://totp/{issuer}:{account}?secret={}&issuer={issuer}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECONDS}",
        base32(secret)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 Appendix B, SHA-1 (the 8-digit values' last 6 digits).
    #[test]
    fn codes_match_the_rfc_test_vectors() {
        let secret = b"12345678901234567890";
        for (time, code) in [(59, "287082"), (1_111_111_109, "081804"), (1_234_567_890, "005924")] {
            assert_eq!(matching_step(secret, code, time).unwrap(), Some(time / 30), "T={time}");
        }
        assert_eq!(matching_step(secret, "287 082", 59).unwrap(), Some(1), "spaces are ignored");
        assert_eq!(matching_step(secret, "287082", 59 + 30).unwrap(), Some(1), "one step late");
        assert_eq!(matching_step(secret, "287082", 59 - 30).unwrap(), Some(1), "one step early");
        assert_eq!(matching_step(secret, "287082", 59 + 60).unwrap(), None, "two steps late");
        assert_eq!(matching_step(secret, "287083", 59).unwrap(), None);
        assert_eq!(matching_step(secret, "28708", 59).unwrap(), None);
        assert_eq!(matching_step(secret, "2870a2", 59).unwrap(), None);
    }

    #[test]
    fn the_uri_names_issuer_account_and_parameters() {
        let secret = b"12345678901234567890";
        assert_eq!(base32(secret), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        assert_eq!(
            uri("Continuum Clinic", "dr:who", secret),
            "otpauth://totp/Continuum%20Clinic:dr%3Awho?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\
             &issuer=Continuum%20Clinic&algorithm=SHA1&digits=6&period=30"
        );
        assert_eq!(new_secret().len(), 20);
        assert_ne!(new_secret(), new_secret());
    }
}
