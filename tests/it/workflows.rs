//! `GET /workflows` and the original's ungoverned `POST /workflows/{name}/execute`.

use serde_json::json;

use crate::helpers::{Settings, TestApp, JAKE};

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
    let refused = reply.expect_refused(&app, 400, "GOVERNANCE_REQUIRED");
    let error = refused.body["error"].as_str().expect("error");
    assert!(error.contains("/workflows/governed/execute"), "{error}");
    assert_eq!(refused.body["trace_id"], "ungoverned-1");
    assert_eq!(refused.record["workflow_name"], "noop");
    assert_eq!(refused.record["principal"]["actor"], JAKE);
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
async fn ungoverned_execute_with_governance_disabled_runs_on_the_record_as_ungoverned() {
    let app = TestApp::builder().governance(false).spawn().await;
    let reply = app
        .post_raw(
            "/workflows/noop/execute",
            br#"{"environment": "dev"}"#.to_vec(),
            &[
                ("x-trace-id", "ungov-1".to_owned()),
                ("authorization", format!("Bearer {}", app.jake())),
            ],
        )
        .await;
    let body = reply.expect_ok(200);
    assert_eq!(body["success"], true, "{body}");
    assert_eq!(body["workflow"], "noop");
    // As the contract has it: a run that happened without governance is on the trail as such.
    assert_eq!(app.outcomes("ungov-1"), ["started", "success"]);
    let records = app.audit_for("ungov-1");
    for record in &records {
        assert_eq!(record["governed"], false, "{record}");
        assert_eq!(record["aim"], json!(null), "{record}");
        assert_eq!(record["parameters"]["environment"], "dev", "{record}");
        assert_eq!(record["principal"]["actor"], JAKE, "{record}");
    }
    // And in the live view, like any other run.
    let run = app
        .get("/runs/ungov-1", Some(&app.jake()))
        .await
        .expect_ok(200);
    assert_eq!(run["status"], "succeeded", "{run}");
    assert!(app.verify_audit().is_valid());
}

#[tokio::test]
async fn ungoverned_runs_get_the_parameter_schema_and_roles_of_their_workflow() {
    let app = TestApp::builder()
        .governance(false)
        .workflow(
            "typed",
            json!({"parameters": {"version": {"type": "string", "required": true}},
                   "roles": ["deployer"], "drag_modes": ["draft"], "steps": []}),
            // drag_modes do not apply to an ungoverned run: it declares no mode.
        )
        .spawn()
        .await;
    let deployer = app.token(JAKE, "deployer");
    let body = app
        .post_json("/workflows/typed/execute", &json!({}), Some(&deployer))
        .await
        .expect_refused(&app, 400, "INVALID_PARAMETERS")
        .body;
    assert!(body["errors"][0]["field"]
        .as_str()
        .unwrap()
        .contains("version"));
    app.post_json(
        "/workflows/typed/execute",
        &json!({"version": "v1"}),
        Some(&app.jake()),
    )
    .await
    .expect_refused(&app, 403, "FORBIDDEN_ROLE");
    app.post_json(
        "/workflows/typed/execute",
        &json!({"version": "v1"}),
        Some(&deployer),
    )
    .await
    .expect_ok(200);
    let codes: Vec<String> = app
        .audit_lines()
        .iter()
        .filter(|r| r["outcome"] == "rejected")
        .map(|r| r["code"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(codes, ["INVALID_PARAMETERS", "FORBIDDEN_ROLE"]);
}

#[tokio::test]
async fn an_ungoverned_run_is_cancelled_and_recorded_when_shutdown_drains_the_gate() {
    let app = TestApp::builder()
        .governance(false)
        .workflow(
            "slow",
            json!({"steps": [{"id": "wait", "command": ["sleep", "30"]}]}),
        )
        .spawn()
        .await;
    let client = app.client.clone();
    let url = app.url("/workflows/slow/execute");
    let token = app.jake();
    let running = tokio::spawn(async move {
        client
            .post(url)
            .bearer_auth(token)
            .header("x-trace-id", "ungov-slow")
            .json(&json!({}))
            .send()
            .await
            .unwrap()
            .status()
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while app
        .state
        .gate
        .runs()
        .get("ungov-slow")
        .is_none_or(|run| run.status().as_str() != "running")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the run never started"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let started = std::time::Instant::now();
    let cancelled = app
        .state
        .gate
        .drain(
            std::time::Duration::ZERO,
            std::time::Duration::from_secs(10),
        )
        .await;
    assert_eq!(cancelled, 1);
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert_eq!(running.await.unwrap().as_u16(), 500);
    assert_eq!(app.outcomes("ungov-slow"), ["started", "cancelled"]);
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

#[tokio::test]
async fn a_null_body_is_not_an_empty_one() {
    let app = TestApp::builder().governance(false).spawn().await;
    let auth = ("authorization", format!("Bearer {}", app.jake()));
    let body = app
        .post_raw(
            "/workflows/noop/execute",
            b"null".to_vec(),
            std::slice::from_ref(&auth),
        )
        .await
        .expect(400, "VALIDATION_ERROR");
    assert!(
        body["error"].as_str().unwrap().contains("JSON object"),
        "{body}"
    );
    app.post_raw("/runs/nope/approve", b"null".to_vec(), &[auth])
        .await
        .expect(400, "VALIDATION_ERROR");
}
