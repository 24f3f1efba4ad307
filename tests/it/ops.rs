//! `/health`, `/status`, `/metrics`, the fallbacks and the trace-id edge.

use serde_json::json;

use crate::helpers::{governance_request, Settings, TestApp};

const METRIC_NAMES: [&str; 14] = [
    "sustainbot_aim_requests_total",
    "sustainbot_aim_validation_failures_total",
    "sustainbot_governed_workflow_duration_seconds",
    "sustainbot_audit_log_entries_total",
    "sustainbot_prescriptive_language_detections_total",
    "sustainbot_workflow_executions_total",
    "sustainbot_workflow_execution_errors_total",
    "sustainbot_slack_events_received_total",
    "sustainbot_slack_signature_verifications_total",
    "sustainbot_jwt_validations_total",
    "sustainbot_authentication_failures_total",
    "sustainbot_http_requests_total",
    "sustainbot_http_request_duration_seconds",
    "sustainbot_active_requests",
];

#[tokio::test]
async fn health_is_200_healthy_with_audit_component() {
    let app = TestApp::spawn().await;
    let body = app.get("/health", None).await.expect_ok(200);
    assert_eq!(body["status"], "healthy");
    let audit = &body["components"]["audit"];
    assert_eq!(audit["enabled"], true, "{body}");
    assert_eq!(audit["healthy"], true, "{body}");
}

#[tokio::test]
async fn status_is_200_with_components() {
    let app = TestApp::spawn().await;
    let body = app.get("/status", None).await.expect_ok(200);
    assert_eq!(body["status"], "healthy");
    assert!(body["components"]["audit"].is_object(), "{body}");
    assert!(body["components"]["llm"].is_object(), "{body}");
    assert!(body["components"]["openclaw"].is_object(), "{body}");
}

#[tokio::test]
async fn metrics_expose_all_fourteen_contract_names_after_traffic() {
    let app = TestApp::spawn().await;
    app.execute(&governance_request("noop"), &[])
        .await
        .expect_ok(200);
    app.post_json(
        "/governance/filter",
        &json!({"text": "You should", "drag_mode": "draft"}),
        None,
    )
    .await
    .expect_ok(200);
    app.get("/workflows", None)
        .await
        .expect(401, "AUTH_REQUIRED");
    let reply = app.get("/metrics", None).await;
    assert_eq!(reply.status.as_u16(), 200);
    let content_type = reply.header("content-type").unwrap_or_default();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    for name in METRIC_NAMES {
        assert!(
            reply.text.contains(&format!("# TYPE {name} ")),
            "{name} missing:\n{}",
            reply.text
        );
        assert!(
            reply.text.contains(&format!("# HELP {name} ")),
            "{name} HELP missing"
        );
    }
    assert!(
        reply.text.contains("sustainbot_workflow_executions_total{"),
        "a sample after a run:\n{}",
        reply.text
    );
}

/// Beyond the original's names: the queue, the approvals and the audit trail's durability.
#[tokio::test]
async fn metrics_show_the_run_queue_approvals_and_audit_appends() {
    let app = TestApp::spawn().await;
    app.execute(&governance_request("noop"), &[])
        .await
        .expect_ok(200);
    let page = app.get("/metrics", None).await.text;
    for sample in [
        "sustainbot_run_queue_depth 0",
        "sustainbot_run_queue_capacity 256",
        "sustainbot_runs_executing 0",
        "sustainbot_run_workers 32",
        "sustainbot_approvals_waiting 0",
        "sustainbot_approval_next_expiry_timestamp_seconds 0",
        "sustainbot_audit_sink_healthy 1",
        // The run's `started` and `success` records.
        "sustainbot_audit_appends_total{result=\"ok\"} 2",
        "sustainbot_audit_appends_total{result=\"failed\"} 0",
        "sustainbot_audit_append_duration_seconds_count 2",
        // Two syncs: the outcome is appended only once `started` is durable.
        "sustainbot_audit_batch_records_count 2",
    ] {
        assert!(
            page.contains(&format!("{sample}\n")),
            "{sample} missing:\n{page}"
        );
    }
    assert!(page.contains("# TYPE sustainbot_audit_batch_records histogram\n"));
}

#[tokio::test]
async fn a_scraper_that_asks_for_openmetrics_gets_it() {
    let app = TestApp::spawn().await;
    let reply = app
        .client
        .get(app.url("/metrics"))
        .header(
            "accept",
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
        )
        .send()
        .await
        .expect("GET /metrics");
    let content_type = reply.headers()["content-type"].to_str().unwrap().to_owned();
    let page = reply.text().await.unwrap();
    assert!(
        content_type.starts_with("application/openmetrics-text; version=1.0.0"),
        "{content_type}"
    );
    assert!(
        page.contains("# TYPE sustainbot_aim_requests counter\n"),
        "{page}"
    );
    assert!(page.contains("# TYPE sustainbot_application info\n"));
    assert!(page.ends_with("# EOF\n"));
}

#[tokio::test]
async fn metrics_disabled_is_404() {
    let app = TestApp::builder().prometheus(false).spawn().await;
    app.get("/metrics", None).await.expect(404, "NOT_FOUND");
}

#[tokio::test]
async fn unknown_path_is_404_endpoint_not_found() {
    let app = TestApp::spawn().await;
    let mut body = app
        .get("/no/such/endpoint", None)
        .await
        .expect(404, "NOT_FOUND");
    // may extend: the trace id; otherwise exactly the contract's body.
    body.as_object_mut().expect("object").remove("trace_id");
    assert_eq!(
        body,
        json!({"error": "Endpoint not found", "code": "NOT_FOUND"})
    );
}

#[tokio::test]
async fn wrong_method_is_405_json_with_a_code() {
    let app = TestApp::spawn().await;
    let body = app
        .get("/governance/validate", None)
        .await
        .expect(405, "METHOD_NOT_ALLOWED");
    assert!(body["error"].is_string(), "{body}");
}

#[tokio::test]
async fn overlong_trace_id_is_400() {
    let app = TestApp::spawn().await;
    let reply = app
        .post_raw(
            "/governance/validate",
            serde_json::to_vec(&governance_request("noop")).expect("json"),
            &[
                ("content-type", "application/json".to_owned()),
                ("x-trace-id", "t".repeat(200)),
            ],
        )
        .await;
    let body = reply.expect(400, "VALIDATION_ERROR");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("X-Trace-ID"),
        "{body}"
    );
}

#[tokio::test]
async fn wrong_method_names_the_allowed_methods() {
    let app = TestApp::spawn().await;
    let reply = app.get("/governance/validate", None).await;
    assert_eq!(reply.status.as_u16(), 405, "{}", reply.text);
    let allow = reply.header("allow").unwrap_or_default();
    assert!(allow.contains("POST"), "Allow header: {allow:?}");
}

#[tokio::test]
async fn longest_accepted_trace_id_is_128_characters() {
    let app = TestApp::spawn().await;
    let trace = "t".repeat(128);
    let reply = app
        .execute(
            &governance_request("noop"),
            &[("x-trace-id", trace.clone())],
        )
        .await;
    assert_eq!(reply.expect_ok(200)["trace_id"], trace.as_str());
    app.execute(
        &governance_request("noop"),
        &[("x-trace-id", "t".repeat(129))],
    )
    .await
    .expect(400, "VALIDATION_ERROR");
}
