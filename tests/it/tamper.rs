//! The log cannot be forked or confused by another process: the writer's lock survives a deleted
//! lock file, and bytes another process appends to the active file are cut and recorded.

use std::time::Duration;

use sha2::{Digest, Sha256};
use sustainbot::audit::verify::verify_path;

use crate::helpers::{governance_request, json_lines as records, trace, ServerProcess, Site};

async fn governed_run(server: &ServerProcess, id: &str) {
    let reply = server
        .execute(&governance_request("noop"), &trace(id))
        .await;
    assert_eq!(reply.status.as_u16(), 200, "{id}: {}", reply.text);
}

#[tokio::test]
async fn a_deleted_lock_file_does_not_let_a_second_server_fork_the_chain() {
    let site = Site::new();
    let first = site.start();
    governed_run(&first, "first-0").await;
    let lock_file = site.path().join("logs/audit.jsonl.lock");
    std::fs::remove_file(&lock_file).expect("delete the lock file");
    let before = std::fs::read(site.audit()).expect("read the log");

    let (status, stderr) = site
        .sustainbot()
        .start_expecting_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(2), "{status}: {stderr}");
    assert!(
        stderr.contains("locked") && stderr.contains("another process"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(site.audit()).expect("read the log"),
        before,
        "the refused server changed the log"
    );

    governed_run(&first, "first-1").await;
    let report = verify_path(&site.audit()).expect("verify");
    assert!(report.is_valid(), "{report:?}");
    assert_eq!(
        report.records, 4,
        "two runs of the first server, two records each"
    );
}

#[tokio::test]
async fn a_foreign_tail_is_cut_recorded_and_reported_before_the_next_record() {
    let site = Site::new();
    let server = site.start();
    governed_run(&server, "before").await;
    let length = std::fs::metadata(site.audit()).expect("the log").len();
    let foreign = b"{\"garbage";
    std::fs::OpenOptions::new()
        .append(true)
        .open(site.audit())
        .and_then(|mut f| std::io::Write::write_all(&mut f, foreign))
        .expect("append foreign bytes");

    governed_run(&server, "after").await;

    let output = site.sustainbot().run(&[
        "audit",
        "verify",
        site.audit().to_str().expect("utf-8 path"),
    ]);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let report = verify_path(&site.audit()).expect("verify");
    assert!(report.is_valid(), "{report:?}");

    let lines = records(&site.audit());
    let kinds: Vec<&str> = lines.iter().map(|r| r["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["run", "run", "recovery", "run", "run"], "{lines:?}");
    let recovery = &lines[2];
    assert_eq!(recovery["cut_offset"], length);
    assert_eq!(recovery["cut_length"], foreign.len());
    assert_eq!(
        recovery["cut_hash"],
        format!("sha256:{}", hex::encode(Sha256::digest(foreign)))
    );
    assert!(
        recovery["reason"]
            .as_str()
            .unwrap()
            .contains("foreign tail"),
        "{recovery}"
    );

    let health = server.get("/health", None).await.expect_ok(200);
    assert_eq!(health["status"], "degraded", "{health}");
    let audit = &health["components"]["audit"];
    assert_eq!(audit["healthy"], true, "{health}");
    assert_eq!(audit["foreign_tail_events"], 1, "{health}");
    assert!(
        audit["last_foreign_tail"]
            .as_str()
            .unwrap()
            .contains(&format!(
                "{} foreign bytes at offset {length}",
                foreign.len()
            )),
        "{health}"
    );
}
