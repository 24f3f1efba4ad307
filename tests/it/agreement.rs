//! The two independent verifiers of the audit format must agree: `scripts/verify_audit.py` (written
//! from `docs/audit-format.md` alone) and `sustainbot audit verify` (plus the library's `verify_path`
//! it calls). Each tampered variant of a real log must get the same verdict and the same line number
//! from all of them.
//!
//! The variants are built from the spec, not from the server's code: a line is BODY without its final
//! `}`, then `,"integrity_hash":"sha256:<64 hex>"}` (92 bytes); the hash is SHA-256 of
//! `sustainbot-audit-v1\n` followed by BODY.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use sha2::{Digest, Sha256};
use sustainbot::audit::verify::verify_path;

use crate::helpers::{sustainbot, Finished, Settings, Site};

const GENESIS: &[u8] = b"sha256:0000000000000000000000000000000000000000000000000000000000000000";
/// `,"integrity_hash":"sha256:` + 64 hex + `"}`
const SUFFIX_LEN: usize = 92;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    Valid,
    /// The first bad line, 1-based.
    Invalid(u64),
    /// Anything else (a crash, an unreadable file, an unexpected output shape).
    Other(String),
}

/// `python3 scripts/verify_audit.py ARGS`.
fn python_verifier(args: &[&str]) -> Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/verify_audit.py");
    Command::new("python3")
        .arg(script)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            // Not a skip: CI has python3, and a verifier nobody runs is not a second opinion.
            panic!("python3 is required by this test and could not be run: {e}")
        })
}

/// `sustainbot audit verify ARGS`.
fn binary_verifier(args: &[&str]) -> Output {
    sustainbot().run(&[&["audit", "verify"], args].concat())
}

fn utf8(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}

/// A verifier's verdict on `path` from its output: exit 0 with stdout starting `ok`, or exit 1
/// with `FAILED <path>: line N: ...`.
fn verdict(output: &Output, path: &Path, ok: &str) -> Verdict {
    let stdout = output.stdout_text();
    match output.status.code() {
        Some(0) if stdout.starts_with(ok) => Verdict::Valid,
        Some(1) => stdout
            .strip_prefix(&format!("FAILED {}: line ", path.display()))
            .and_then(|rest| rest.split(':').next())
            .and_then(|n| n.parse().ok())
            .map_or_else(|| Verdict::Other(output.describe()), Verdict::Invalid),
        _ => Verdict::Other(output.describe()),
    }
}

/// `python3 scripts/verify_audit.py PATH`: exit 0 `OK ...`, or exit 1 `FAILED <path>: line N: ...`.
fn python(path: &Path) -> Verdict {
    verdict(&python_verifier(&[utf8(path)]), path, "OK ")
}

/// `sustainbot audit verify PATH`: exit 0 `OK <path>: ...`, or exit 1 `FAILED <path>: line N: ...`.
fn binary(path: &Path) -> Verdict {
    let ok = format!("OK {}: ", path.display());
    verdict(&binary_verifier(&[utf8(path)]), path, &ok)
}

/// The library's `verify_path`, which the binary wraps.
fn library(path: &Path) -> Verdict {
    match verify_path(path) {
        Ok(report) => match report.problem {
            None => Verdict::Valid,
            Some(problem) => Verdict::Invalid(problem.line),
        },
        Err(e) => Verdict::Other(format!("verify_path: {e}")),
    }
}

/// A real log from the `--run` command line: three successful runs of `noop` (started + success)
/// and one of a missing workflow (failure): 7 lines. Returns the lines without their newlines.
fn real_log(site: &Site) -> Vec<Vec<u8>> {
    for (workflow, code) in [("noop", 0), ("noop", 0), ("noop", 0), ("missing", 1)] {
        site.run_workflow(workflow).expect_exit(code);
    }
    let text = std::fs::read(site.audit()).unwrap();
    assert!(text.ends_with(b"\n"));
    let lines: Vec<Vec<u8>> = text[..text.len() - 1]
        .split(|&b| b == b'\n')
        .map(<[u8]>::to_vec)
        .collect();
    assert_eq!(lines.len(), 7, "{}", String::from_utf8_lossy(&text));
    lines
}

/// BODY of a line (without its newline): the line without the integrity member, closed again.
fn body(line: &[u8]) -> Vec<u8> {
    let mut body = line[..line.len() - SUFFIX_LEN].to_vec();
    body.push(b'}');
    body
}

/// `sha256:<hex>` over the domain tag and BODY.
fn hash(body: &[u8]) -> Vec<u8> {
    let digest = Sha256::new()
        .chain_update(b"sustainbot-audit-v1\n")
        .chain_update(body)
        .finalize();
    format!("sha256:{}", hex::encode(digest)).into_bytes()
}

