//! The step's output streams: read to their end, kept up to the cap, shown redacted.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::workflow::redact::{replace_ranges, secret_ranges};

/// Read size for the output pipes.
const CHUNK: usize = 16 * 1024;

/// One output stream: the first `keep` bytes, and how many there were in all.
pub(super) struct Capture {
    bytes: Vec<u8>,
    keep: usize,
    total: usize,
}

impl Capture {
    pub(super) fn new(keep: usize) -> Capture {
        Capture {
            bytes: Vec::new(),
            keep,
            total: 0,
        }
    }

    fn push(&mut self, chunk: &[u8]) {
        self.total = self.total.saturating_add(chunk.len());
        let room = self.keep.saturating_sub(self.bytes.len()).min(chunk.len());
        self.bytes
            .extend_from_slice(chunk.get(..room).unwrap_or_default());
    }

    /// Lossy UTF-8, redacted, at most `max` bytes; and whether anything was cut.
    ///
    /// `keep` includes a look-ahead of (longest secret - 1) bytes past `max`, so every secret that
    /// starts inside the visible part is seen whole and redacted; text past the visible part is
    /// dropped before redaction can shift it forward, so no fragment of a secret is ever shown.
    pub(super) fn render(&self, max: usize, secrets: &[String]) -> (String, bool) {
        let text = String::from_utf8_lossy(&self.bytes);
        let mut truncated = self.total > max;
        let limit = if text.len() > max {
            truncated = true;
            floor_char_boundary(&text, max)
        } else {
            text.len()
        };
        let mut shown = replace_ranges(&text, &secret_ranges(&text, secrets), limit);
        if shown.len() > max {
            shown.truncate(floor_char_boundary(&shown, max));
            truncated = true;
        }
        (shown, truncated)
    }
}

/// Reads a pipe to its end (or first error) into `capture`, never stopping early for the cap.
pub(super) async fn drain<R: AsyncRead + Unpin>(pipe: Option<R>, capture: &mut Capture) {
    let Some(mut pipe) = pipe else { return };
    let mut buf = vec![0u8; CHUNK];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) => return,
            Ok(n) => capture.push(buf.get(..n).unwrap_or_default()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// Longest secret length - 1: how far past the cap a secret starting inside it can reach.
pub(super) fn lookahead(secrets: &[String]) -> usize {
    secrets
        .iter()
        .map(String::len)
        .max()
        .unwrap_or(0)
        .saturating_sub(1)
}

/// The largest char boundary of `s` that is <= `index`.
fn floor_char_boundary(s: &str, index: usize) -> usize {
    let mut i = index.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}
