//! A run's trace id: the client's `X-Trace-ID` (checked once, where it enters) or a new UUID v4.
//! It names the run in `/runs`, in approvals, on the audit record and in every log line. Its
//! OpenTelemetry counterpart (W3C trace context, exported spans) is in [`otel`].

mod conventions;
pub mod otel;

use std::fmt;

/// Longest client-supplied trace id accepted.
pub const MAX_TRACE_ID: usize = 128;

/// Why a client's trace id is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("X-Trace-ID must be 1 to {MAX_TRACE_ID} visible ASCII characters")]
pub struct InvalidTraceId;

/// A valid trace id: 1 to 128 visible ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TraceId(String);

impl TraceId {
    pub fn parse(text: &str) -> Result<TraceId, InvalidTraceId> {
        let ok = !text.is_empty()
            && text.len() <= MAX_TRACE_ID
            && text.bytes().all(|b| b.is_ascii_graphic());
        ok.then(|| TraceId(text.to_owned())).ok_or(InvalidTraceId)
    }

    /// A new random id (UUID v4).
    pub fn random() -> TraceId {
        TraceId(uuid::Uuid::new_v4().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trace_id_is_one_to_128_visible_ascii_characters() {
        assert!(TraceId::parse("run-1").is_ok());
        assert!(TraceId::parse(&"x".repeat(MAX_TRACE_ID)).is_ok());
        for bad in ["", "a b", "é", "tab\t", &"x".repeat(MAX_TRACE_ID + 1)] {
            assert_eq!(TraceId::parse(bad), Err(InvalidTraceId), "{bad:?}");
        }
        assert_ne!(TraceId::random(), TraceId::random());
    }
}
