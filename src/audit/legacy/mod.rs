//! The original (Python) SustainBot's audit log: checking its lines the way it hashed them, and
//! anchoring a verified file in our chain with one `genesis` record (see `docs/audit-format.md`,
//! "The original's audit log").
//!
//! The original wrote one JSON object per run with a last member `integrity_hash`: the bare hex
//! SHA-256 of `json.dumps(record_without_hash, sort_keys=True, default=str)` over its in-memory
//! record. In memory the timestamp was a `datetime`, which `default=str` wrote with a space between
//! date and time, while the line has it in ISO form with a `T`. So a line verifies when its other
//! members, with the timestamp's `T` turned back into a space, re-encoded as Python does
//! ([`pyjson`]), hash to the stated value. Such a hash has no key and no chain: anyone can edit a
//! line and re-hash it. What makes an old file trustworthy from then on is its digest on our
//! chain, which `import-legacy` writes.

pub mod pyjson;

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::Path;

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use self::pyjson::{PyStr, PyValue};
use super::query::{for_each, Filter};

/// The `legacy_format` of a `genesis` record that anchors the original's audit log.
pub const LEGACY_FORMAT: &str = "sustainbot-python-jsonl";

/// What one verified line of the original's log states.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyLine {
    /// The timestamp as the line has it (ISO form, UTC without an offset as the original wrote it).
    pub timestamp: String,
    /// The stated (and verified) `integrity_hash`: 64 lower-case hex digits.
    pub integrity_hash: String,
}