/// The line for a BODY: the integrity member appended last.
fn seal(body: &[u8]) -> Vec<u8> {
    let mut line = body[..body.len() - 1].to_vec();
    line.extend_from_slice(b",\"integrity_hash\":\"");
    line.extend_from_slice(&hash(body));
    line.extend_from_slice(b"\"}");
    line
}

/// The hash a line states.
fn stated(line: &[u8]) -> &[u8] {
    &line[line.len() - 73..line.len() - 2]
}

fn replace(haystack: &[u8], from: &str, to: &str) -> Vec<u8> {
    let text = std::str::from_utf8(haystack).expect("UTF-8 line");
    assert!(text.contains(from), "{from:?} not in {text}");
    text.replacen(from, to, 1).into_bytes()
}

/// Edits BODY of line `index` (0-based) with `edit` and re-hashes that line only.
fn edit_and_rehash(
    lines: &[Vec<u8>],
    index: usize,
    edit: impl Fn(&[u8]) -> Vec<u8>,
) -> Vec<Vec<u8>> {
    let mut lines = lines.to_vec();
    lines[index] = seal(&edit(&body(&lines[index])));
    lines
}

/// Re-links and re-hashes every line from `from` (0-based) on, as a forger who rewrites the tail
/// would: each `prev_hash` set to the (new) hash of the line before.
fn rechain(lines: &[Vec<u8>], from: usize) -> Vec<Vec<u8>> {
    const MEMBER: &[u8] = b"\"prev_hash\":\"";
    let mut lines = lines.to_vec();
    for i in from..lines.len() {
        let prev = if i == 0 {
            GENESIS.to_vec()
        } else {
            stated(&lines[i - 1]).to_vec()
        };
        let mut body = body(&lines[i]);
        let at = body
            .windows(MEMBER.len())
            .position(|w| w == MEMBER)
            .expect("prev_hash member")
            + MEMBER.len();
        body.splice(at..at + GENESIS.len(), prev);
        lines[i] = seal(&body);
    }
    lines
}

fn join(lines: &[Vec<u8>]) -> Vec<u8> {
    lines
        .iter()
        .flat_map(|line| line.iter().copied().chain([b'\n']))
        .collect()
}

