//! The audit log as `audit verify` and the store's recovery read it: the chain verifier on whole
//! files, and the line parser on each line.

use std::io::Cursor;

use crate::audit::format::split_line;
use crate::audit::lines::{line_facts, line_timestamp};
use crate::audit::verify::{verify_path, verify_reader, Report};

fn verify(bytes: &[u8]) -> Report {
    verify_reader(Cursor::new(bytes)).expect("reading from memory cannot fail")
}

/// Whatever a file holds, verification answers (a report, valid or naming a line) and the line
/// parser answers for every line.
#[test]
fn verifier_and_line_parser_answer_every_log() {
    super::fuzz("audit_log", |bytes| {
        let report = verify(bytes);
        let lines = bytes.split(|&b| b == b'\n').count() as u64;
        if let Some(problem) = &report.problem {
            assert!(problem.line >= 1 && problem.line <= lines, "{problem:?}");
        }
        for line in bytes.split(|&b| b == b'\n') {
            let _ = split_line(line);
            let _ = line_facts(line);
            let _ = line_timestamp(line);
        }
    });
}

/// A real log (written by the server: runs, a refusal, signed checkpoints) verifies; with any one
/// bit flipped it fails at the line holding that bit, from memory and from a file alike.
#[test]
fn verifier_finds_every_flipped_bit_of_a_real_log() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    let log = super::corpus("audit_log")
        .into_iter()
        .find(|(path, _)| path.ends_with("real.jsonl"))
        .expect("fuzz/corpus/audit_log/real.jsonl")
        .1;
    let report = verify(&log);
    assert!(report.is_valid() && report.records >= 8, "{report:?}");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("audit.jsonl");
    let cases = match std::env::var("FUZZ_SECONDS") {
        Ok(_) => 20_000,
        Err(_) => 500,
    };
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    let flips = (0..log.len(), 0..8u8);
    TestRunner::new(config)
        .run(&flips, |(at, bit)| {
            let mut flipped = log.clone();
            flipped[at] ^= 1 << bit;
            let line = 1 + log[..at].iter().filter(|&&b| b == b'\n').count() as u64;
            let report = verify(&flipped);
            let problem = report.problem.as_ref().map(|p| p.line);
            prop_assert_eq!(problem, Some(line), "{:?}", report);
            std::fs::write(&path, &flipped).expect("write");
            let from_file = verify_path(&path).expect("verify file");
            prop_assert_eq!(from_file.problem.as_ref().map(|p| p.line), problem);
            prop_assert_eq!(from_file.records, report.records);
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
}
