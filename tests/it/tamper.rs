//! The log cannot be forked or confused by another process: the writer's lock survives a deleted
//! lock file, and bytes another process appends to the active file are cut and recorded.

use std::time::Duration;

use sustainbot::audit::verify::verify_path;

use crate::helpers::{governance_request, trace, ServerProcess, Site};

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
