//! Verifies an audit log without trusting the server that wrote it (the rule is
//! `docs/audit-format.md`).
//!
//! A log is its rotated segments plus the active file, read in order as one chain. Hashing and
//! parsing are independent per line, so large files are split into byte ranges at line boundaries
//! and verified on all cores; only the links between ranges are checked in order. With a public key,
//! every checkpoint's signature is checked too, which is what defeats a rewrite that re-hashes
//! every line.

mod chunks;
mod ranges;

use std::borrow::Cow;
use std::io::{self, BufRead};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::checkpoint::PublicKey;
use super::format;
use super::segments;

pub use self::chunks::{verify_chunks, verify_log_in_chunks};
use self::ranges::{stitch, verify_files, verify_segment};

/// Files smaller than this are verified on one thread.
const PARALLEL_THRESHOLD: u64 = 8 * 1024 * 1024;

/// The first thing wrong with a log: where (file and 1-based line in it) and what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub file: Option<PathBuf>,
    pub line: u64,
    pub message: String,
}

/// The result of verifying a whole log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Records that verified (before the problem, if any).
    pub records: u64,
    /// The seq the log starts at: 1, or later when a retention record names what was removed.
    pub first_seq: u64,
    pub head_seq: u64,
    pub head_hash: String,
    /// Checkpoints seen (with a public key: checkpoints whose signature verified).
    pub checkpoints: u64,
    /// The seq the last checkpoint covers: with a public key, everything up to it is proven.
    pub last_checkpoint_seq: Option<u64>,
    pub files: usize,
    pub problem: Option<Problem>,
    /// With [`VerifyOptions::live`]: bytes after the active file's last complete line, left out
    /// (a write in progress).
    #[serde(skip_serializing_if = "is_zero")]
    pub unfinished_tail_bytes: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Report {
    pub fn is_valid(&self) -> bool {
        self.problem.is_none()
    }
}

/// What to check beyond the chain.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Check every checkpoint's signature against this key, and require at least one checkpoint.
    pub public_key: Option<PublicKey>,
    /// The log is being written (the server verifying its own log): an unfinished last line of the
    /// active file is a write in progress, left out and counted, not a torn line.
    pub live: bool,
}

/// Verification reads the whole log on every core: one at a time (HTTP and Slack alike), the
/// others wait their turn.
pub static VERIFYING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

/// BODYs nested deeper than this are invalid (the server's own request parser stops at 128).
pub const MAX_DEPTH: usize = 512;

/// The chain members of a BODY, and the members of checkpoint and retention records (the rest is
/// covered by the hash and skipped, though still parsed for well-formedness). A member name that
/// appears twice at the top level makes the BODY invalid.
#[derive(Default)]
struct Link<'a> {
    seq: Option<serde_json::Value>,
    prev_hash: Option<Cow<'a, str>>,
    kind: Option<Cow<'a, str>>,
    covered_seq: Option<u64>,
    covered_hash: Option<Cow<'a, str>>,
    signed_at: Option<Cow<'a, str>>,
    public_key: Option<Cow<'a, str>>,
    signature: Option<Cow<'a, str>>,
    removed_through_seq: Option<u64>,
    removed_last_hash: Option<Cow<'a, str>>,
    /// Of a `genesis` record (read whatever their type, and judged only for that kind).
    lines: Option<serde_json::Value>,
    sha256: Option<serde_json::Value>,
}

impl<'de: 'a, 'a> Deserialize<'de> for Link<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visitor<'a> {
            type Value = Link<'a>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut map: M,
            ) -> Result<Link<'a>, M::Error> {
                use serde::de::Error;
                let mut link = Link::default();
                let mut seen: Vec<Cow<'de, str>> = Vec::with_capacity(16);
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    if seen.contains(&key) {
                        return Err(M::Error::custom(format!("member {key:?} appears twice")));
                    }
                    match key.as_ref() {
                        "seq" => link.seq = Some(map.next_value()?),
                        "prev_hash" => link.prev_hash = map.next_value()?,
                        "kind" => link.kind = map.next_value()?,
                        "covered_seq" => link.covered_seq = map.next_value()?,
                        "covered_hash" => link.covered_hash = map.next_value()?,
                        "signed_at" => link.signed_at = map.next_value()?,
                        "public_key" => link.public_key = map.next_value()?,
                        "signature" => link.signature = map.next_value()?,
                        "removed_through_seq" => link.removed_through_seq = map.next_value()?,
                        "removed_last_hash" => link.removed_last_hash = map.next_value()?,
                        "lines" => link.lines = Some(map.next_value()?),
                        "sha256" => link.sha256 = Some(map.next_value()?),
                        _ => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                    seen.push(key);
                }
                Ok(link)
            }
        }
        deserializer.deserialize_map(Visitor(std::marker::PhantomData))
    }
}

