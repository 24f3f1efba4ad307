//! Fuzz targets that run on stable Rust as part of `cargo test`: one per parser that reads what a
//! client, a file or another process wrote (see `docs/security.md`, "Fuzzing").
//!
//! Each target first replays its committed seed corpus (`fuzz/corpus/<target>/`, real inputs and
//! every crash ever found), then feeds the parser inputs made by proptest: a seed with up to a dozen
//! byte-level mutations (bit flips, interesting bytes, inserted syntax tokens, deletions,
//! duplications, splices with another seed, truncation) or plain random bytes. A panic, or a
//! broken property, fails the test with the shrunk input, also written to
//! `target/fuzz-crashes/<target>-<hash>`; a crash fixed becomes a regression test by moving that
//! file into the target's corpus.
//!
//! The default run is short (`FUZZ_CASES` inputs per target, 1,000 unless set);
//! `FUZZ_SECONDS=N` fuzzes each target for N seconds instead.

mod audit_log;
mod filter;
mod governance_request;
mod legacy_audit;
mod slack_form;
mod slack_signature;
mod template;
mod workflow_definition;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};

/// Inputs per target when `FUZZ_SECONDS` is not set.
const DEFAULT_CASES: u32 = 1_000;

/// Syntax that the parsers under test give meaning to; a random byte rarely makes one.
const TOKENS: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b":",
    b",",
    b"\\",
    b"\\u",
    b"\\ud800",
    b"\\udc00",
    b"\\u0000",
    b"null",
    b"true",
    b"-",
    b"-0",
    b"1e999",
    b"-1e-999",
    b"18446744073709551616",
    b"0.1",
    b"NaN",
    b"Infinity",
    b"\n",
    b"\r\n",
    b"\t",
    b" ",
    b"  - ",
    b": ",
    b"---",
    b"&a",
    b"*a",
    b"!!str ",
    b"? ",
    b"|",
    b">-",
    b"#",
    b"{{",
    b"}}",
    b"{{ parameters.",
    b"{{ steps.",
    b".output }}",
    b"{{ secrets.",
    b"{{ server.url }}",
    b"%",
    b"%FF",
    b"%00",
    b"+",
    b"&",
    b"=",
    b"v0=",
    b"sha256:",
    b"\xc3\xa9",
    b"\xe2\x80\x8b",
    b"\xd1\x95",
    b"\xef\xbc\xb3",
    b"\xf0\x9f\x8c\xb1",
    b"\xcc\x81",
    b"\xff",
    b"\xed\xa0\x80",
    b"\"seq\":",
    b"\"prev_hash\":",
    b"\"integrity_hash\":",
    b"\"workflow_name\":",
    b"\"aim\":",
    b"\"steps\":",
    b"\"kind\":\"checkpoint\"",
];

/// One edit of a seed. Positions are taken modulo the input's length, so every edit applies.
#[derive(Debug, Clone)]
enum Mutation {
    FlipBit {
        at: usize,
        bit: u8,
    },
    SetByte {
        at: usize,
        byte: u8,
    },
    InsertToken {
        at: usize,
        token: usize,
    },
    Repeat {
        at: usize,
        token: usize,
        times: usize,
    },
    Delete {
        at: usize,
        len: usize,
    },
    Duplicate {
        from: usize,
        len: usize,
        to: usize,
    },
    Splice {
        at: usize,
        seed: usize,
        from: usize,
        len: usize,
    },
    Truncate {
        at: usize,
    },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<usize>(), 0..8u8).prop_map(|(at, bit)| Mutation::FlipBit { at, bit }),
        2 => (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::SetByte { at, byte }),
        4 => (any::<usize>(), 0..TOKENS.len())
            .prop_map(|(at, token)| Mutation::InsertToken { at, token }),
        1 => (any::<usize>(), 0..TOKENS.len(), 2..1_000usize)
            .prop_map(|(at, token, times)| Mutation::Repeat { at, token, times }),
        2 => (any::<usize>(), 1..64usize).prop_map(|(at, len)| Mutation::Delete { at, len }),
        1 => (any::<usize>(), 1..64usize, any::<usize>())
            .prop_map(|(from, len, to)| Mutation::Duplicate { from, len, to }),
        1 => (any::<usize>(), any::<usize>(), any::<usize>(), 1..256usize)
            .prop_map(|(at, seed, from, len)| Mutation::Splice { at, seed, from, len }),
        1 => any::<usize>().prop_map(|at| Mutation::Truncate { at }),
    ]
}

/// `at` as a position in an input of `len` bytes (`0..=len`).
fn place(at: usize, len: usize) -> usize {
    at % (len + 1)
}

