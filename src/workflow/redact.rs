//! What a step may show of the text it gets back: secrets replaced by [`REDACTED`], and at most so
//! many bytes.

use std::fmt;

/// What every secret is replaced with.
pub const REDACTED: &str = "[REDACTED]";

/// Replaces every occurrence of every non-empty secret with "[REDACTED]" (longest secrets first).
///
/// Occurrences that overlap (of one secret or of several) are merged into a single `[REDACTED]`, so
/// no fragment of any secret survives; this is at least as strict as replacing longest first.
pub fn redact(text: &str, secrets: &[String]) -> String {
    replace_ranges(text, &secret_ranges(text, secrets), text.len())
}

/// Byte ranges (sorted, non-overlapping, on char boundaries) covered by any occurrence of any
/// non-empty secret; overlapping occurrences are merged.
fn secret_ranges(text: &str, secrets: &[String]) -> Vec<(usize, usize)> {
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        // Step one character past each match start so overlapping occurrences are found too.
        let step = secret.chars().next().map_or(1, char::len_utf8);
        let mut from = 0;
        while let Some(found) = text.get(from..).and_then(|rest| rest.find(secret.as_str())) {
            let start = from + found;
            ranges.push((start, start + secret.len()));
            from = start + step;
        }
    }
    ranges.sort_unstable();
    let mut merged: Vec<(usize, usize)> = Vec::with_capacity(ranges.len());
    for (start, end) in ranges {
        match merged.last_mut() {
            Some(last) if start < last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    merged
}

/// `text[..limit]` with each range that starts before `limit` replaced (whole) by [`REDACTED`].
fn replace_ranges(text: &str, ranges: &[(usize, usize)], limit: usize) -> String {
    let mut out = String::with_capacity(limit.min(text.len()));
    let mut pos = 0;
    for &(start, end) in ranges {
        if start >= limit {
            break;
        }
        out.push_str(text.get(pos..start).unwrap_or_default());
        out.push_str(REDACTED);
        pos = end;
    }
    if pos < limit {
        out.push_str(text.get(pos..limit).unwrap_or_default());
    }
    out
}

/// What a step may show of each text it gets back (an output stream, a response body, a model's
/// answer): at most `max_bytes`, with every secret of `redact` replaced by [`REDACTED`]. Set for
/// each run, never part of a definition.
#[derive(Clone, Default, PartialEq)]
pub struct OutputLimits {
    pub max_bytes: usize,
    /// Secret values (non-empty ones count).
    pub redact: Vec<String>,
}

/// Shows how many secrets there are, never the secrets.
impl fmt::Debug for OutputLimits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutputLimits")
            .field("max_bytes", &self.max_bytes)
            .field("redact", &format_args!("<{} secrets>", self.redact.len()))
            .finish()
    }
}

impl OutputLimits {
    /// `text` with every secret replaced (see [`redact`]).
    pub fn redact(&self, text: &str) -> String {
        redact(text, &self.redact)
    }

    /// How many bytes of a text to keep while reading it: `max_bytes`, and room past it for the
    /// longest secret less one byte, so that a secret starting inside the cap is seen whole.
    pub fn keep(&self) -> usize {
        let longest = self.redact.iter().map(String::len).max().unwrap_or(0);
        self.max_bytes.saturating_add(longest.saturating_sub(1))
    }

    /// The kept `bytes` of a text as lossy UTF-8, redacted, at most `max_bytes`; and whether
    /// anything was cut. `more`: the text went on past the kept bytes.
    ///
    /// `bytes` holds up to [`OutputLimits::keep`] bytes, so every secret that starts inside the
    /// visible part is seen whole and redacted; text past the visible part is dropped before
    /// redaction can shift it forward, so no fragment of a secret is ever shown.
    pub fn render(&self, bytes: &[u8], more: bool) -> (String, bool) {
        let max = self.max_bytes;
        let text = String::from_utf8_lossy(bytes);
        let mut truncated = more;
        let limit = if text.len() > max {
            truncated = true;
            floor_char_boundary(&text, max)
        } else {
            text.len()
        };
        let mut shown = replace_ranges(&text, &secret_ranges(&text, &self.redact), limit);
        if shown.len() > max {
            shown.truncate(floor_char_boundary(&shown, max));
            truncated = true;
        }
        (shown, truncated)
    }
}

/// At most `max` bytes of `text`, cut on a char boundary; and whether it was cut.
pub(super) fn cap(text: &str, max: usize) -> (String, bool) {
    if text.len() <= max {
        return (text.to_owned(), false);
    }
    let end = floor_char_boundary(text, max);
    (text.get(..end).unwrap_or_default().to_owned(), true)
}

/// The largest char boundary of `s` that is <= `index`.
fn floor_char_boundary(s: &str, index: usize) -> usize {
    let mut i = index.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn overlapping_secrets_are_replaced_whole() {
        assert_eq!(
            redact("pw=password123!", &secrets(&["password", "password123"])),
            "pw=[REDACTED]!"
        );
        assert_eq!(redact("abcd", &secrets(&["abc", "bcd"])), "[REDACTED]");
        assert_eq!(
            redact("a-b-a", &secrets(&["a", ""])),
            "[REDACTED]-b-[REDACTED]"
        );
        assert_eq!(redact("clé=ünï", &secrets(&["ünï"])), "clé=[REDACTED]");
        assert_eq!(redact("nothing", &secrets(&[""])), "nothing");
    }

    #[test]
    fn render_never_shows_a_fragment() {
        let limits = |max_bytes, redact: &[&str]| OutputLimits {
            max_bytes,
            redact: secrets(redact),
        };
        // Overlapping occurrences across the cut.
        let (shown, truncated) = limits(3, &["aa"]).render(b"baaab", false);
        assert!(truncated);
        assert!(!shown.contains('a'), "{shown}");
        let all = limits(10, &[]);
        assert_eq!(all.render(b"abc", false), ("abc".to_owned(), false));
        assert_eq!(all.render(b"abc", true), ("abc".to_owned(), true));
    }
}
