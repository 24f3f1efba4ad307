//! Slack request signatures (v0): HMAC-SHA256 of `v0:{timestamp}:{body}` with the signing secret.

use std::collections::HashMap;
use std::sync::Mutex;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How far a request's timestamp may be from now, in seconds (Slack's own advice: five minutes).
pub const MAX_SKEW_SECONDS: i64 = 300;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing X-Slack-Signature or X-Slack-Request-Timestamp")]
    Missing,
    #[error("missing or malformed X-Slack-Request-Timestamp")]
    BadTimestamp,
    #[error("request timestamp is too far from now (possible replay)")]
    Stale,
    #[error("signature does not match")]
    Mismatch,
    #[error("this signed request was already received (replay)")]
    Replayed,
}

impl SignatureError {
    /// The stable code of the 401 answer.
    pub fn code(&self) -> &'static str {
        match self {
            SignatureError::Missing => "MISSING_SIGNATURE",
            SignatureError::BadTimestamp | SignatureError::Stale => "STALE_REQUEST",
            SignatureError::Mismatch => "INVALID_SIGNATURE",
            SignatureError::Replayed => "REPLAYED_REQUEST",
        }
    }

    /// The metric's label.
    pub fn label(&self) -> &'static str {
        match self {
            SignatureError::Missing => "missing",
            SignatureError::BadTimestamp | SignatureError::Stale => "stale",
            SignatureError::Mismatch => "invalid",
            SignatureError::Replayed => "replayed",
        }
    }
}

/// The most signatures remembered; beyond it the oldest half is forgotten (only Slack can make
/// valid signatures, so this bounds memory against a flood of genuine requests, not an attacker).
const REPLAY_MAX: usize = 200_000;

/// The signatures of requests accepted within the timestamp window: a second arrival of the same
/// signed request is a replay.
#[derive(Default)]
pub struct ReplayGuard {
    seen: Mutex<HashMap<[u8; 32], i64>>,
}

impl ReplayGuard {
    /// Remembers a verified request's signature; `Err(Replayed)` when it was seen already.
    pub fn first_time(
        &self,
        signature: &str,
        timestamp: i64,
        now: i64,
    ) -> Result<(), SignatureError> {
        let mut key = [0u8; 32];
        let bytes = signature
            .strip_prefix("v0=")
            .and_then(|h| hex::decode(h).ok());
        match bytes {
            Some(bytes) if bytes.len() == 32 => key.copy_from_slice(&bytes),
            _ => return Err(SignatureError::Mismatch),
        }
        let mut seen = crate::sync::lock(&self.seen);
        if seen.contains_key(&key) {
            return Err(SignatureError::Replayed);
        }
        if seen.len() >= REPLAY_MAX {
            // Outside the window a replay is refused as stale anyway.
            seen.retain(|_, at| now.abs_diff(*at) <= MAX_SKEW_SECONDS.unsigned_abs());
            if seen.len() >= REPLAY_MAX {
                let mut times: Vec<i64> = seen.values().copied().collect();
                times.sort_unstable();
                let median = times[times.len() / 2];
                seen.retain(|_, at| *at > median);
            }
        }
        seen.insert(key, timestamp);
        Ok(())
    }
}

/// Verifies one request and refuses a replay of one verified before.
pub fn check(
    secret: &str,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: i64,
    guard: &ReplayGuard,
) -> Result<(), SignatureError> {
    let (Some(timestamp), Some(signature)) = (timestamp, signature) else {
        return Err(SignatureError::Missing);
    };
    verify(secret, timestamp, signature, body, now)?;
    let ts = timestamp
        .trim()
        .parse()
        .map_err(|_| SignatureError::BadTimestamp)?;
    guard.first_time(signature, ts, now)
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

    /// Slack's own worked example ("Verifying requests from Slack").
    #[test]
    fn slacks_documented_example_verifies() {
        let secret = "8f742231b10e8888abcd99yyyzzz85a5";
        let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        let expected = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";
        assert_eq!(sign(secret, 1_531_420_618, body), expected);
        assert_eq!(
            verify(secret, "1531420618", expected, body, 1_531_420_700),
            Ok(())
        );
    }

    #[test]
    fn a_request_is_accepted_once() {
        let guard = ReplayGuard::default();
        let signature = sign("secret", 1_000, b"a=1");
        let check = |sig: Option<&str>| check("secret", Some("1000"), sig, b"a=1", 1_010, &guard);
        assert_eq!(check(Some(&signature)), Ok(()));
        assert_eq!(check(Some(&signature)), Err(SignatureError::Replayed));
        assert_eq!(check(None), Err(SignatureError::Missing));
        let other = sign("secret", 1_001, b"a=1");
        assert_eq!(
            super::check("secret", Some("1001"), Some(&other), b"a=1", 1_010, &guard),
            Ok(())
        );
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
