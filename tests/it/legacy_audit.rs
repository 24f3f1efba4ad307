//! The original (Python) server's audit log: `sustainbot audit verify --legacy`, `sustainbot audit
//! import-legacy`, and `scripts/verify_audit.py --legacy` on the fixtures that
//! `scripts/make_legacy_audit_fixture.py` wrote the way the original does, untouched and tampered.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use sha2::{Digest, Sha256};
use sustainbot::audit::legacy::pyjson::{dumps_sorted, parse};

use crate::helpers::{json_lines, sustainbot, Finished, Settings, Site};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn utf8(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}

/// `python3 ARGS` (a script and its arguments, or `-c` and code).
fn python3(args: &[&str]) -> Output {
    Command::new("python3")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("python3 is required by this test and could not be run: {e}"))
}

/// `python3 scripts/verify_audit.py ARGS`.
fn python_verifier(args: &[&str]) -> Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/verify_audit.py");
    python3(&[&[utf8(&script)], args].concat())
}

fn sha256_of(path: &Path) -> String {
    let bytes = std::fs::read(path).expect("read the file");
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// The 1-based line a `FAILED <path>: line N: ...` output names.
fn failed_line(output: &Output, path: &Path) -> Option<u64> {
    output
        .stdout_text()
        .strip_prefix(&format!("FAILED {}: line ", path.display()))?
        .split(':')
        .next()?
        .parse()
        .ok()
}

#[test]
fn verify_legacy_accepts_the_originals_log_as_pydantic_2_and_1_wrote_it() {
    for (name, lines) in [
        ("legacy-audit.jsonl", 4),
        ("legacy-audit-pydantic1.jsonl", 5),
    ] {
        let path = fixture(name);
        let expected = format!(
            "OK {}: {lines} lines verify in the original's format",
            path.display()
        );
        let output = sustainbot()
            .run(&["audit", "verify", "--legacy", utf8(&path)])
            .expect_exit(0)
            .expect_stdout(&expected)
            .expect_stdout(&sha256_of(&path));
        assert!(output
            .stdout_text()
            .contains("2025-03-01T09:15:02.250000 .. "));
        python_verifier(&["--legacy", utf8(&path)])
            .expect_exit(0)
            .expect_stdout(&expected);
    }
}

#[test]
fn verify_legacy_reports_as_json() {
    let path = fixture("legacy-audit.jsonl");
    let output = sustainbot()
        .run(&["audit", "verify", "--legacy", utf8(&path), "--json"])
        .expect_exit(0);
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["valid"], true, "{report}");
    assert_eq!(report["report"]["lines"], 4);
    assert_eq!(report["report"]["sha256"], sha256_of(&path));
    assert_eq!(report["format"], "sustainbot-python-jsonl");
}

/// Each case: the fixture with one change, and the line both verifiers must name.
fn tampered_cases(lines: &[String]) -> Vec<(&'static str, String, u64)> {
    let with = |index: usize, line: String| {
        let mut copy = lines.to_vec();
        copy[index] = line;
        copy.concat()
    };
    vec![
        (
            "a value edited",
            with(2, lines[2].replace("OpenClaw unreachable", "Succeeded")),
            3,
        ),
        (
            "a float changed",
            with(2, lines[2].replace("12.0", "12.5")),
            3,
        ),
        (
            "the hash removed",
            with(1, lines[1].replace("\"integrity_hash\"", "\"hash\"")),
            2,
        ),
        ("not JSON", with(3, "{\"trace_id\": \n".to_owned()), 4),
        (
            "a timestamp in another form",
            with(0, lines[0].replace("09:15:02.250000\"", "09:15:02.25Z\"")),
            1,
        ),
        (
            "a torn last line",
            with(3, lines[3].trim_end().to_owned()),
            4,
        ),
        (
            "lines reordered",
            [&lines[1..2], &lines[0..1], &lines[2..]].concat().concat(),
            0, // reordering is not detectable in the original's format: every line still verifies
        ),
    ]
}

