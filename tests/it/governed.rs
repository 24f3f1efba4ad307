//! `POST /workflows/governed/execute`: the governed pipeline and its audit records.

use serde_json::{json, Value};

use crate::helpers::{
    demo_invalid_request, governance_request, short_name_request, trace, Settings, TestApp, JAKE,
};

fn trace_of(body: &Value) -> String {
    body["trace_id"]
        .as_str()
        .unwrap_or_else(|| panic!("trace_id expected: {body}"))
        .to_owned()
}

#[tokio::test]
async fn success_returns_the_contract_fields() {
    let app = TestApp::spawn().await;
    let body = app
        .execute(&governance_request("noop"), &[])
        .await
        .expect_ok(200);
    assert_eq!(body["success"], true);
    assert!(body["trace_id"].is_string(), "{body}");
    assert!(body["outcome"].is_string(), "{body}");
    assert_eq!(body["audit_logged"], true);
    assert_eq!(
        body["governance_summary"],
        "Governance Context:\n- Actor: Jake Smith (DevOps Engineer)\n- Mission: Deploy app to staging with zero downtime\n- DRAG Mode: EXECUTE\n- Input Sources: 1 (slack_webhook)\n- Success Criteria: 2\n- Constraints: 2"
    );
    let duration = body["duration_seconds"].as_f64().expect("duration number");
    assert!(duration >= 0.0, "{body}");
}

#[tokio::test]
async fn client_trace_id_is_echoed_in_header_and_body() {
    let app = TestApp::spawn().await;
    let reply = app
        .execute(&governance_request("noop"), &trace("client-trace-0001"))
        .await;
    let body = reply.expect_ok(200);
    assert_eq!(body["trace_id"], "client-trace-0001");
    assert_eq!(reply.header("x-trace-id"), Some("client-trace-0001"));
}

#[tokio::test]
async fn without_client_trace_id_a_fresh_uuid_v4_is_used() {
    let app = TestApp::spawn().await;
    let first = app.execute(&governance_request("noop"), &[]).await;
    let second = app.execute(&governance_request("noop"), &[]).await;
    let (a, b) = (
        trace_of(&first.expect_ok(200)),
        trace_of(&second.expect_ok(200)),
    );
    for (reply, trace) in [(&first, &a), (&second, &b)] {
        let uuid = uuid::Uuid::parse_str(trace).expect("trace id is a UUID");
        assert_eq!(uuid.get_version_num(), 4, "{trace}");
        assert_eq!(reply.header("x-trace-id"), Some(trace.as_str()));
    }
    assert_ne!(a, b);
}

#[tokio::test]
async fn success_is_audited_as_started_then_success_on_one_chain() {
    let app = TestApp::spawn().await;
    let body = app
        .execute(&governance_request("noop"), &trace("audit-chain-1"))
        .await
        .expect_ok(200);
    assert_eq!(body["audit_logged"], true);
    let records = app.audit_for("audit-chain-1");
    assert_eq!(records.len(), 2, "{records:#?}");
    let (started, success) = (&records[0], &records[1]);
    assert_eq!(started["outcome"], "started");
    assert_eq!(success["outcome"], "success");
    assert_eq!(success["prev_hash"], started["integrity_hash"]);
    assert_eq!(
        success["seq"].as_u64().expect("seq"),
        started["seq"].as_u64().expect("seq") + 1
    );
    // The contract's field names.
    for field in [
        "trace_id",
        "timestamp",
        "aim",
        "drag_mode",
        "workflow_name",
        "parameters",
        "outcome",
        "error",
        "duration_seconds",
        "integrity_hash",
    ] {
        assert!(success.get(field).is_some(), "{field} missing: {success}");
    }
    let timestamp = success["timestamp"].as_str().expect("timestamp");
    assert!(timestamp.ends_with('Z'), "UTC ISO 8601: {timestamp}");
    assert!(
        chrono::DateTime::parse_from_rfc3339(timestamp).is_ok(),
        "{timestamp}"
    );
    assert_eq!(success["workflow_name"], "noop");
    assert_eq!(success["drag_mode"], "execute");
    assert_eq!(success["aim"]["actor"]["name"], "Jake Smith");
    assert_eq!(
        success["parameters"],
        json!({"environment": "staging", "version": "v1.2.3"})
    );
    assert!(success["duration_seconds"].is_number(), "{success}");
    let report = app.verify_audit();
    assert!(report.is_valid(), "{report:?}");
    assert_eq!(report.records, 2);
}