/// Checks one line of the original's log (without its newline): JSON, an `integrity_hash` of 64
/// lower-case hex digits, a `timestamp` in `datetime.isoformat()` form, and the hash itself.
pub fn check_line(line: &[u8]) -> Result<LegacyLine, String> {
    let text = std::str::from_utf8(line).map_err(|_| "not UTF-8 text".to_owned())?;
    let value = pyjson::parse(text).map_err(|e| format!("not JSON: {e}"))?;
    let PyValue::Object(mut members) = value else {
        return Err("not a JSON object".to_owned());
    };
    let stated = take(&mut members, "integrity_hash")
        .and_then(|v| text_of(&v))
        .filter(|h| h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        .ok_or("no integrity_hash of 64 lower-case hex digits")?;
    let timestamp = members
        .iter_mut()
        .find(|(k, _)| k.is("timestamp"))
        .map(|(_, v)| v)
        .ok_or("no timestamp")?;
    let written = text_of(timestamp).unwrap_or_default();
    let hashed = hashed_timestamp(&written)
        .ok_or("timestamp is not in the original's form (datetime.isoformat())")?;
    *timestamp = PyValue::Str(PyStr::from_text(&hashed));
    let mut encoded = String::with_capacity(line.len() + line.len() / 4);
    pyjson::dumps_sorted(&PyValue::Object(members), &mut encoded);
    if hex::encode(Sha256::digest(encoded.as_bytes())) != stated {
        return Err("integrity_hash does not match the line (the line was edited)".to_owned());
    }
    Ok(LegacyLine {
        timestamp: written,
        integrity_hash: stated,
    })
}

fn take(members: &mut Vec<(PyStr, PyValue)>, name: &str) -> Option<PyValue> {
    let at = members.iter().position(|(k, _)| k.is(name))?;
    Some(members.remove(at).1)
}

fn text_of(value: &PyValue) -> Option<String> {
    match value {
        PyValue::Str(s) => s.to_text(),
        _ => None,
    }
}

/// The timestamp as the original hashed it (`str(datetime)`), from the line's form
/// (`datetime.isoformat()`): `YYYY-MM-DDTHH:MM:SS`, then `.ffffff` unless the microseconds are 0,
/// then for an aware time its offset `+HH:MM` (`:SS[.ffffff]` when not whole minutes). The two
/// forms differ only in the separator: `T` in the line, a space in the hash. `None` for any other
/// text (the original never wrote one).
pub fn hashed_timestamp(written: &str) -> Option<String> {
    let mut rest = written.as_bytes();
    if !eat(&mut rest, b"9999-99-99T99:99:99") {
        return None;
    }
    eat(&mut rest, b".999999");
    if eat(&mut rest, b"S99:99") && eat(&mut rest, b":99") {
        eat(&mut rest, b".999999");
    }
    rest.is_empty()
        .then(|| format!("{} {}", &written[..10], &written[11..]))
}

/// Takes `pattern` off the front of `rest` if it is there (`9`: an ASCII digit, `S`: `+` or `-`,
/// anything else: itself).
fn eat(rest: &mut &[u8], pattern: &[u8]) -> bool {
    let found = rest.get(..pattern.len()).is_some_and(|part| {
        part.iter().zip(pattern).all(|(&t, &p)| match p {
            b'9' => t.is_ascii_digit(),
            b'S' => t == b'+' || t == b'-',
            _ => t == p,
        })
    });
    if found {
        *rest = &rest[pattern.len()..];
    }
    found
}

/// The verdict on a whole file of the original's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LegacyReport {
    /// Lines that verified (before the problem, if any).
    pub lines: u64,
    /// `sha256:` + hex SHA-256 of every byte of the file (what a `genesis` record anchors).
    pub sha256: String,
    pub first_timestamp: Option<String>,
    pub last_timestamp: Option<String>,
    /// The last verified line's `integrity_hash`.
    pub last_integrity_hash: Option<String>,
    /// The first bad line (1-based) and why.
    pub problem: Option<LegacyProblem>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LegacyProblem {
    pub line: u64,
    pub message: String,
}

impl LegacyReport {
    pub fn is_valid(&self) -> bool {
        self.problem.is_none()
    }
}

/// Verifies every line read from `reader`, stopping at the first bad one, and digests every byte
/// (past a bad line too, so the digest is always that of the whole input).
pub fn verify_reader(mut reader: impl BufRead) -> io::Result<LegacyReport> {
    let mut digest = Sha256::new();
    let mut report = LegacyReport {
        lines: 0,
        sha256: String::new(),
        first_timestamp: None,
        last_timestamp: None,
        last_integrity_hash: None,
        problem: None,
    };
    let mut line = Vec::with_capacity(4096);
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        digest.update(&line);
        let verdict = match line.strip_suffix(b"\n") {
            Some(content) => check_line(content),
            None => Err("no final newline (the last line is torn or was cut)".to_owned()),
        };
        match verdict {
            Ok(checked) => {
                report.lines += 1;
                if report.first_timestamp.is_none() {
                    report.first_timestamp = Some(checked.timestamp.clone());
                }
                report.last_timestamp = Some(checked.timestamp);
                report.last_integrity_hash = Some(checked.integrity_hash);
            }
            Err(message) => {
                report.problem = Some(LegacyProblem {
                    line: report.lines + 1,
                    message,
                });
                let mut rest = Vec::new();
                reader.read_to_end(&mut rest)?;
                digest.update(&rest);
                break;
            }
        }
    }
    report.sha256 = format!("sha256:{}", hex::encode(digest.finalize()));
    Ok(report)
}

/// [`verify_reader`] over the file at `path`.
pub fn verify_file(path: &Path) -> io::Result<LegacyReport> {
    verify_reader(BufReader::with_capacity(256 * 1024, File::open(path)?))
}

/// A `genesis` record of our chain that anchors an old file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Anchor {
    pub seq: u64,
    pub source: String,
    pub lines: u64,
    pub imported_at: String,
}

/// The first `genesis` record in the chain at `chain` (active file or directory) that anchors a
/// file whose digest is `sha256` (`sha256:<hex>`).
pub fn find_anchor(chain: &Path, sha256: &str) -> io::Result<Option<Anchor>> {
    let filter = Filter {
        kind: Some("genesis".to_owned()),
        ..Filter::default()
    };
    let mut found = None;
    for_each(chain, &filter, &mut |record: Value| {
        if found.is_some() || record["sha256"] != sha256 || record["legacy_format"] != LEGACY_FORMAT
        {
            return;
        }
        let text = |name: &str| record[name].as_str().unwrap_or_default().to_owned();
        found = Some(Anchor {
            seq: record["seq"].as_u64().unwrap_or_default(),
            source: text("source"),
            lines: record["lines"].as_u64().unwrap_or_default(),
            imported_at: text("imported_at"),
        });
    })?;
    Ok(found)
}

#[cfg(test)]
mod tests;
