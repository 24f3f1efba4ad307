//! Verifies an audit log without trusting the server that wrote it (the rule is
//! `docs/audit-format.md`).
//!
//! A log is its rotated segments plus the active file, read in order as one chain. Hashing and
//! parsing are independent per line, so large files are split into byte ranges at line boundaries
//! and verified on all cores; only the links between ranges are checked in order. With a public key,
//! every checkpoint's signature is checked too, which is what defeats a rewrite that re-hashes
//! every line.

use std::borrow::Cow;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::checkpoint::PublicKey;
use super::format::{self, GENESIS_HASH};
use super::segments;

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

/// The verdict on a run of consecutive lines, not yet linked to what came before.
#[derive(Default)]
struct Segment {
    /// Lines that verified (up to the problem).
    lines: u64,
    /// seq and prev_hash of the first line, to link to the previous segment.
    first: Option<(u64, String)>,
    last_seq: u64,
    last_hash: String,
    checkpoints: u64,
    last_checkpoint: Option<u64>,
    anchors: Vec<(u64, String)>,
    /// A problem inside the segment: 0-based line index within it, and the message.
    problem: Option<(u64, String)>,
}

fn verify_segment(
    mut reader: impl BufRead,
    limit: u64,
    key: Option<&PublicKey>,
) -> io::Result<Segment> {
    let mut segment = Segment::default();
    let mut line = Vec::with_capacity(4096);
    let mut consumed = 0u64;
    while consumed < limit {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 {
            break;
        }
        consumed += n as u64;
        let verdict = check_line(&line, key).and_then(|checked| {
            match &segment.first {
                None => segment.first = Some((checked.seq, checked.prev_hash.clone())),
                Some(_) => check_link(
                    checked.seq,
                    &checked.prev_hash,
                    segment.last_seq.saturating_add(1),
                    &segment.last_hash,
                )?,
            }
            Ok(checked)
        });
        match verdict {
            Ok(checked) => {
                segment.lines += 1;
                segment.last_seq = checked.seq;
                segment.last_hash = checked.hash;
                if let Some(covered) = checked.checkpoint {
                    segment.checkpoints += 1;
                    segment.last_checkpoint = Some(covered);
                }
                segment.anchors.extend(checked.anchor);
            }
            Err(message) => {
                segment.problem = Some((segment.lines, message));
                break;
            }
        }
    }
    Ok(segment)
}

/// A byte range of one file of the log.
struct Range {
    file: usize,
    start: u64,
    end: u64,
}

/// Links segments in order into one report. `files` names the files the ranges index.
fn stitch(segments: Vec<(usize, Segment)>, files: &[PathBuf], key: Option<&PublicKey>) -> Report {
    let mut report = Report {
        records: 0,
        first_seq: 1,
        head_seq: 0,
        head_hash: GENESIS_HASH.to_owned(),
        checkpoints: 0,
        last_checkpoint_seq: None,
        files: files.len(),
        problem: None,
        unfinished_tail_bytes: 0,
    };
    let anchors: Vec<(u64, String)> = segments
        .iter()
        .flat_map(|(_, s)| s.anchors.iter().cloned())
        .collect();
    let mut lines_in_file = vec![0u64; files.len()];
    let problem = |file: usize, line: u64, message: String| Problem {
        file: files.get(file).cloned(),
        line,
        message,
    };
    for (index, (file, segment)) in segments.into_iter().enumerate() {
        let base = lines_in_file[file];
        if let Some((seq, prev)) = &segment.first {
            if index == 0 && *seq != 1 {
                // A log that no longer starts at 1 must be anchored by a retention record.
                if anchors
                    .iter()
                    .any(|(through, hash)| through.checked_add(1) == Some(*seq) && hash == prev)
                {
                    report.first_seq = *seq;
                    report.head_seq = *seq - 1;
                    report.head_hash = prev.clone();
                } else {
                    let message = format!("the log starts at seq {seq} but no retention record names the records before it");
                    report.problem = Some(problem(file, 1, message));
                    return report;
                }
            }
            if let Err(message) = check_link(
                *seq,
                prev,
                report.head_seq.saturating_add(1),
                &report.head_hash,
            ) {
                report.problem = Some(problem(file, base + 1, message));
                return report;
            }
            report.records += segment.lines;
            report.head_seq = segment.last_seq;
            report.head_hash = segment.last_hash;
            report.checkpoints += segment.checkpoints;
            report.last_checkpoint_seq = segment.last_checkpoint.or(report.last_checkpoint_seq);
            lines_in_file[file] += segment.lines;
        }
        if let Some((index, message)) = segment.problem {
            report.problem = Some(problem(file, base + index + 1, message));
            return report;
        }
    }
    if key.is_some() && report.records > 0 && report.checkpoints == 0 {
        let last = files.len().saturating_sub(1);
        let message = "no signed checkpoint: nothing in this log is proven by the key".to_owned();
        report.problem = Some(problem(
            last,
            lines_in_file.get(last).copied().unwrap_or(0),
            message,
        ));
    }
    report
}

