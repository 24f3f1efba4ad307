//! Reading a log file at its ends: the first and last complete lines, a torn tail, and what a line
//! states about the chain (for the store's recovery and rotation).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{Map, Value};

use super::format;
use super::jsonl::ChainHead;

/// The seq and hash a complete line states (checking its own hash), and its UTC day.
pub(crate) fn line_facts(line: &[u8]) -> Option<(ChainHead, NaiveDate)> {
    let (body, stated) = format::split_line(line).ok()?;
    if format::hash_body(&body) != stated {
        return None;
    }
    let fields: Map<String, Value> = serde_json::from_slice(&body).ok()?;
    let day = fields
        .get("timestamp")
        .and_then(Value::as_str)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map_or_else(
            || Utc::now().date_naive(),
            |t| t.with_timezone(&Utc).date_naive(),
        );
    let head = ChainHead {
        seq: fields.get("seq")?.as_u64()?,
        hash: stated,
    };
    Some((head, day))
}

pub(crate) fn line_timestamp(line: &[u8]) -> Option<DateTime<Utc>> {
    let (body, _) = format::split_line(line).ok()?;
    let fields: Map<String, Value> = serde_json::from_slice(&body).ok()?;
    let text = fields.get("timestamp")?.as_str()?;
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

pub(super) fn read_at(file: &mut File, offset: u64, len: u64) -> io::Result<Vec<u8>> {
    let mut buf = vec![0; usize::try_from(len).map_err(io::Error::other)?];
    file.seek(SeekFrom::Start(offset))?;
    file.read_exact(&mut buf)?;
    Ok(buf)
}

/// The last complete line of a file of `len` bytes ending in a newline (without the newline).
pub(super) fn last_line(file: &mut File, len: u64) -> io::Result<Vec<u8>> {
    if len == 0 {
        return Ok(Vec::new());
    }
    let start = rfind_newline(file, len - 1)?.map_or(0, |nl| nl + 1);
    read_at(file, start, len - 1 - start)
}

/// The first line of a file (without the newline).
pub(super) fn first_line(file: &mut File) -> io::Result<Vec<u8>> {
    file.seek(SeekFrom::Start(0))?;
    let mut reader = io::BufReader::new(Read::by_ref(file));
    let mut line = Vec::new();
    io::BufRead::read_until(&mut reader, b'\n', &mut line)?;
    if line.ends_with(b"\n") {
        line.pop();
    }
    Ok(line)
}

/// Offset of the last `\n` strictly before `end`, scanning backwards in chunks.
pub(super) fn rfind_newline(file: &mut File, end: u64) -> io::Result<Option<u64>> {
    const CHUNK: u64 = 64 * 1024;
    let mut hi = end;
    while hi > 0 {
        let lo = hi.saturating_sub(CHUNK);
        let chunk = read_at(file, lo, hi - lo)?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            return Ok(Some(lo + i as u64));
        }
        hi = lo;
    }
    Ok(None)
}