#[tokio::test]
async fn actor_mismatch_is_403_and_audited_as_rejected() {
    let app = TestApp::spawn().await;
    let mut request = governance_request("noop");
    request["aim"]["actor"]["email"] = json!("mallory@example.org");
    let refused = app
        .execute(&request, &trace("mismatch-1"))
        .await
        .expect_refused(&app, 403, "ACTOR_MISMATCH");
    assert_eq!(refused.body["trace_id"], "mismatch-1");
    let record = refused.record;
    assert_eq!(record["principal"]["actor"], JAKE);
    let error = record["error"].as_str().expect("error recorded");
    assert!(error.contains("mallory@example.org"), "{error}");
    assert!(app.verify_audit().is_valid());
}

#[tokio::test]
async fn missing_aim_email_is_filled_from_the_token_in_the_audit_record() {
    let app = TestApp::spawn().await;
    let mut request = governance_request("noop");
    request["aim"]["actor"]
        .as_object_mut()
        .expect("actor object")
        .remove("email");
    app.execute(&request, &trace("fill-email-1"))
        .await
        .expect_ok(200);
    let records = app.audit_for("fill-email-1");
    assert_eq!(records.len(), 2, "{records:#?}");
    for record in &records {
        assert_eq!(record["aim"]["actor"]["email"], JAKE, "{record}");
    }
}

#[tokio::test]
async fn shape_error_is_400_governance_error_with_trace_id_and_audited_as_rejected() {
    let app = TestApp::spawn().await;
    let refused = app
        .execute(&demo_invalid_request(), &trace("shape-1"))
        .await
        .expect_refused(&app, 400, "GOVERNANCE_ERROR");
    let (body, record) = (refused.body, refused.record);
    assert_eq!(body["trace_id"], "shape-1");
    let error = body["error"].as_str().expect("error");
    assert!(error.starts_with("Invalid governance request: "), "{error}");
    assert_eq!(record["principal"]["actor"], JAKE);
    assert_eq!(record["error"], error);
    assert_eq!(record["workflow_name"], "deploy-to-staging");
}

#[tokio::test]
async fn business_rule_failure_is_400_and_audited_as_rejected() {
    let app = TestApp::spawn().await;
    let refused = app
        .execute(&short_name_request("noop"), &trace("rule-1"))
        .await
        .expect_refused(&app, 400, "GOVERNANCE_VALIDATION_FAILED");
    let error = "Actor name must be at least 3 characters (real person required)";
    assert_eq!(refused.body["error"], error);
    assert_eq!(refused.body["trace_id"], "rule-1");
    assert_eq!(refused.record["error"], error);
}

#[tokio::test]
async fn empty_body_is_request_body_required_and_audited_as_rejected() {
    let app = TestApp::spawn().await;
    let refused = app
        .execute(&json!({}), &trace("empty-1"))
        .await
        .expect_refused(&app, 400, "VALIDATION_ERROR");
    assert_eq!(refused.body["error"], "Request body required");
}

#[tokio::test]
async fn non_json_body_from_an_authenticated_caller_is_audited_as_rejected() {
    let app = TestApp::spawn().await;
    let refused = app
        .execute_raw("this is not json", &trace("not-json-1"))
        .await
        .expect_refused(&app, 400, "VALIDATION_ERROR");
    assert_eq!(refused.body["trace_id"], "not-json-1");
    assert_eq!(refused.record["principal"]["actor"], JAKE);
}

#[tokio::test]
async fn oversized_body_from_an_authenticated_caller_is_413_and_audited_as_rejected() {
    let app = TestApp::spawn().await;
    let huge = format!("{{\"padding\": \"{}\"}}", "x".repeat(1024 * 1024 + 1));
    let refused = app
        .execute_raw(huge, &trace("too-large-1"))
        .await
        .expect_refused(&app, 413, "PAYLOAD_TOO_LARGE");
    assert_eq!(refused.body["trace_id"], "too-large-1");
}