/// Runs all three verifiers on each `(name, file bytes, expected verdict)` and fails with a table of
/// every case where one of them disagrees with the others or with the expectation.
fn check_all(dir: &Path, cases: Vec<(&str, Vec<u8>, Verdict)>) {
    let mut wrong = Vec::new();
    for (name, bytes, expected) in cases {
        let path: PathBuf = dir.join(format!("{name}.jsonl"));
        std::fs::write(&path, &bytes).unwrap();
        let (py, bin, lib) = (python(&path), binary(&path), library(&path));
        if py != bin || bin != lib || lib != expected {
            wrong.push(format!(
                "{name}: expected {expected:?}\n    python:  {py:?}\n    binary:  {bin:?}\n    library: {lib:?}"
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "verifiers disagree:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn python_and_rust_verifiers_agree_on_every_kind_of_tampering() {
    use Verdict::{Invalid, Valid};
    let site = Site::new();
    let lines = real_log(&site);
    let good = join(&lines);
    let n = lines.len() as u64;

    let mut cases: Vec<(&str, Vec<u8>, Verdict)> = vec![("good", good.clone(), Valid)];

    let mut edited = lines.clone();
    edited[2] = replace(&edited[2], "Jake Smith", "Jane Smith");
    cases.push(("edited-field", join(&edited), Invalid(3)));

    // Its own hash is right again, but line 4 still points at the old one.
    let rehashed = edit_and_rehash(&lines, 2, |b| replace(b, "Jake Smith", "Jane Smith"));
    cases.push(("edited-and-rehashed", join(&rehashed), Invalid(4)));

    for (name, index, expected) in [
        ("deleted-first", 0, Invalid(1)),
        ("deleted-middle", 3, Invalid(4)),
        // A valid, shorter chain: only an outside record of the head (checkpoints) catches this.
        ("deleted-last", lines.len() - 1, Valid),
    ] {
        let mut deleted = lines.clone();
        deleted.remove(index);
        cases.push((name, join(&deleted), expected));
    }

    let mut swapped = lines.clone();
    swapped.swap(2, 3);
    cases.push(("swapped", join(&swapped), Invalid(3)));

    let mut duplicated = lines.clone();
    duplicated.insert(3, lines[2].clone());
    cases.push(("duplicated", join(&duplicated), Invalid(4)));

    // A well-formed record with the right seq, prev_hash and hash for its place: the line after it
    // is where the chain breaks.
    let mut inserted = lines.clone();
    let forged = edit_and_rehash(&lines, 2, |b| {
        replace(b, "\"trace_id\":\"", "\"trace_id\":\"x")
    });
    inserted.insert(2, forged[2].clone());
    cases.push(("inserted", join(&inserted), Invalid(4)));

    cases.push(("torn-final", good[..good.len() - 1].to_vec(), Invalid(n)));

    let line5_start: usize = lines[..4].iter().map(|l| l.len() + 1).sum();
    cases.push((
        "truncated-mid-line",
        good[..line5_start + lines[4].len() / 2].to_vec(),
        Invalid(5),
    ));

    cases.push(("empty", Vec::new(), Valid));

    let mut blank = lines.clone();
    blank.insert(3, Vec::new());
    cases.push(("blank-line", join(&blank), Invalid(4)));

    let mut trailing = lines.clone();
    trailing[2].push(b' ');
    cases.push(("trailing-space", join(&trailing), Invalid(3)));

    let mut upper = lines.clone();
    let hex_at = upper[2].len() - 66;
    upper[2][hex_at..hex_at + 64].make_ascii_uppercase();
    assert_ne!(upper[2], lines[2], "the hash has letters to upper-case");
    cases.push(("upper-case-hex", join(&upper), Invalid(3)));

    // A forgery: one record edited and every line from the first re-hashed and re-linked. The chain
    // is consistent, so both verifiers must call it VALID: a hash chain proves nothing against
    // whoever can rewrite the whole file. Only signed checkpoints (a later feature) catch this.
    let mut forgery = lines.clone();
    forgery[3] = replace(
        &forgery[3],
        "\"outcome\":\"success\"",
        "\"outcome\":\"failure\"",
    );
    let forgery = rechain(&forgery, 0);
    assert_ne!(forgery, lines);
    cases.push(("forgery", join(&forgery), Valid));

    // A few more the spec decides.
    let crlf: Vec<u8> = lines
        .iter()
        .flat_map(|l| l.iter().copied().chain(*b"\r\n"))
        .collect();
    cases.push(("crlf", crlf, Invalid(1)));
    let float_seq = edit_and_rehash(&lines, 2, |b| replace(b, "\"seq\":3", "\"seq\":3.0"));
    cases.push(("seq-as-float", join(&float_seq), Invalid(3)));
    // The canonical form is how the server writes, not a verification rule: verifiers hash BODY as
    // found, so a consistently re-hashed non-canonical BODY verifies.
    let spaced = edit_and_rehash(&lines, 2, |b| {
        replace(b, "\"kind\":\"run\"", "\"kind\" : \"run\"")
    });
    cases.push(("non-canonical-spacing", join(&rechain(&spaced, 3)), Valid));

    check_all(site.path(), cases);
}

/// A log whose line `index` (0-based) BODY is edited by `edit`, then re-chained from there so that
/// the only thing wrong, if anything, is the edited BODY itself.
fn variant(lines: &[Vec<u8>], index: usize, edit: impl Fn(&[u8]) -> Vec<u8>) -> Vec<u8> {
    join(&rechain(&edit_and_rehash(lines, index, edit), index))
}

#[test]
fn invalid_utf8_in_a_record_is_refused_by_both_verifiers() {
    let site = Site::new();
    let lines = real_log(&site);
    let bad = variant(&lines, 2, |b| {
        let at = b.windows(10).position(|w| w == b"Jake Smith").unwrap();
        let mut b = b.to_vec();
        b[at + 4] = 0xff;
        b
    });
    check_all(
        site.path(),
        vec![("invalid-utf8", bad, Verdict::Invalid(3))],
    );
}

#[test]
fn non_json_numbers_are_refused_by_both_verifiers() {
    let site = Site::new();
    let lines = real_log(&site);
    let nan = variant(&lines, 2, |b| {
        replace(b, "\"duration_seconds\":null", "\"duration_seconds\":NaN")
    });
    let infinity = variant(&lines, 2, |b| {
        replace(
            b,
            "\"duration_seconds\":null",
            "\"duration_seconds\":-Infinity",
        )
    });
    check_all(
        site.path(),
        vec![
            ("nan", nan, Verdict::Invalid(3)),
            ("infinity", infinity, Verdict::Invalid(3)),
        ],
    );
}

#[test]
fn a_byte_order_mark_is_refused_by_both_verifiers() {
    let site = Site::new();
    let lines = real_log(&site);
    let bom = variant(&lines, 0, |b| [&b"\xef\xbb\xbf"[..], b].concat());
    check_all(site.path(), vec![("bom", bom, Verdict::Invalid(1))]);
}

#[test]
fn a_repeated_seq_member_gets_the_same_verdict_from_both_verifiers() {
    let site = Site::new();
    let lines = real_log(&site);
    // BODY states seq 99 first and 3 last: which one is "BODY.seq"?
    let repeated = variant(&lines, 2, |b| replace(b, "{", "{\"seq\":99,"));
    check_all(
        site.path(),
        vec![("repeated-seq", repeated, Verdict::Invalid(3))],
    );
}

#[test]
fn json_nested_past_the_spec_limit_is_refused_by_both_verifiers() {
    let site = Site::new();
    let lines = real_log(&site);
    let nested = format!("\"parameters\":{}{}", "[".repeat(2000), "]".repeat(2000));
    let deep = variant(&lines, 2, |b| replace(b, "\"parameters\":{}", &nested));
    // The spec bounds nesting at 512 levels, so both verifiers refuse the line rather than one of
    // them running out of stack.
    check_all(site.path(), vec![("deep", deep, Verdict::Invalid(3))]);
}

/// Both verifiers on a log directory or file, with an optional public key: (exit code, stdout).
fn both_with_key(path: &Path, key: Option<&Path>) -> ((i32, String), (i32, String)) {
    let mut args = Vec::new();
    if let Some(key) = key {
        args.extend(["--public-key", utf8(key)]);
    }
    args.push(utf8(path));
    let read = |output: Output| {
        (
            output.status.code().unwrap_or(-1),
            output.stdout_text().into_owned(),
        )
    };
    (read(python_verifier(&args)), read(binary_verifier(&args)))
}

#[test]
fn both_verifiers_follow_rotated_segments_and_check_signed_checkpoints() {
    let site = Site::new();
    real_log(&site);
    std::fs::remove_dir_all(site.path().join("logs")).unwrap();
    let (private, key) = site.keygen();
    for _ in 0..6 {
        site.sustainbot()
            .signing_key(&private)
            .checkpoint_every(3)
            .segment_max_bytes(3000)
            .run_workflow("noop")
            .expect_exit(0);
    }
    let logs = site.path().join("logs");
    let segments = std::fs::read_dir(&logs).unwrap().count();
    assert!(segments > 3, "the log rotated into several segments");
    let (python, binary) = both_with_key(&logs, Some(&key));
    assert_eq!(
        (python.0, binary.0),
        (0, 0),
        "python: {}\nbinary: {}",
        python.1,
        binary.1
    );
    assert!(binary.1.contains("signed:"), "{}", binary.1);

    // Forge: edit the first record of the oldest segment and re-chain the whole log, checkpoints
    // included. The chain verifies; the key does not.
    let mut files: Vec<PathBuf> = std::fs::read_dir(&logs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort_by_key(|p| {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        (name == "audit.jsonl", name)
    });
    let mut prev = GENESIS.to_vec();
    for (n, file) in files.iter().enumerate() {
        let text = std::fs::read(file).unwrap();
        let mut out = Vec::new();
        for (i, line) in text[..text.len() - 1].split(|&b| b == b'\n').enumerate() {
            let mut record: serde_json::Map<String, serde_json::Value> =
                serde_json::from_slice(&body(line)).unwrap();
            if n == 0 && i == 0 {
                record.insert("outcome".into(), "failure".into());
            }
            if record["kind"] == "checkpoint" {
                record.insert(
                    "covered_hash".into(),
                    String::from_utf8(prev.clone()).unwrap().into(),
                );
            }
            record.insert(
                "prev_hash".into(),
                String::from_utf8(prev.clone()).unwrap().into(),
            );
            let sealed = seal(&serde_json::to_vec(&record).unwrap());
            prev = stated(&sealed).to_vec();
            out.extend_from_slice(&sealed);
            out.push(b'\n');
        }
        std::fs::write(file, out).unwrap();
    }
    let (python, binary) = both_with_key(&logs, None);
    assert_eq!(
        (python.0, binary.0),
        (0, 0),
        "chain-wise the forgery is valid\npython: {}\nbinary: {}",
        python.1,
        binary.1
    );
    let (python, binary) = both_with_key(&logs, Some(&key));
    assert_eq!(
        (python.0, binary.0),
        (1, 1),
        "python: {}\nbinary: {}",
        python.1,
        binary.1
    );
    assert!(
        python.1.contains("signature") && binary.1.contains("signature"),
        "python: {}\nbinary: {}",
        python.1,
        binary.1
    );
    let line_of = |s: &str| {
        s.split(": line ")
            .nth(1)
            .and_then(|r| r.split(':').next())
            .map(str::to_owned)
    };
    assert_eq!(line_of(&python.1), line_of(&binary.1));
}
