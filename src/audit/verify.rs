//! Verifies an audit log without trusting the server that wrote it.

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::Path;

use serde::Serialize;
use serde_json::{Map, Value};

use super::format::{self, GENESIS_HASH};

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

/// Verifies the log at `path`.
pub fn verify_path(path: &Path) -> io::Result<Report> {
    verify_reader(BufReader::with_capacity(1 << 20, File::open(path)?))
}

/// Verifies a log read from `reader`: every line well formed, its hash right, `seq` counting up from
/// 1 and `prev_hash` naming the line before (the genesis value for the first).
pub fn verify_reader(mut reader: impl BufRead) -> io::Result<Report> {
    let mut report = Report {
        records: 0,
        head_seq: 0,
        head_hash: GENESIS_HASH.to_owned(),
        problem: None,
    };
    let mut line = Vec::with_capacity(4096);
    let mut number = 0u64;
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Ok(report);
        }
        number += 1;
        if let Err(message) = check_line(&line, &report) {
            report.problem = Some(Problem {
                line: number,
                message,
            });
            return Ok(report);
        }
        report.records += 1;
        report.head_seq += 1;
        // check_line proved the stated hash right; recompute cheaply from the suffix.
        report.head_hash = stated_hash(&line);
    }
}

fn stated_hash(line: &[u8]) -> String {
    let line = &line[..line.len() - 1];
    format::split_line(line).map(|(_, h)| h).unwrap_or_default()
}

fn check_line(line: &[u8], head: &Report) -> Result<(), String> {
    let Some(line) = line.strip_suffix(b"\n") else {
        return Err("torn line: no final newline (the writer stopped mid-line)".to_owned());
    };
    let (body, stated) = format::split_line(line).map_err(|e| e.to_string())?;
    let fields: Map<String, Value> =
        serde_json::from_slice(&body).map_err(|e| format!("not a JSON object: {e}"))?;
    let expected_seq = head.head_seq + 1;
    match fields.get("seq").and_then(Value::as_u64) {
        Some(seq) if seq == expected_seq => {}
        Some(seq) => {
            return Err(format!(
            "seq is {seq}, expected {expected_seq} (a record was deleted, reordered or inserted)"
        ))
        }
        None => return Err("seq missing or not a whole number".to_owned()),
    }
    match fields.get("prev_hash").and_then(Value::as_str) {
        Some(prev) if prev == head.head_hash => {}
        Some(_) => {
            return Err("prev_hash does not match the previous record's integrity_hash".to_owned())
        }
        None => return Err("prev_hash missing".to_owned()),
    }
    if format::hash_body(&body) != stated {
        return Err("integrity_hash does not match the record (the record was edited)".to_owned());
    }
    Ok(())
}