#[tokio::test]
async fn path_traversal_workflow_name_is_400_validation_error_audited_as_failure() {
    let app = TestApp::spawn().await;
    let refused = app
        .execute(&governance_request("../etc/passwd"), &trace("traversal-1"))
        .await
        .expect_refused_as(&app, 400, "VALIDATION_ERROR", "failure");
    assert_eq!(
        refused.body["error"],
        "Invalid workflow name: ../etc/passwd. Must contain only alphanumerics, hyphens, and underscores."
    );
    assert_eq!(refused.body["trace_id"], "traversal-1");
    assert_eq!(refused.record["workflow_name"], "../etc/passwd");
}

#[tokio::test]
async fn unknown_workflow_is_404_workflow_not_found_audited_as_failure() {
    let app = TestApp::spawn().await;
    let refused = app
        .execute(&governance_request("does-not-exist"), &trace("unknown-1"))
        .await
        .expect_refused_as(&app, 404, "WORKFLOW_NOT_FOUND", "failure");
    assert_eq!(refused.body["trace_id"], "unknown-1");
    let error = refused.body["error"].as_str().expect("error");
    assert!(error.contains("does-not-exist"), "{error}");
    assert_eq!(refused.record["workflow_name"], "does-not-exist");
}

#[tokio::test]
async fn failing_workflow_is_500_success_false_audited_as_failure() {
    let app = TestApp::spawn().await;
    let failed = app
        .execute(&governance_request("with-steps"), &trace("fails-1"))
        .await
        .expect_run_failed(&app, 500, "WORKFLOW_FAILED");
    let body = failed.body;
    assert_eq!(body["success"], false);
    assert_eq!(body["trace_id"], "fails-1");
    assert_eq!(body["audit_logged"], true);
    assert!(body["governance_summary"].is_string(), "{body}");
    assert!(body["duration_seconds"].is_number(), "{body}");
    let error = body["error"].as_str().expect("error");
    assert!(error.contains("build"), "{error}");
    assert_eq!(failed.record["error"], error);
    assert!(app.verify_audit().is_valid());
}

#[tokio::test]
async fn governance_disabled_still_validates_and_audits_governed_runs() {
    let app = TestApp::builder().governance(false).spawn().await;
    let body = app
        .execute(&governance_request("noop"), &[])
        .await
        .expect_ok(200);
    assert_eq!(body["success"], true);
    assert_eq!(body["audit_logged"], true);
    // Validation stays on.
    app.execute(&short_name_request("noop"), &[])
        .await
        .expect(400, "GOVERNANCE_VALIDATION_FAILED");
    let outcomes: Vec<String> = app
        .audit_lines()
        .iter()
        .map(|r| r["outcome"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(outcomes, ["started", "success", "rejected"]);
    assert!(app
        .audit_lines()
        .iter()
        .all(|r| r.get("governed").is_none()));
}

#[tokio::test]
async fn a_refused_request_records_large_members_by_size_and_hash_only() {
    let app = TestApp::spawn().await;
    let mut body = governance_request("noop");
    body["aim"]["actor"]["name"] = json!("AB");
    body["parameters"] = json!({"blob": "x".repeat(200_000)});
    let record = app
        .execute(&body, &trace("big-1"))
        .await
        .expect_refused(&app, 400, "GOVERNANCE_VALIDATION_FAILED")
        .record;
    assert_eq!(record["parameters"]["truncated"], true);
    assert!(record["parameters"]["bytes"].as_u64().unwrap() > 200_000);
    assert!(record["parameters"]["sha256"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    assert_eq!(
        record["aim"]["actor"]["name"], "AB",
        "small members are kept whole"
    );
}

#[tokio::test]
async fn a_client_cannot_mark_its_own_request_ungoverned_on_the_record() {
    let app = TestApp::spawn().await;
    let mut body = governance_request("noop");
    body["governed"] = json!(false);
    app.execute(&body, &trace("spoof-ok")).await.expect_ok(200);
    body["aim"]["actor"]["name"] = json!("AB");
    app.execute(&body, &trace("spoof-refused"))
        .await
        .expect_refused(&app, 400, "GOVERNANCE_VALIDATION_FAILED");
    let lines = app.audit_lines();
    assert_eq!(lines.len(), 3);
    assert!(
        lines.iter().all(|r| r.get("governed").is_none()),
        "{lines:?}"
    );
}
