//! `GET /workflows` and the original's ungoverned `POST /workflows/{name}/execute`.

use serde_json::json;

use crate::helpers::{TestApp, JAKE};

#[tokio::test]
async fn list_workflows_returns_sorted_names_and_count() {
    let app = TestApp::builder()
        .workflow("zeta", json!({"steps": []}))
        .workflow("alpha", json!({"description": "first", "steps": []}))
        .spawn()
        .await;
    let body = app
        .get("/workflows", Some(&app.jake()))
        .await
        .expect_ok(200);
    assert_eq!(
        body,
        json!({"workflows": ["alpha", "noop", "with-steps", "zeta"], "count": 4})
    );
}

#[tokio::test]
async fn list_workflows_without_token_is_401() {
    let app = TestApp::spawn().await;
    app.get("/workflows", None)
        .await
        .expect(401, "AUTH_REQUIRED");
}

#[tokio::test]
async fn ungoverned_execute_with_governance_enabled_is_governance_required_and_audited() {
    let app = TestApp::spawn().await;
    let reply = app
        .post_raw(
            "/workflows/noop/execute",
            "{}",
            &[
                ("content-type", "application/json".to_owned()),
                ("authorization", format!("Bearer {}", app.jake())),
                ("x-trace-id", "ungoverned-1".to_owned()),
            ],
        )
        .await;
    let body = reply.expect(400, "GOVERNANCE_REQUIRED");
    let error = body["error"].as_str().expect("error");
    assert!(error.contains("/workflows/governed/execute"), "{error}");
    assert_eq!(body["trace_id"], "ungoverned-1");
    let records = app.audit_for("ungoverned-1");
    assert_eq!(records.len(), 1, "{records:#?}");
    assert_eq!(records[0]["outcome"], "rejected");
    assert_eq!(records[0]["workflow_name"], "noop");
    assert_eq!(records[0]["principal"]["actor"], JAKE);
    assert!(app.verify_audit().is_valid());
}

#[tokio::test]
async fn ungoverned_execute_without_token_is_401() {
    let app = TestApp::spawn().await;
    app.post_json("/workflows/noop/execute", &json!({}), None)
        .await
        .expect(401, "AUTH_REQUIRED");
    assert!(app.audit_lines().is_empty());
}

#[tokio::test]
async fn ungoverned_execute_with_governance_disabled_runs() {
    let app = TestApp::builder().governance(false).spawn().await;
    let body = app
        .post_json(
            "/workflows/noop/execute",
            &json!({"environment": "dev"}),
            Some(&app.jake()),
        )
        .await
        .expect_ok(200);
    assert_eq!(body["success"], true, "{body}");
    assert_eq!(body["workflow"], "noop");
    assert!(app.audit_lines().is_empty());
}

#[tokio::test]
async fn ungoverned_failing_workflow_with_governance_disabled_is_500_execution_failed() {
    let app = TestApp::builder().governance(false).spawn().await;
    let body = app
        .post_json(
            "/workflows/with-steps/execute",
            &json!({}),
            Some(&app.jake()),
        )
        .await
        .expect(500, "EXECUTION_FAILED");
    let error = body["error"].as_str().expect("error");
    assert!(error.contains("with-steps"), "{error}");
}

#[tokio::test]
async fn ungoverned_unknown_workflow_with_governance_disabled_is_404() {
    let app = TestApp::builder().governance(false).spawn().await;
    app.post_json("/workflows/nope/execute", &json!({}), Some(&app.jake()))
        .await
        .expect(404, "WORKFLOW_NOT_FOUND");
}
