//! The audit trail end to end: tamper evidence, failing closed, and many writers at once.

use std::collections::HashSet;

use serde_json::{json, Value};
use sustainbot::audit::verify::verify_path;

use crate::helpers::{governance_request, Settings, TestApp};

#[tokio::test]
async fn editing_a_middle_record_outcome_is_reported_at_its_line() {
    let app = TestApp::spawn().await;
    for _ in 0..3 {
        app.execute(&governance_request("noop"), &[])
            .await
            .expect_ok(200);
    }
    assert!(app.verify_audit().is_valid());
    let text = std::fs::read_to_string(&app.audit_path).expect("audit log");
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 6, "started + success per run");
    // Line 4 is the second run's success record.
    assert!(lines[3].contains(r#""outcome":"success""#), "{}", lines[3]);
    lines[3] = lines[3].replace(r#""outcome":"success""#, r#""outcome":"failure""#);
    std::fs::write(&app.audit_path, format!("{}\n", lines.join("\n"))).expect("rewrite");

    let report = verify_path(&app.audit_path).expect("readable");
    let problem = report.problem.expect("tampering detected");
    assert_eq!(problem.line, 4, "{}", problem.message);
    assert!(problem.message.contains("edited"), "{}", problem.message);
    assert_eq!(report.records, 3);
}

/// A real write failure that also happens as root: `/dev/full` opens and locks like a file, and every
/// write to it fails with ENOSPC. This is the only test that may use it (the server locks it).
#[tokio::test]
async fn audit_write_failure_fails_closed_with_503_audit_unavailable() {
    let app = TestApp::builder()
        .audit_log(std::path::Path::new("/dev/full"))
        .spawn()
        .await;
    let before = app.get("/health", None).await.expect_ok(200);
    assert_eq!(before["components"]["audit"]["healthy"], true);

    let reply = app.execute(&governance_request("noop"), &[]).await;
    let body = reply.expect(503, "AUDIT_UNAVAILABLE");
    assert!(body["trace_id"].is_string(), "{body}");
    assert_eq!(reply.header("retry-after"), Some("5"));
    // Nothing ran, and the refusal itself is not on the record.
    assert_eq!(body["success"], false, "{body}");
    assert_eq!(body["audit_logged"], false, "{body}");

    // A refusal that cannot be recorded is not reported as the refusal either.
    app.execute(&governance_request("does-not-exist"), &[])
        .await
        .expect(503, "AUDIT_UNAVAILABLE");

    let reply = app.get("/health", None).await;
    assert_eq!(reply.status.as_u16(), 503, "{}", reply.text);
    let health = reply.json();
    assert_eq!(health["status"], "degraded");
    assert_eq!(health["components"]["audit"]["healthy"], false);
    assert!(
        health["components"]["audit"]["last_error"].is_string(),
        "{health}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_governed_runs_all_succeed_on_one_verified_chain() {
    let app = std::sync::Arc::new(TestApp::spawn().await);
    let mut tasks = Vec::new();
    for i in 0..50 {
        let app = std::sync::Arc::clone(&app);
        tasks.push(tokio::spawn(async move {
            let mut request = governance_request("noop");
            request["parameters"]["run"] = json!(i);
            app.execute(&request, &[("x-trace-id", format!("concurrent-{i:02}"))])
                .await
        }));
    }
    for task in tasks {
        let reply = task.await.expect("task");
        let body = reply.expect_ok(200);
        assert_eq!(body["success"], true, "{body}");
    }
    let report = app.verify_audit();
    assert!(report.is_valid(), "{report:?}");
    assert_eq!(report.records, 100);
    assert_eq!(report.head_seq, 100);

    let lines = app.audit_lines();
    let traces: HashSet<&str> = lines
        .iter()
        .map(|l| l["trace_id"].as_str().expect("trace_id"))
        .collect();
    assert_eq!(traces.len(), 50);
    for i in 0..50 {
        let trace = format!("concurrent-{i:02}");
        let outcomes: Vec<&Value> = lines
            .iter()
            .filter(|l| l["trace_id"] == trace.as_str())
            .map(|l| &l["outcome"])
            .collect();
        assert_eq!(outcomes, [&json!("started"), &json!("success")], "{trace}");
    }
}
