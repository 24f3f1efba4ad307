//! The audit trail in PostgreSQL (`DATABASE_URL`), against the real binary: a server records its
//! runs in the database, `sustainbot audit export` gives a file both verifiers accept, and a JSONL
//! log imported from a real JSONL server comes back byte for byte, its chain continued by a server
//! on the database. Skipped loudly without a reachable PostgreSQL (see `helpers::TestDb`).

use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::helpers::{Finished, Settings, Site, TestDb};

/// `python3 scripts/verify_audit.py ARGS`.
fn python_verifier(args: &[&str]) -> Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/verify_audit.py");
    Command::new("python3")
        .arg(script)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("python3 is required by this test and could not be run: {e}"))
}

fn records(bytes: &[u8]) -> Vec<Value> {
    bytes
        .split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| serde_json::from_slice(line).expect("every line is JSON"))
        .collect()
}

/// `sustainbot audit export --database-url URL --out FILE` in `site`; the file's bytes.
fn export(site: &Site, db: &TestDb, file: &str) -> Vec<u8> {
    site.sustainbot()
        .run(&["audit", "export", "--database-url", db.url(), "--out", file])
        .expect_exit(0);
    std::fs::read(site.path().join(file)).expect("the export")
}

#[tokio::test]
async fn a_server_on_postgres_records_its_runs_and_the_export_verifies_with_both_verifiers() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let site = Site::new();
    let (private, public) = site.keygen();
    let mut server = site
        .sustainbot()
        .env("DATABASE_URL", db.url())
        .env("SUSTAINBOT_INSTANCE_ID", "it-a")
        .signing_key(&private)
        .checkpoint_every(3)
        .start();
    assert_eq!(
        server.logged_count("audit store: postgresql"),
        1,
        "{}",
        server.stderr()
    );
    server.governed_runs("pg", 4).await;

    let health = server.get("/health", None).await.expect_ok(200);
    assert_eq!(health["components"]["audit"]["healthy"], true);
    assert!(
        health["components"]["audit"]["head_seq"].as_u64() >= Some(8),
        "{health}"
    );
    let auditor = server.token("auditor@example.org", "auditor");
    let verdict = server
        .get("/audit/verify", Some(&auditor))
        .await
        .expect_ok(200);
    assert_eq!(verdict["valid"], true, "{verdict}");
    let trail = server
        .get("/audit/entries/pg-2", Some(&auditor))
        .await
        .expect_ok(200);
    assert_eq!(
        trail["entries"].as_array().map(Vec::len),
        Some(2),
        "{trail}"
    );
    server.terminate();
    assert!(!site.audit().exists(), "no JSONL log beside the database");

    let exported = export(&site, &db, "export.jsonl");
    let all = records(&exported);
    let runs: Vec<&Value> = all.iter().filter(|r| r["kind"] == "run").collect();
    assert_eq!(runs.len(), 8);
    assert!(all.iter().all(|r| r["instance"] == "it-a"));
    assert_eq!(
        all.last().map(|r| &r["kind"]),
        Some(&Value::from("checkpoint"))
    );
    let key = public.to_str().expect("utf-8 path");
    site.sustainbot()
        .run(&["audit", "verify", "export.jsonl", "--public-key", key])
        .expect_exit(0)
        .expect_stdout("OK");
    let export_path = site.path().join("export.jsonl");
    let file = export_path.to_str().expect("utf-8 path");
    python_verifier(&["--public-key", key, file])
        .expect_exit(0)
        .expect_stdout("OK");
    site.sustainbot()
        .run(&[
            "audit",
            "verify",
            "--database-url",
            db.url(),
            "--public-key",
            key,
        ])
        .expect_exit(0)
        .expect_stdout("OK");
}

#[tokio::test]
async fn a_jsonl_log_imported_into_postgres_comes_back_byte_for_byte_and_its_chain_goes_on() {
    let Some(db) = TestDb::create().await else {
        return;
    };
    let site = Site::new();
    let mut server = site.start();
    server.governed_runs("file", 3).await;
    server.terminate();
    let original = std::fs::read(site.audit()).expect("the JSONL log");
    let last = records(&original).pop().expect("records");

    site.sustainbot()
        .run(&[
            "audit",
            "import",
            "logs/audit.jsonl",
            "--database-url",
            db.url(),
        ])
        .expect_exit(0)
        .expect_stdout("imported 6 records");
    assert_eq!(export(&site, &db, "copy.jsonl"), original);
    // Only into an empty chain.
    site.sustainbot()
        .run(&[
            "audit",
            "import",
            "logs/audit.jsonl",
            "--database-url",
            db.url(),
        ])
        .expect_exit(2)
        .expect_stderr("already holds an audit chain");

    let mut server = site.sustainbot().env("DATABASE_URL", db.url()).start();
    server.governed_runs("db", 1).await;
    server.terminate();
    let continued = export(&site, &db, "continued.jsonl");
    assert!(continued.starts_with(&original));
    let next = &records(&continued[original.len()..])[0];
    assert_eq!(
        next["seq"].as_u64(),
        last["seq"].as_u64().map(|seq| seq + 1)
    );
    assert_eq!(next["prev_hash"], last["integrity_hash"]);
    site.sustainbot()
        .run(&["audit", "verify", "continued.jsonl"])
        .expect_exit(0)
        .expect_stdout("OK");
}
