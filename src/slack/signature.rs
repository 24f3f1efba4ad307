//! Slack request signatures (v0): HMAC-SHA256 of `v0:{timestamp}:{body}` with the signing secret.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How far a request's timestamp may be from now, in seconds (Slack's own advice: five minutes).
pub const MAX_SKEW_SECONDS: i64 = 300;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing or malformed X-Slack-Request-Timestamp")]
    BadTimestamp,
    #[error("request timestamp is too far from now (possible replay)")]
    Stale,
    #[error("signature does not match")]
    Mismatch,
}

/// Verifies one request. `now` is the current Unix time in seconds.
pub fn verify(
    secret: &str,
    timestamp: &str,
    signature: &str,
    body: &[u8],
    now: i64,
) -> Result<(), SignatureError> {
    let ts: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| SignatureError::BadTimestamp)?;
    if now.abs_diff(ts) > MAX_SKEW_SECONDS.unsigned_abs() {
        return Err(SignatureError::Stale);
    }
    let expected = signature
        .strip_prefix("v0=")
        .and_then(|hex_part| hex::decode(hex_part).ok())
        .ok_or(SignatureError::Mismatch)?;
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).map_err(|_| SignatureError::Mismatch)?;
    mac.update(b"v0:");
    mac.update(timestamp.trim().as_bytes());
    mac.update(b":");
    mac.update(body);
    // Constant-time comparison.
    mac.verify_slice(&expected)
        .map_err(|_| SignatureError::Mismatch)
}

/// Signs a body the way Slack does (for tests and tools).
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(format!("v0:{timestamp}:").as_bytes());
    mac.update(body);
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_a_fresh_correct_signature() {
        let signature = sign("secret", 1_000, b"{}");
        assert_eq!(verify("secret", "1000", &signature, b"{}", 1_100), Ok(()));
    }

    #[test]
    fn refuses_wrong_secret_body_or_old_timestamp() {
        let signature = sign("secret", 1_000, b"{}");
        assert_eq!(
            verify("other", "1000", &signature, b"{}", 1_000),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify("secret", "1000", &signature, b"{ }", 1_000),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify("secret", "1000", &signature, b"{}", 1_301),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify("secret", "x", &signature, b"{}", 1_000),
            Err(SignatureError::BadTimestamp)
        );
        assert_eq!(
            verify("secret", "1000", "v1=00", b"{}", 1_000),
            Err(SignatureError::Mismatch)
        );
    }
}
