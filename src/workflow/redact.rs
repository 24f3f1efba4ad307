//! Secrets replaced by [`REDACTED`] wherever a step's text is shown.

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
pub(super) fn secret_ranges(text: &str, secrets: &[String]) -> Vec<(usize, usize)> {
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
pub(super) fn replace_ranges(text: &str, ranges: &[(usize, usize)], limit: usize) -> String {
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
