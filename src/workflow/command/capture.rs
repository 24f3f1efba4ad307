//! The step's output streams: read to their end, kept up to the cap, shown redacted.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::workflow::redact::OutputLimits;

/// Read size for the output pipes.
const CHUNK: usize = 16 * 1024;

/// One output stream: the first `keep` bytes, and how many there were in all.
pub(super) struct Capture {
    bytes: Vec<u8>,
    keep: usize,
    total: usize,
}

impl Capture {
    /// Keeps what `limits` may show (see [`OutputLimits::keep`]).
    pub(super) fn new(limits: &OutputLimits) -> Capture {
        Capture {
            bytes: Vec::new(),
            keep: limits.keep(),
            total: 0,
        }
    }

    fn push(&mut self, chunk: &[u8]) {
        self.total = self.total.saturating_add(chunk.len());
        let room = self.keep.saturating_sub(self.bytes.len()).min(chunk.len());
        self.bytes
            .extend_from_slice(chunk.get(..room).unwrap_or_default());
    }

    /// The stream as `limits` may show it, and whether anything was cut.
    pub(super) fn render(&self, limits: &OutputLimits) -> (String, bool) {
        limits.render(&self.bytes, self.total > self.bytes.len())
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
