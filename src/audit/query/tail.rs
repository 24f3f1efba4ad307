//! The last records of a log: its files read backwards from the end, newest first.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use serde_json::Value;

use super::matcher::Facts;
use super::{listing_changed, MAX_RELISTS};
use crate::audit::segments;

/// Chunk read from the end when reading a file backwards.
pub(super) const BACK_CHUNK: u64 = 64 * 1024;

/// The last `n` records of the log (fewer when it holds fewer), oldest first. Reads the files
/// backwards from the end, so it costs the same on a small log and a huge one.
pub fn tail(path: &Path, n: usize) -> io::Result<Vec<Value>> {
    Ok(tail_lines(path, n)?
        .iter()
        .filter_map(|line| serde_json::from_slice(line).ok())
        .collect())
}

/// [`tail`], returning the lines as they are in the log (with their newlines).
pub fn tail_lines(path: &Path, n: usize) -> io::Result<Vec<Vec<u8>>> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let mut relists = 0;
    'listing: loop {
        let files = segments::log_files(path)?;
        // Newest first while collecting.
        let mut newest_first: Vec<(u64, Vec<u8>)> = Vec::with_capacity(n.min(4096));
        for file in files.iter().rev() {
            let handle = match File::open(&file.path) {
                Ok(handle) => handle,
                Err(e) if e.kind() == io::ErrorKind::NotFound && relists < MAX_RELISTS => {
                    relists += 1;
                    continue 'listing;
                }
                Err(e) => return Err(e),
            };
            // The oldest record collected so far: this file must end just before it.
            let boundary = newest_first.last().map(|(seq, _)| *seq);
            let mut last_of_file = true;
            let mut lines = BackwardLines::new(handle)?;
            while let Some(line) = lines.next_line()? {
                let Some(seq) = Facts::parse(&line).map(|facts| facts.seq) else {
                    continue;
                };
                if last_of_file {
                    last_of_file = false;
                    let gap = boundary.is_some_and(|oldest| seq.saturating_add(1) != oldest);
                    if gap && relists < MAX_RELISTS {
                        // A file was rotated in between since we listed: list again.
                        relists += 1;
                        continue 'listing;
                    }
                }
                newest_first.push((seq, line));
                if newest_first.len() >= n {
                    break;
                }
            }
            if newest_first.len() >= n {
                break;
            }
        }
        if relists < MAX_RELISTS && listing_changed(path, &files)? {
            relists += 1;
            continue 'listing;
        }
        return Ok(newest_first
            .into_iter()
            .rev()
            .map(|(_, line)| line)
            .collect());
    }
}

/// Reads the complete lines of a file from the last to the first, ignoring an unfinished final
/// line (no newline yet).
struct BackwardLines {
    file: File,
    /// File offset of `buffer[0]`.
    pos: u64,
    /// Bytes `[pos, pos + buffer.len())` not yet returned; ends with `\n` once trimmed.
    buffer: Vec<u8>,
    trimmed: bool,
}

impl BackwardLines {
    fn new(mut file: File) -> io::Result<BackwardLines> {
        let len = file.seek(SeekFrom::End(0))?;
        Ok(BackwardLines {
            file,
            pos: len,
            buffer: Vec::new(),
            trimmed: false,
        })
    }

    /// Reads the chunk before `pos` in front of the buffer; false at the start of the file.
    fn read_more(&mut self) -> io::Result<bool> {
        if self.pos == 0 {
            return Ok(false);
        }
        let from = self.pos.saturating_sub(BACK_CHUNK);
        let mut chunk = vec![0; (self.pos - from) as usize];
        self.file.seek(SeekFrom::Start(from))?;
        self.file.read_exact(&mut chunk)?;
        chunk.extend_from_slice(&self.buffer);
        self.buffer = chunk;
        self.pos = from;
        Ok(true)
    }

    /// The previous complete line, with its newline.
    fn next_line(&mut self) -> io::Result<Option<Vec<u8>>> {
        while !self.trimmed {
            // Drop whatever follows the last newline: a line still being written.
            if let Some(nl) = self.buffer.iter().rposition(|&b| b == b'\n') {
                self.buffer.truncate(nl + 1);
                self.trimmed = true;
            } else {
                self.buffer.clear();
                if !self.read_more()? {
                    return Ok(None);
                }
            }
        }
        loop {
            if self.buffer.is_empty() {
                if !self.read_more()? {
                    return Ok(None);
                }
                continue;
            }
            let body = &self.buffer[..self.buffer.len() - 1];
            if let Some(nl) = body.iter().rposition(|&b| b == b'\n') {
                let line = self.buffer.split_off(nl + 1);
                return Ok(Some(line));
            }
            if !self.read_more()? {
                return Ok(Some(std::mem::take(&mut self.buffer)));
            }
        }
    }
}