/// Verifies a log read from `reader` on this thread (chain only).
pub fn verify_reader(reader: impl BufRead) -> io::Result<Report> {
    // One unnamed input: problems name no file.
    let mut report = stitch(
        vec![(0, verify_segment(reader, u64::MAX, None)?)],
        &[PathBuf::new()],
        None,
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
    let files: Vec<PathBuf> = if path.is_dir() || path.exists() {
        segments::log_files(path)?
            .into_iter()
            .map(|s| s.path)
            .collect()
    } else {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{} does not exist", path.display()),
        ));
    };
    verify_files(
        &files,
        PARALLEL_THRESHOLD,
        workers,
        options.public_key.as_ref(),
        options.live,
    )
}

/// Verifies `files` as one chain, splitting any file of at least `threshold` bytes into `workers`
/// ranges.
fn verify_files(
    files: &[PathBuf],
    threshold: u64,
    workers: u64,
    key: Option<&PublicKey>,
    live: bool,
) -> io::Result<Report> {
    let mut ranges = Vec::new();
    let mut unfinished = 0;
    for (index, path) in files.iter().enumerate() {
        let mut file = File::open(path)?;
        let mut len = file.metadata()?.len();
        if live && index + 1 == files.len() {
            let complete = complete_lines_end(&mut file, len)?;
            unfinished = len - complete;
            len = complete;
        }
        let mut starts = vec![0u64];
        if len >= threshold && workers > 1 {
            for k in 1..workers {
                let from = (len * k / workers).max(*starts.last().unwrap_or(&0));
                if let Some(start) = next_line_start(&mut file, from)? {
                    if start < len && start > *starts.last().unwrap_or(&0) {
                        starts.push(start);
                    }
                }
            }
        }
        for (i, &start) in starts.iter().enumerate() {
            let end = starts.get(i + 1).copied().unwrap_or(len);
            ranges.push(Range {
                file: index,
                start,
                end,
            });
        }
    }
    let results: Vec<io::Result<Segment>> = std::thread::scope(|scope| {
        let handles: Vec<_> = ranges
            .iter()
            .map(|range| {
                let path = &files[range.file];
                scope.spawn(move || -> io::Result<Segment> {
                    let mut file = File::open(path)?;
                    file.seek(SeekFrom::Start(range.start))?;
                    verify_segment(
                        BufReader::with_capacity(1 << 20, file),
                        range.end - range.start,
                        key,
                    )
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(io::Error::other("verifier thread panicked")))
            })
            .collect()
    });
    let mut segments = Vec::with_capacity(results.len());
    for (range, result) in ranges.iter().zip(results) {
        segments.push((range.file, result?));
    }
    let mut report = stitch(segments, files, key);
    report.unfinished_tail_bytes = unfinished;
    Ok(report)
}

/// The offset just after the last `\n` in the first `len` bytes of `file` (0 when there is none).
fn complete_lines_end(file: &mut File, len: u64) -> io::Result<u64> {
    let mut end = len;
    let mut chunk = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(chunk.len() as u64);
        let part = &mut chunk[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(part)?;
        if let Some(i) = part.iter().rposition(|&b| b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

/// The offset just after the first `\n` at or after `from`, if any.
fn next_line_start(file: &mut File, from: u64) -> io::Result<Option<u64>> {
    file.seek(SeekFrom::Start(from))?;
    let mut reader = BufReader::with_capacity(64 * 1024, Read::by_ref(file));
    let mut skipped = Vec::new();
    let n = reader.read_until(b'\n', &mut skipped)?;
    Ok(skipped.ends_with(b"\n").then_some(from + n as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::format::encode_line;

    fn write_log(path: &Path, n: u64) -> Vec<String> {
        let mut prev = GENESIS_HASH.to_owned();
        let mut lines = Vec::new();
        for seq in 1..=n {
            let mut fields = serde_json::Map::new();
            fields.insert("seq".into(), seq.into());
            fields.insert("prev_hash".into(), prev.clone().into());
            fields.insert("kind".into(), "run".into());
            fields.insert("note".into(), "x".repeat((seq % 7) as usize).into());
            let (line, hash) = encode_line(fields);
            lines.push(String::from_utf8(line).unwrap());
            prev = hash;
        }
        std::fs::write(path, lines.concat()).unwrap();
        lines
    }

    fn both(path: &Path) -> (Report, Report) {
        let files = [path.to_owned()];
        (
            verify_files(&files, u64::MAX, 1, None, false).unwrap(),
            verify_files(&files, 0, 5, None, false).unwrap(),
        )
    }

    #[test]
    fn parallel_and_sequential_verification_agree_on_a_good_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jsonl");
        write_log(&path, 500);
        let (one, many) = both(&path);
        assert!(one.is_valid());
        assert_eq!(one, many);
        assert_eq!(many.records, 500);
    }

    #[test]
    fn parallel_and_sequential_verification_name_the_same_bad_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jsonl");
        let lines = write_log(&path, 500);
        for bad in [0usize, 1, 99, 100, 101, 250, 333, 499] {
            // edited
            let mut edited = lines.clone();
            edited[bad] = edited[bad].replace("\"run\"", "\"nur\"");
            std::fs::write(&path, edited.concat()).unwrap();
            let (one, many) = both(&path);
            assert_eq!(one.problem.as_ref().map(|p| p.line), Some(bad as u64 + 1));
            assert_eq!(one, many, "edited line {bad}");
            // deleted
            let mut deleted = lines.clone();
            deleted.remove(bad);
            std::fs::write(&path, deleted.concat()).unwrap();
            let (one, many) = both(&path);
            if bad < 499 {
                assert_eq!(
                    one.problem.as_ref().map(|p| p.line),
                    Some(bad as u64 + 1),
                    "deleted {bad}"
                );
            } else {
                assert!(
                    one.is_valid(),
                    "deleting the last line leaves a valid shorter chain"
                );
            }
            assert_eq!(one, many, "deleted line {bad}");
        }
        let mut torn = lines.concat();
        torn.pop();
        std::fs::write(&path, torn).unwrap();
        let (one, many) = both(&path);
        assert_eq!(one.problem.as_ref().map(|p| p.line), Some(500));
        assert_eq!(one, many);
    }

    #[test]
    fn a_live_log_leaves_out_a_line_being_written_and_counts_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jsonl");
        let lines = write_log(&path, 10);
        let mut partial = lines.concat().into_bytes();
        let half = lines[9].len() / 2;
        partial.truncate(partial.len() - half);
        std::fs::write(&path, &partial).unwrap();
        let offline = verify_path(&path).unwrap();
        assert!(offline
            .problem
            .as_ref()
            .is_some_and(|p| p.message.starts_with("torn line")));
        let live = VerifyOptions {
            public_key: None,
            live: true,
        };
        let report = verify_log(&path, &live).unwrap();
        assert!(report.is_valid(), "{report:?}");
        assert_eq!(report.head_seq, 9);
        assert_eq!(report.unfinished_tail_bytes, (lines[9].len() - half) as u64);
        // Complete lines only: nothing is left out.
        std::fs::write(&path, lines.concat()).unwrap();
        let whole = verify_log(&path, &live).unwrap();
        assert_eq!((whole.head_seq, whole.unfinished_tail_bytes), (10, 0));
        // A file with no complete line at all.
        std::fs::write(&path, &lines[0].as_bytes()[..5]).unwrap();
        let none = verify_log(&path, &live).unwrap();
        assert_eq!((none.records, none.unfinished_tail_bytes), (0, 5));
    }

    #[test]
    fn a_reader_verifies_like_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jsonl");
        let lines = write_log(&path, 20);
        let report = verify_reader(std::io::Cursor::new(lines.concat())).unwrap();
        assert!(report.is_valid() && report.records == 20 && report.files == 1);
        let mut edited = lines.clone();
        edited[4] = edited[4].replace("\"run\"", "\"nur\"");
        let report = verify_reader(std::io::Cursor::new(edited.concat())).unwrap();
        let problem = report.problem.expect("detected");
        assert_eq!((problem.file, problem.line), (None, 5));
        assert!(verify_reader(std::io::Cursor::new("")).unwrap().is_valid());
    }

    #[test]
    fn an_empty_log_is_valid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jsonl");
        std::fs::write(&path, "").unwrap();
        let (one, many) = both(&path);
        assert!(one.is_valid() && one == many && one.records == 0);
    }

    #[test]
    fn a_repeated_chain_member_is_refused() {
        let body = br#"{"prev_hash":"sha256:0000000000000000000000000000000000000000000000000000000000000000","seq":1,"seq":1}"#;
        let mut line = body[..body.len() - 1].to_vec();
        line.extend_from_slice(
            format!(",\"integrity_hash\":\"{}\"}}\n", &format::hash_body(body)).as_bytes(),
        );
        assert!(check_line(&line, None).is_err());
    }
}
