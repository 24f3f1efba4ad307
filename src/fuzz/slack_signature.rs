//! Slack's request signature (`X-Slack-Signature`, `X-Slack-Request-Timestamp`) and the replay
//! guard. An input is the timestamp header, a newline, the signature header, a newline, the body.

use crate::slack::signature::{check, sign, verify, ReplayGuard, SignatureError};

/// The secret the corpus was signed with, and the clock it was signed at.
const SECRET: &str = "fuzz-signing-secret";
const NOW: i64 = 1_767_225_600;

/// Any headers and body are accepted or refused without a panic; an accepted request is refused
/// the second time; Slack's own signature of the body verifies, and with any one bit of the body
/// flipped it does not.
#[test]
fn signature_check_accepts_only_what_was_signed() {
    super::fuzz("slack_signature", |bytes| {
        let mut parts = bytes.splitn(3, |&b| b == b'\n');
        let timestamp = String::from_utf8_lossy(parts.next().unwrap_or_default());
        let signature = String::from_utf8_lossy(parts.next().unwrap_or_default());
        let body = parts.next().unwrap_or_default();

        let guard = ReplayGuard::default();
        let first = check(
            SECRET,
            Some(&timestamp),
            Some(&signature),
            body,
            NOW,
            &guard,
        );
        if first.is_ok() {
            let second = check(
                SECRET,
                Some(&timestamp),
                Some(&signature),
                body,
                NOW,
                &guard,
            );
            assert!(
                matches!(second, Err(SignatureError::Replayed)),
                "{second:?}"
            );
        }
        let _ = verify(SECRET, &timestamp, &signature, body, NOW);

        let signed = sign(SECRET, NOW, body);
        let stamp = NOW.to_string();
        assert!(verify(SECRET, &stamp, &signed, body, NOW).is_ok());
        for at in [0, body.len() / 2, body.len().saturating_sub(1)] {
            if let Some(&byte) = body.get(at) {
                let mut forged = body.to_vec();
                forged[at] = byte ^ 1;
                let refused = verify(SECRET, &stamp, &signed, &forged, NOW);
                assert!(
                    matches!(refused, Err(SignatureError::Mismatch)),
                    "{refused:?}"
                );
            }
        }
        let late = verify(SECRET, &stamp, &signed, body, NOW + 301);
        assert!(matches!(late, Err(SignatureError::Stale)), "{late:?}");
    });
}
