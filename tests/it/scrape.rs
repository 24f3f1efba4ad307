//! What real Prometheus tools make of `/metrics`: a real `prometheus` server scrapes the test server
//! and answers the governance counters through its query API, and `promtool check metrics` reads the
//! text format without a complaint. (They skip loudly without the tools; CI installs them.)

use std::time::Duration;

use serde_json::json;

use crate::helpers::prometheus::{check_metrics, describe, prometheus, promtool, Prometheus};
use crate::helpers::{demo_invalid_request, governance_request, trace, TestApp};

/// Long enough for a few 1 s scrapes on a busy machine.
const WITHIN: Duration = Duration::from_secs(45);

#[tokio::test]
async fn a_real_prometheus_scrapes_the_governance_counters() {
    let Some(binary) = prometheus() else { return };
    let approval = json!({"required": true, "approver_roles": ["admin"], "expires_seconds": 3600});
    let app = TestApp::with_workflow("guarded", json!({"approval": approval, "steps": []})).await;
    for i in 0..3 {
        app.execute(
            &governance_request("noop"),
            &trace(&format!("scrape-ok-{i}")),
        )
        .await
        .expect_ok(200);
    }
    app.execute(&governance_request("with-steps"), &trace("scrape-failed"))
        .await
        .expect(500, "WORKFLOW_FAILED");
    for _ in 0..2 {
        app.post_json("/governance/validate", &demo_invalid_request(), None)
            .await
            .expect(400, "GOVERNANCE_ERROR");
    }
    app.execute(&governance_request("guarded"), &trace("scrape-waits"))
        .await
        .expect_ok(202);

    let target = app.address.trim_start_matches("http://").to_owned();
    let prometheus = Prometheus::start(&binary, &target).await;
    let counts = [
        (
            r#"sum(sustainbot_workflow_executions_total{outcome="success"})"#,
            3.0,
        ),
        (
            r#"sustainbot_workflow_executions_total{workflow_name="with-steps", outcome="failure"}"#,
            1.0,
        ),
        ("sum(sustainbot_aim_requests_total)", 5.0),
        (
            r#"sum(sustainbot_aim_requests_total{drag_mode="execute", actor_role="admin"})"#,
            5.0,
        ),
        (
            r#"sum by (failure_reason) (sustainbot_aim_validation_failures_total)"#,
            2.0,
        ),
        (
            r#"sum(sustainbot_audit_log_entries_total{outcome="success"})"#,
            3.0,
        ),
        (
            "sum(sustainbot_governed_workflow_duration_seconds_count)",
            4.0,
        ),
        // Four runs with two records each, and the approval request.
        (r#"sustainbot_audit_appends_total{result="ok"}"#, 9.0),
        ("sustainbot_audit_batch_records_sum", 9.0),
        ("sustainbot_audit_append_duration_seconds_count", 9.0),
        ("sustainbot_audit_sink_healthy", 1.0),
        ("sustainbot_approvals_waiting", 1.0),
        (
            "count(sustainbot_approval_next_expiry_timestamp_seconds > time() + 3500)",
            1.0,
        ),
        ("sustainbot_run_queue_capacity", 256.0),
        (r#"count(sustainbot_application_info{version!=""})"#, 1.0),
        (r#"up{job="sustainbot"}"#, 1.0),
    ];
    for (promql, expected) in counts {
        prometheus.wait_for_value(promql, expected, WITHIN).await;
    }
    let targets = prometheus.targets().await;
    assert_eq!(targets.len(), 1, "{targets:?}");
    assert_eq!(targets[0]["health"], "up", "{:?}", targets[0]);
    assert_eq!(targets[0]["lastError"], "", "{:?}", targets[0]);
}

#[tokio::test]
async fn promtool_reads_the_text_format_without_a_complaint() {
    let Some(promtool) = promtool() else { return };
    let app = TestApp::spawn().await;
    app.execute(&governance_request("noop"), &[])
        .await
        .expect_ok(200);
    let reply = app.get("/metrics", None).await;
    assert!(reply
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/plain; version=0.0.4")));
    let output = check_metrics(&promtool, &reply.text);
    let report = describe(&output);
    assert!(output.status.success(), "{report}\n{}", reply.text);
    assert!(
        output.stdout.is_empty() && output.stderr.is_empty(),
        "lint findings: {report}"
    );
}