/// How deeply `body` nests arrays and objects (strings skipped).
fn depth(body: &[u8]) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &b in body {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// What one line states, once its own hash (and signature, if any) checked out.
struct Checked {
    seq: u64,
    prev_hash: String,
    hash: String,
    /// For a checkpoint: the seq it covers.
    checkpoint: Option<u64>,
    /// For a retention record: the last removed seq and hash.
    anchor: Option<(u64, String)>,
}

/// Checks one line (with its newline) on its own: shape, JSON, its hash, and for a checkpoint its
/// link to the record before and its signature. Links between lines are checked by the caller.
fn check_line(line: &[u8], key: Option<&PublicKey>) -> Result<Checked, String> {
    let Some(line) = line.strip_suffix(b"\n") else {
        return Err("torn line: no final newline (the writer stopped mid-line)".to_owned());
    };
    if std::str::from_utf8(line).is_err() {
        return Err("not UTF-8 text".to_owned());
    }
    let (body, stated) = format::split_line(line).map_err(|e| e.to_string())?;
    if depth(&body) > MAX_DEPTH {
        return Err(format!("nested deeper than {MAX_DEPTH} levels"));
    }
    let link: Link<'_> =
        serde_json::from_slice(&body).map_err(|e| format!("not a JSON object: {e}"))?;
    let seq = link
        .seq
        .as_ref()
        .and_then(serde_json::Value::as_u64)
        .ok_or("seq missing or not a whole number")?;
    let prev_hash = link.prev_hash.ok_or("prev_hash missing")?.into_owned();
    if format::hash_body(&body) != stated {
        return Err("integrity_hash does not match the record (the record was edited)".to_owned());
    }
    let mut checkpoint = None;
    let mut anchor = None;
    match link.kind.as_deref() {
        Some("checkpoint") => {
            let covered_seq = link.covered_seq.ok_or("checkpoint without covered_seq")?;
            let covered_hash = link
                .covered_hash
                .as_deref()
                .ok_or("checkpoint without covered_hash")?;
            if covered_seq.checked_add(1) != Some(seq) || covered_hash != prev_hash {
                return Err("checkpoint does not cover the record before it".to_owned());
            }
            if let Some(key) = key {
                if link.public_key.as_deref() != Some(key.hex().as_str()) {
                    return Err("checkpoint signed by another key".to_owned());
                }
                let signed_at = link.signed_at.as_deref().unwrap_or_default();
                let signature = link.signature.as_deref().unwrap_or_default();
                if !key.verifies(covered_seq, covered_hash, signed_at, signature) {
                    return Err(
                        "checkpoint signature does not verify (the log was rewritten)".to_owned(),
                    );
                }
            }
            checkpoint = Some(covered_seq);
        }
        Some("retention") => {
            let through = link
                .removed_through_seq
                .ok_or("retention record without removed_through_seq")?;
            let hash = link
                .removed_last_hash
                .ok_or("retention record without removed_last_hash")?;
            anchor = Some((through, hash.into_owned()));
        }
        Some("genesis") => {
            let lines = link.lines.as_ref().and_then(serde_json::Value::as_u64);
            if lines.is_none_or(|n| n == 0) {
                return Err("genesis record without lines (a whole number, at least 1)".to_owned());
            }
            let digest = link.sha256.as_ref().and_then(serde_json::Value::as_str);
            if !digest.is_some_and(is_tagged_sha256) {
                return Err("genesis record without sha256 (sha256: and 64 hex digits)".to_owned());
            }
        }
        _ => {}
    }
    Ok(Checked {
        seq,
        prev_hash,
        hash: stated,
        checkpoint,
        anchor,
    })
}

/// `sha256:` followed by 64 lower-case hex digits.
fn is_tagged_sha256(text: &str) -> bool {
    text.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

fn check_link(
    seq: u64,
    prev_hash: &str,
    expected_seq: u64,
    expected_prev: &str,
) -> Result<(), String> {
    if seq != expected_seq {
        return Err(format!(
            "seq is {seq}, expected {expected_seq} (a record was deleted, reordered or inserted)"
        ));
    }
    if prev_hash != expected_prev {
        return Err("prev_hash does not match the previous record's integrity_hash".to_owned());
    }
    Ok(())
}

/// Verifies a log read from `reader` on this thread (chain only).
pub fn verify_reader(reader: impl BufRead) -> io::Result<Report> {
    verify_reader_with(reader, &VerifyOptions::default())
}

/// [`verify_reader`] with options: with a public key, every checkpoint's signature is checked and
/// at least one checkpoint is required, as for files.
pub fn verify_reader_with(reader: impl BufRead, options: &VerifyOptions) -> io::Result<Report> {
    let key = options.public_key.as_ref();
    // One unnamed input: problems name no file.
    let mut report = stitch(
        vec![(0, verify_segment(reader, u64::MAX, key)?)],
        &[PathBuf::new()],
        key,
    );
    if let Some(problem) = &mut report.problem {
        problem.file = None;
    }
    Ok(report)
}

/// Verifies the log at `path` (its active file, or the directory holding it), with every rotated
/// segment, on all cores when it is large.
pub fn verify_path(path: &Path) -> io::Result<Report> {
    verify_log(path, &VerifyOptions::default())
}

/// [`verify_path`] with options (a public key for checkpoints).
pub fn verify_log(path: &Path, options: &VerifyOptions) -> io::Result<Report> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(16) as u64;
    if !(path.is_dir() || path.exists()) {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{} does not exist", path.display()),
        ));
    }
    let list = || -> io::Result<Vec<PathBuf>> {
        Ok(segments::log_files(path)?
            .into_iter()
            .map(|s| s.path)
            .collect())
    };
    // A running server may rotate while the files are read: the active file read is then a newer
    // one than the list said, and the chain seems to lose records. A finding is reported only when
    // the set of files did not change under the reading; otherwise the log is read again.
    let mut files = list()?;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let verified = verify_files(
            &files,
            PARALLEL_THRESHOLD,
            workers,
            options.public_key.as_ref(),
            options.live,
        );
        let last = attempts >= ROTATION_RETRIES;
        match verified {
            Ok(report) if report.problem.is_none() || last => return Ok(report),
            // The active file is briefly absent while it is renamed into a segment.
            Err(e) if e.kind() != io::ErrorKind::NotFound || last => return Err(e),
            Ok(report) => {
                let now = list()?;
                if now == files {
                    return Ok(report);
                }
                files = now;
            }
            Err(_) => files = list()?,
        }
    }
}

/// How many times verification reads the log again when it rotated under the reading.
const ROTATION_RETRIES: usize = 5;

#[cfg(test)]
mod tests;