#[test]
fn verify_legacy_names_the_first_bad_line_and_the_python_verifier_agrees() {
    let site = Site::new();
    let text = std::fs::read_to_string(fixture("legacy-audit.jsonl")).unwrap();
    let lines: Vec<String> = text.split_inclusive('\n').map(str::to_owned).collect();
    for (case, content, line) in tampered_cases(&lines) {
        let path = site.path().join("old-audit.jsonl");
        std::fs::write(&path, content).unwrap();
        let binary = sustainbot().run(&["audit", "verify", "--legacy", utf8(&path)]);
        let python = python_verifier(&["--legacy", utf8(&path)]);
        if line == 0 {
            binary.expect_exit(0);
            python.expect_exit(0);
            continue;
        }
        assert_eq!(
            (failed_line(&binary, &path), binary.status.code()),
            (Some(line), Some(1)),
            "{case}: {}",
            binary.describe()
        );
        assert_eq!(
            (failed_line(&python, &path), python.status.code()),
            (Some(line), Some(1)),
            "{case}: {}",
            python.describe()
        );
    }
}

#[test]
fn import_legacy_anchors_the_file_once_and_the_chain_still_verifies() {
    let site = Site::new();
    site.run_workflow("noop").expect_exit(0);
    let old = site.path().join("old-audit.jsonl");
    std::fs::copy(fixture("legacy-audit.jsonl"), &old).unwrap();
    let digest = sha256_of(&old);

    site.sustainbot()
        .run(&["audit", "import-legacy", "old-audit.jsonl"])
        .expect_exit(0)
        .expect_stdout("imported old-audit.jsonl: 4 lines")
        .expect_stdout("genesis record at seq 3");
    let records = json_lines(&site.audit());
    assert_eq!(records.len(), 3);
    let genesis = &records[2];
    assert_eq!(genesis["kind"], "genesis");
    assert_eq!(genesis["source"], "old-audit.jsonl");
    assert_eq!(genesis["lines"], 4);
    assert_eq!(genesis["sha256"], digest.as_str());
    assert_eq!(genesis["legacy_format"], "sustainbot-python-jsonl");
    assert_eq!(genesis["first_timestamp"], "2025-03-01T09:15:02.250000");
    assert_eq!(genesis["last_timestamp"], "2025-03-31T23:59:59.000001");
    assert!(genesis["imported_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(genesis["principal"]["role"], "cli");

    // Our chain, with the genesis record in it, verifies with both verifiers.
    site.sustainbot()
        .run(&["audit", "verify"])
        .expect_exit(0)
        .expect_stdout("3 records");
    python_verifier(&[utf8(&site.audit())])
        .expect_exit(0)
        .expect_stdout("OK 3 records");
    // And both find the old file anchored there.
    let chain = utf8(&site.audit()).to_owned();
    sustainbot()
        .run(&["audit", "verify", "--legacy", utf8(&old), &chain])
        .expect_exit(0)
        .expect_stdout("anchored by the genesis record at seq 3");
    python_verifier(&["--legacy", utf8(&old), &chain])
        .expect_exit(0)
        .expect_stdout("anchored by the genesis record at seq 3");

    // Importing the same file again writes nothing.
    site.sustainbot()
        .run(&["audit", "import-legacy", "old-audit.jsonl"])
        .expect_exit(0)
        .expect_stdout("already anchored by the genesis record at seq 3");
    assert_eq!(json_lines(&site.audit()).len(), 3);
}

#[test]
fn with_a_signing_key_the_anchor_is_signed_at_once() {
    let site = Site::new();
    let (private, public) = site.keygen();
    site.sustainbot()
        .env("AUDIT_SIGNING_KEY", utf8(&private))
        .run(&[
            "audit",
            "import-legacy",
            utf8(&fixture("legacy-audit.jsonl")),
        ])
        .expect_exit(0);
    let kinds: Vec<String> = json_lines(&site.audit())
        .iter()
        .map(|r| r["kind"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(kinds, ["genesis", "checkpoint"]);
    let (old, chain) = (fixture("legacy-audit.jsonl"), site.audit());
    let args = [
        "--legacy",
        utf8(&old),
        "--public-key",
        utf8(&public),
        utf8(&chain),
    ];
    sustainbot()
        .run(&[&["audit", "verify"][..], &args].concat())
        .expect_exit(0)
        .expect_stdout("anchored by the genesis record at seq 1");
    python_verifier(&args)
        .expect_exit(0)
        .expect_stdout("anchored by the genesis record at seq 1");
}

/// Edits line 2 of an original-format file and re-hashes it the original's way, as anyone can.
const EDIT_AND_REHASH: &str = r#"
import hashlib, json, sys
lines = open(sys.argv[1], encoding="utf-8").read().splitlines(True)
entry = json.loads(lines[1])
entry.pop("integrity_hash")
entry["outcome"], entry["error"] = "success", None
hashed = dict(entry, timestamp=entry["timestamp"].replace("T", " ", 1))
entry["integrity_hash"] = hashlib.sha256(json.dumps(hashed, sort_keys=True).encode()).hexdigest()
lines[1] = json.dumps(entry, separators=(",", ":"), ensure_ascii=False) + "\n"
open(sys.argv[1], "w", encoding="utf-8").write("".join(lines))
"#;

#[test]
fn an_anchored_file_edited_and_rehashed_after_the_import_is_caught() {
    let site = Site::new();
    let old = site.path().join("old-audit.jsonl");
    std::fs::copy(fixture("legacy-audit.jsonl"), &old).unwrap();
    site.sustainbot()
        .run(&["audit", "import-legacy", utf8(&old)])
        .expect_exit(0)
        .expect_stdout("genesis record at seq 1");

    python3(&["-c", EDIT_AND_REHASH, utf8(&old)]).expect_exit(0);
    // On its own the edited file still verifies: the original's hashes have no key.
    sustainbot()
        .run(&["audit", "verify", "--legacy", utf8(&old)])
        .expect_exit(0);
    // Against the anchor it does not, for either verifier.
    let chain = utf8(&site.audit()).to_owned();
    sustainbot()
        .run(&["audit", "verify", "--legacy", utf8(&old), &chain])
        .expect_exit(1)
        .expect_stdout("not anchored");
    python_verifier(&["--legacy", utf8(&old), &chain])
        .expect_exit(1)
        .expect_stdout("not anchored");
}

#[test]
fn import_legacy_refuses_a_file_with_a_bad_line_and_writes_nothing() {
    let site = Site::new();
    let text = std::fs::read_to_string(fixture("legacy-audit.jsonl")).unwrap();
    site.write(
        "old-audit.jsonl",
        &text.replace("legacy-0003", "legacy-0033"),
    );
    site.sustainbot()
        .run(&["audit", "import-legacy", "old-audit.jsonl"])
        .expect_exit(1)
        .expect_stdout("FAILED old-audit.jsonl: line 3: integrity_hash does not match")
        .expect_stdout("nothing imported");
    assert!(!site.audit().exists() || json_lines(&site.audit()).is_empty());

    site.write("empty.jsonl", "");
    site.sustainbot()
        .run(&["audit", "import-legacy", "empty.jsonl"])
        .expect_exit(1)
        .expect_stdout("no lines to import");
}

#[test]
fn a_genesis_record_without_its_digest_fails_both_chain_verifiers() {
    let site = Site::new();
    site.sustainbot()
        .run(&[
            "audit",
            "import-legacy",
            utf8(&fixture("legacy-audit.jsonl")),
        ])
        .expect_exit(0);
    // Re-seal the record with a malformed digest, as a forger who re-hashes would.
    let line = std::fs::read_to_string(site.audit()).unwrap();
    let body = format!(
        "{}}}",
        &line[..line.len() - 93].replace("\"sha256\":\"sha256:", "\"sha256\":\"sha1:")
    );
    let mut hasher = Sha256::new();
    hasher.update(b"sustainbot-audit-v1\n");
    hasher.update(body.as_bytes());
    let forged = format!(
        "{},\"integrity_hash\":\"sha256:{}\"}}\n",
        &body[..body.len() - 1],
        hex::encode(hasher.finalize())
    );
    std::fs::write(site.audit(), forged).unwrap();
    let binary = sustainbot().run(&["audit", "verify", utf8(&site.audit())]);
    assert_eq!(
        failed_line(&binary, &site.audit()),
        Some(1),
        "{}",
        binary.describe()
    );
    binary.expect_stdout("genesis record without sha256");
    python_verifier(&[utf8(&site.audit())])
        .expect_exit(1)
        .expect_stdout("genesis record without sha256");
}

/// A small deterministic generator (xorshift) of JSON texts with the values a line can hold.
struct Values(u64);

impl Values {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn float(&mut self) -> String {
        let f = match self.next() % 4 {
            0 => f64::from_bits(self.next()),
            1 => (self.next() % 1_000_000) as f64 / 10f64.powi((self.next() % 12) as i32),
            2 => 10f64.powi((self.next() % 60) as i32 - 30) * 1.5,
            _ => (self.next() % 100) as f64,
        };
        if f.is_finite() {
            format!("{f:e}")
        } else {
            "1.5".to_owned()
        }
    }

    /// A JSON string of random code points, all as `\\uXXXX` escapes (a pair above U+FFFF): control
    /// characters, DEL, printable ASCII, the rest of the BMP, astral planes and lone surrogates.
    fn string(&mut self) -> String {
        let mut json = String::from('"');
        for _ in 0..self.next() % 8 {
            let c = match self.next() % 6 {
                0 => (self.next() % 0x20) as u32,
                1 => 0x7f,
                2 => 0x20 + (self.next() % 0x5f) as u32,
                3 => 0x80 + (self.next() % 0xff80) as u32,
                4 => 0x10000 + (self.next() % 0xf_0000) as u32,
                _ => 0xd800 + (self.next() % 0x800) as u32,
            };
            if c >= 0x10000 {
                let v = c - 0x10000;
                json.push_str(&format!(
                    "\\u{:04x}\\u{:04x}",
                    0xd800 | (v >> 10),
                    0xdc00 | (v & 0x3ff)
                ));
            } else {
                json.push_str(&format!("\\u{c:04x}"));
            }
        }
        json.push('"');
        json
    }

    fn value(&mut self, depth: u32) -> String {
        match self.next() % if depth > 3 { 6 } else { 8 } {
            0 => "null".to_owned(),
            1 => ["true", "false"][(self.next() % 2) as usize].to_owned(),
            2 => format!("{}", self.next() as i64),
            3 => format!("{}{}", self.next(), self.next()),
            4 => self.float(),
            5 => self.string(),
            6 => {
                let items: Vec<String> = (0..self.next() % 4)
                    .map(|_| self.value(depth + 1))
                    .collect();
                format!("[{}]", items.join(","))
            }
            _ => {
                let mut members: Vec<String> = Vec::new();
                let mut keys = Vec::new();
                for _ in 0..self.next() % 5 {
                    let key = self.string();
                    // Two escapes can spell one key (a lone pair of surrogates is one code point).
                    let parsed = parse(&key).unwrap();
                    if !keys.contains(&parsed) {
                        keys.push(parsed);
                        members.push(format!("{key}:{}", self.value(depth + 1)));
                    }
                }
                format!("{{{}}}", members.join(","))
            }
        }
    }
}

#[test]
fn our_json_dumps_matches_pythons_byte_for_byte() {
    let mut values = Values(0x9e37_79b9_7f4a_7c15);
    let texts: Vec<String> = (0..1000).map(|_| values.value(0)).collect();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("values.jsonl");
    std::fs::write(&input, texts.join("\n") + "\n").unwrap();
    let output = python3(&[
        "-c",
        "import json, sys\nfor line in open(sys.argv[1], encoding='ascii'):\n    print(json.dumps(json.loads(line), sort_keys=True))",
        utf8(&input),
    ])
    .expect_exit(0);
    let expected: Vec<String> = output.stdout_text().lines().map(str::to_owned).collect();
    assert_eq!(expected.len(), texts.len());
    for (text, python) in texts.iter().zip(&expected) {
        let mut ours = String::new();
        dumps_sorted(&parse(text).unwrap(), &mut ours);
        assert_eq!(&ours, python, "input: {text}");
    }
}
