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

/// Every form a secret's value may come back in, for redaction: as it is; JSON-escaped (also with
/// `\/`, and with every character as a `\uXXXX` escape, in either case of hex); percent-encoded
/// (the reserved characters, or every byte, in either case of hex); base64 (standard and URL-safe,
/// with and without padding, and the part that does not depend on where in a longer base64 text
/// the secret began); and hex in either case. A step's echo in any of them is redacted.
pub fn forms(secret: &str) -> Vec<String> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    use base64::Engine;
    let mut forms = vec![secret.to_owned()];
    let mut add = |form: String| {
        if !form.is_empty() && !forms.contains(&form) {
            forms.push(form);
        }
    };
    let json = serde_json::to_string(secret).unwrap_or_default();
    let json = json
        .strip_prefix('"')
        .and_then(|j| j.strip_suffix('"'))
        .unwrap_or(secret)
        .to_owned();
    add(json.replace('/', "\\/"));
    add(json);
    let mut unicode_lower = String::new();
    for unit in secret.encode_utf16() {
        unicode_lower.push_str(&format!("\\u{unit:04x}"));
    }
    add(unicode_lower.to_uppercase().replace("\\U", "\\u"));
    add(unicode_lower);
    let reserved = |c: u8| !(c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~'));
    let percent = |every: bool, lower: bool| {
        let mut out = String::new();
        for &b in secret.as_bytes() {
            if every || reserved(b) {
                if lower {
                    out.push_str(&format!("%{b:02x}"));
                } else {
                    out.push_str(&format!("%{b:02X}"));
                }
            } else {
                out.push(char::from(b));
            }
        }
        out
    };
    for (every, lower) in [(false, false), (false, true), (true, false), (true, true)] {
        add(percent(every, lower));
    }
    let bytes = secret.as_bytes();
    for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
        add(engine.encode(bytes));
    }
    // Inside a longer base64 text the secret may start at any of three byte offsets: the
    // characters that encode only its own bytes are the same whatever came before.
    if bytes.len() >= 6 {
        for offset in 1..3usize {
            let mut shifted = vec![0u8; offset];
            shifted.extend_from_slice(bytes);
            let encoded = STANDARD_NO_PAD.encode(&shifted);
            // Skip the characters mixed with the prefix, and the last group (mixed with what follows).
            let skip = (offset * 8).div_ceil(6);
            let keep = encoded.len().saturating_sub(4);
            if keep > skip + 4 {
                let inner = &encoded[skip..keep];
                add(inner.to_owned());
                add(inner.replace('+', "-").replace('/', "_"));
            }
        }
    }
    add(hex::encode(bytes));
    add(hex::encode_upper(bytes));
    forms
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
    fn every_encoding_a_step_may_echo_a_secret_in_is_redacted() {
        use base64::Engine;
        let secret = "s3cr3t/Value+42";
        let forms = forms(secret);
        let b64 = base64::engine::general_purpose::STANDARD.encode(secret);
        let embedded = base64::engine::general_purpose::STANDARD.encode(format!("xy{secret}tail"));
        let unicode: String = secret
            .chars()
            .map(|c| format!("\\u{:04x}", c as u32))
            .collect();
        for echoed in [
            secret.to_owned(),
            "s3cr3t%2fValue%2b42".to_owned(),
            "s3cr3t%2FValue%2B42".to_owned(),
            unicode.clone(),
            unicode.to_uppercase().replace("\\U", "\\u"),
            b64,
            hex::encode(secret),
            hex::encode_upper(secret),
        ] {
            let text = format!("before {echoed} after");
            let shown = redact(&text, &forms);
            assert_eq!(shown, "before [REDACTED] after", "{echoed}");
        }
        // Inside a longer base64 text, wherever the secret began.
        let shown = redact(&embedded, &forms);
        assert!(shown.contains(REDACTED), "{embedded} -> {shown}");
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
