//! Verifies an audit log without trusting the server that wrote it (the rule is
//! `docs/audit-format.md`).
//!
//! Hashing and parsing are independent per line, so a large file is split into byte ranges at line
//! boundaries and verified on all cores; only the links between ranges are checked in order.

use std::borrow::Cow;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::format::{self, GENESIS_HASH};

/// Files smaller than this are verified on one thread.
const PARALLEL_THRESHOLD: u64 = 8 * 1024 * 1024;

/// The first thing wrong with a log: its 1-based line number and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub line: u64,
    pub message: String,
}

/// The result of verifying a whole log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Records that verified (before the problem, if any).
    pub records: u64,
    pub head_seq: u64,
    pub head_hash: String,
    pub problem: Option<Problem>,
}

impl Report {
    pub fn is_valid(&self) -> bool {
        self.problem.is_none()
    }
}

/// The two chain members of a BODY (the rest is covered by the hash and skipped, though still parsed
/// for well-formedness). A repeated `seq` or `prev_hash` is refused.
#[derive(Deserialize)]
struct Link<'a> {
    seq: Option<serde_json::Value>,
    #[serde(borrow)]
    prev_hash: Option<Cow<'a, str>>,
}

/// What one line states, once its own hash checked out.
struct Checked {
    seq: u64,
    prev_hash: String,
    hash: String,
}

/// Checks one line (with its newline) on its own: shape, JSON, and its hash. Links are checked by
/// the caller.
fn check_line(line: &[u8]) -> Result<Checked, String> {
    let Some(line) = line.strip_suffix(b"\n") else {
        return Err("torn line: no final newline (the writer stopped mid-line)".to_owned());
    };
    let (body, stated) = format::split_line(line).map_err(|e| e.to_string())?;
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
    Ok(Checked {
        seq,
        prev_hash,
        hash: stated,
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
struct Segment {
    /// Lines that verified (up to the problem).
    lines: u64,
    /// seq and prev_hash of the first line, to link to the previous segment.
    first: Option<(u64, String)>,
    last_seq: u64,
    last_hash: String,
    /// A problem inside the segment: 0-based line index within it, and the message.
    problem: Option<(u64, String)>,
}

fn verify_segment(mut reader: impl BufRead, limit: u64) -> io::Result<Segment> {
    let mut segment = Segment {
        lines: 0,
        first: None,
        last_seq: 0,
        last_hash: String::new(),
        problem: None,
    };
    let mut line = Vec::with_capacity(4096);
    let mut consumed = 0u64;
    while consumed < limit {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 {
            break;
        }
        consumed += n as u64;
        let verdict = check_line(&line).and_then(|checked| {
            match &segment.first {
                None => segment.first = Some((checked.seq, checked.prev_hash.clone())),
                Some(_) => check_link(
                    checked.seq,
                    &checked.prev_hash,
                    segment.last_seq + 1,
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
            }
            Err(message) => {
                segment.problem = Some((segment.lines, message));
                break;
            }
        }
    }
    Ok(segment)
}

/// Links segments in order into one report.
fn stitch(segments: impl IntoIterator<Item = Segment>) -> Report {
    let mut report = Report {
        records: 0,
        head_seq: 0,
        head_hash: GENESIS_HASH.to_owned(),
        problem: None,
    };
    for segment in segments {
        let base = report.records;
        if let Some((seq, prev)) = &segment.first {
            if let Err(message) = check_link(*seq, prev, report.head_seq + 1, &report.head_hash) {
                report.problem = Some(Problem {
                    line: base + 1,
                    message,
                });
                return report;
            }
            report.records += segment.lines;
            report.head_seq = segment.last_seq;
            report.head_hash = segment.last_hash;
        }
        if let Some((index, message)) = segment.problem {
            report.problem = Some(Problem {
                line: base + index + 1,
                message,
            });
            return report;
        }
    }
    report
}

/// Verifies a log read from `reader` on this thread.
pub fn verify_reader(reader: impl BufRead) -> io::Result<Report> {
    Ok(stitch([verify_segment(reader, u64::MAX)?]))
}

/// Verifies the log at `path`, on all cores when it is large.
pub fn verify_path(path: &Path) -> io::Result<Report> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(16) as u64;
    verify_file(path, PARALLEL_THRESHOLD, workers)
}

/// Verifies `path` in `workers` ranges when it is at least `threshold` bytes long.
fn verify_file(path: &Path, threshold: u64, workers: u64) -> io::Result<Report> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    if len < threshold || workers <= 1 {
        return verify_reader(BufReader::with_capacity(1 << 20, file));
    }
    // Range starts: just after the first newline at or past each even split point.
    let mut starts = vec![0u64];
    for k in 1..workers {
        let guess = len * k / workers;
        if let Some(start) = next_line_start(&mut file, guess.max(*starts.last().unwrap_or(&0)))? {
            if start < len && start > *starts.last().unwrap_or(&0) {
                starts.push(start);
            }
        }
    }
    let mut ranges: Vec<(u64, u64)> = starts.windows(2).map(|w| (w[0], w[1])).collect();
    ranges.push((*starts.last().unwrap_or(&0), len));
    let segments: Vec<io::Result<Segment>> = std::thread::scope(|scope| {
        let handles: Vec<_> = ranges
            .iter()
            .map(|&(start, end)| {
                scope.spawn(move || -> io::Result<Segment> {
                    let mut file = File::open(path)?;
                    file.seek(SeekFrom::Start(start))?;
                    verify_segment(BufReader::with_capacity(1 << 20, file), end - start)
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
    let segments: io::Result<Vec<Segment>> = segments.into_iter().collect();
    Ok(stitch(segments?))
}

/// The offset just after the first `\n` at or after `from`, if any.
fn next_line_start(file: &mut File, from: u64) -> io::Result<Option<u64>> {
    file.seek(SeekFrom::Start(from))?;
    let mut reader = BufReader::with_capacity(64 * 1024, file.by_ref());
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
        (
            verify_file(path, u64::MAX, 1).unwrap(),
            verify_file(path, 0, 5).unwrap(),
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
        assert!(check_line(&line).is_err());
    }
}