fn apply(input: &mut Vec<u8>, mutation: &Mutation, seeds: &[Vec<u8>]) {
    let len = input.len();
    match *mutation {
        Mutation::FlipBit { at, bit } if len > 0 => input[at % len] ^= 1 << bit,
        Mutation::SetByte { at, byte } if len > 0 => input[at % len] = byte,
        Mutation::FlipBit { .. } | Mutation::SetByte { .. } => {}
        Mutation::InsertToken { at, token } => {
            let at = place(at, len);
            input.splice(at..at, TOKENS[token].iter().copied());
        }
        Mutation::Repeat { at, token, times } => {
            let at = place(at, len);
            let repeated = TOKENS[token].repeat(times);
            input.splice(at..at, repeated);
        }
        Mutation::Delete { at, len: n } => {
            let at = place(at, len);
            input.drain(at..(at + n).min(len));
        }
        Mutation::Duplicate { from, len: n, to } => {
            let from = place(from, len);
            let copy = input[from..(from + n).min(len)].to_vec();
            let to = place(to, len);
            input.splice(to..to, copy);
        }
        Mutation::Splice {
            at,
            seed,
            from,
            len: n,
        } => {
            let other = &seeds[seed % seeds.len()];
            let from = place(from, other.len());
            let piece = other[from..(from + n).min(other.len())].to_vec();
            let at = place(at, len);
            input.splice(at..at, piece);
        }
        Mutation::Truncate { at } => input.truncate(place(at, len)),
    }
}

/// Inputs for one target: mostly mutated seeds, some random bytes.
fn inputs(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    let count = seeds.len();
    let mutated = (0..count, vec(mutation(), 1..12)).prop_map(move |(seed, mutations)| {
        let mut input = seeds[seed].clone();
        for mutation in &mutations {
            apply(&mut input, mutation, &seeds);
        }
        input
    });
    prop_oneof![9 => mutated, 1 => vec(any::<u8>(), 0..512)]
}

/// The committed seed corpus of `target`, sorted by file name.
pub(crate) fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .map(|entry| entry.expect("corpus entry").path())
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "corpus {} is empty", dir.display());
    paths
        .into_iter()
        .map(|path| {
            let bytes = std::fs::read(&path).expect("corpus file");
            (path, bytes)
        })
        .collect()
}

/// How long each target runs.
enum Budget {
    Cases(u32),
    Time(Duration),
}

fn budget() -> Budget {
    let number = |name: &str| {
        std::env::var(name)
            .ok()
            .map(|v| v.parse::<u64>().unwrap_or_else(|_| panic!("{name}={v}")))
    };
    match (number("FUZZ_SECONDS"), number("FUZZ_CASES")) {
        (Some(seconds), _) => Budget::Time(Duration::from_secs(seconds)),
        (None, Some(cases)) => Budget::Cases(u32::try_from(cases).unwrap_or(u32::MAX)),
        (None, None) => Budget::Cases(DEFAULT_CASES),
    }
}

/// Replays `target`'s corpus through `check`, then fuzzes it within the budget. `check` states the
/// target's property with assertions; a panic anywhere in it is a crash.
pub(crate) fn fuzz(target: &str, check: impl Fn(&[u8])) {
    let corpus = corpus(target);
    for (path, bytes) in &corpus {
        if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(bytes)))
        {
            eprintln!("fuzz {target}: seed {} fails", path.display());
            std::panic::resume_unwind(panic);
        }
    }
    let seeds: Vec<Vec<u8>> = corpus.into_iter().map(|(_, bytes)| bytes).collect();
    let run = |cases: u32| {
        let config = Config {
            cases,
            failure_persistence: None,
            max_shrink_time: 60_000,
            ..Config::default()
        };
        let result = TestRunner::new(config).run(&inputs(seeds.clone()), |input| {
            check(&input);
            Ok::<(), TestCaseError>(())
        });
        if let Err(error) = result {
            report(target, error);
        }
    };
    match budget() {
        Budget::Cases(cases) => run(cases),
        Budget::Time(limit) => {
            let start = Instant::now();
            while start.elapsed() < limit {
                run(256);
            }
        }
    }
}

/// Saves the shrunk failing input where `docs/security.md` says, and fails the test.
fn report(target: &str, error: TestError<Vec<u8>>) -> ! {
    match error {
        TestError::Fail(reason, input) => {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fuzz-crashes");
            let name = format!(
                "{target}-{}",
                &crate::audit::format::sha256_tagged(&input)[7..23]
            );
            let saved = std::fs::create_dir_all(&dir)
                .and_then(|()| std::fs::write(dir.join(&name), &input))
                .map(|()| dir.join(&name).display().to_string())
                .unwrap_or_else(|e| format!("(not saved: {e})"));
            panic!(
                "fuzz {target}: {reason}\ninput ({} bytes, saved as {saved}): {:?}",
                input.len(),
                String::from_utf8_lossy(&input)
            );
        }
        TestError::Abort(reason) => panic!("fuzz {target}: aborted: {reason}"),
    }
}
