//! `POST /governance/validate`: the pre-flight check, no authentication.

use serde_json::{json, Value};

use crate::helpers::{
    demo_invalid_request, governance_request, short_name_request, Reply, TestApp,
};

const PATH: &str = "/governance/validate";

const EXPECTED_SUMMARY: &str = "Governance Context:\n\
- Actor: Jake Smith (DevOps Engineer)\n\
- Mission: Deploy app to staging with zero downtime\n\
- DRAG Mode: EXECUTE\n\
- Input Sources: 1 (slack_webhook)\n\
- Success Criteria: 2\n\
- Constraints: 2";

/// POSTs `request` to the pre-flight check, without a token.
async fn validate(app: &TestApp, request: &Value) -> Reply {
    app.post_json(PATH, request, None).await
}

/// POSTs `body` as it is, labelled JSON, to the pre-flight check.
async fn validate_raw(app: &TestApp, body: impl Into<reqwest::Body>) -> Reply {
    app.post_raw(
        PATH,
        body,
        &[("content-type", "application/json".to_owned())],
    )
    .await
}

fn field_paths(body: &Value) -> Vec<String> {
    body["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("errors array expected: {body}"))
        .iter()
        .map(|e| e["field"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn valid_request_returns_exactly_valid_summary_drag_mode_actor() {
    let app = TestApp::spawn().await;
    let reply = validate(&app, &governance_request("deploy-to-staging")).await;
    let body = reply.expect_ok(200);
    assert_eq!(
        body,
        json!({
            "valid": true,
            "summary": EXPECTED_SUMMARY,
            "drag_mode": "execute",
            "actor": "Jake Smith",
        })
    );
}

#[tokio::test]
async fn summary_cuts_long_objective_to_80_chars_and_lists_first_three_source_types() {
    let app = TestApp::spawn().await;
    let mut request = governance_request("deploy-to-staging");
    let objective = "x".repeat(81);
    request["aim"]["mission"]["objective"] = json!(objective);
    request["aim"]["input"]["sources"] = json!([
        {"type": "a", "description": "d"},
        {"type": "b", "description": "d"},
        {"type": "c", "description": "d"},
        {"type": "d", "description": "d"},
    ]);
    request["aim"]["input"]
        .as_object_mut()
        .expect("input object")
        .remove("constraints");
    request["drag_mode"] = json!("research");
    let body = validate(&app, &request).await.expect_ok(200);
    let expected = format!(
        "Governance Context:\n- Actor: Jake Smith (DevOps Engineer)\n- Mission: {}...\n- DRAG Mode: RESEARCH\n- Input Sources: 4 (a, b, c)\n- Success Criteria: 2\n- Constraints: 0",
        "x".repeat(80)
    );
    assert_eq!(body["summary"], expected.as_str());
    assert_eq!(body["drag_mode"], "research");
}

#[tokio::test]
async fn demo_invalid_request_is_a_shape_error_naming_the_objective_and_listing_the_name() {
    let app = TestApp::spawn().await;
    let body = validate(&app, &demo_invalid_request())
        .await
        .expect(400, "GOVERNANCE_ERROR");
    assert_eq!(body["valid"], false);
    let error = body["error"].as_str().expect("error string");
    assert!(error.starts_with("Invalid governance request: "), "{error}");
    assert!(error.contains("aim.mission.objective"), "{error}");
    let fields = field_paths(&body);
    assert!(
        fields.iter().any(|f| f == "aim.mission.objective"),
        "{fields:?}"
    );
    assert!(fields.iter().any(|f| f == "aim.actor.name"), "{fields:?}");
}

#[tokio::test]
async fn short_actor_name_reaches_the_business_rule() {
    let app = TestApp::spawn().await;
    let body = validate(&app, &short_name_request("deploy-to-staging"))
        .await
        .expect(400, "GOVERNANCE_VALIDATION_FAILED");
    assert_eq!(body["valid"], false);
    assert_eq!(
        body["error"],
        "Actor name must be at least 3 characters (real person required)"
    );
}

#[tokio::test]
async fn analysis_drag_mode_is_refused_as_human_only() {
    let app = TestApp::spawn().await;
    let mut request = governance_request("deploy-to-staging");
    request["drag_mode"] = json!("analysis");
    let body = validate(&app, &request)
        .await
        .expect(400, "GOVERNANCE_ERROR");
    let error = body["error"].as_str().expect("error string");
    assert!(error.starts_with("Invalid governance request: "), "{error}");
    assert!(error.contains("Analysis is human-only"), "{error}");
}

#[tokio::test]
async fn empty_body_is_request_body_required() {
    let app = TestApp::spawn().await;
    let body = validate_raw(&app, Vec::new())
        .await
        .expect(400, "VALIDATION_ERROR");
    assert_eq!(body["error"], "Request body required");
}

#[tokio::test]
async fn empty_object_is_request_body_required() {
    let app = TestApp::spawn().await;
    let body = validate(&app, &json!({}))
        .await
        .expect(400, "VALIDATION_ERROR");
    assert_eq!(body["error"], "Request body required");
}

#[tokio::test]
async fn non_json_body_is_a_validation_error() {
    let app = TestApp::spawn().await;
    let body = validate_raw(&app, "workflow_name=deploy")
        .await
        .expect(400, "VALIDATION_ERROR");
    let error = body["error"].as_str().expect("error string");
    assert!(error.contains("not valid JSON"), "{error}");
}

#[tokio::test]
async fn deeply_nested_json_is_400_and_the_server_survives() {
    let app = TestApp::spawn().await;
    let depth = 10_000;
    let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let body = format!(r#"{{"workflow_name": {nested}}}"#);
    validate_raw(&app, body)
        .await
        .expect(400, "VALIDATION_ERROR");
    let health = app.get("/health", None).await.expect_ok(200);
    assert_eq!(health["status"], "healthy");
}

#[tokio::test]
async fn body_over_one_mebibyte_is_413_payload_too_large() {
    let app = TestApp::spawn().await;
    let mut request = governance_request("deploy-to-staging");
    request["parameters"]["padding"] = json!("x".repeat(1024 * 1024 + 1));
    let body = validate(&app, &request)
        .await
        .expect(413, "PAYLOAD_TOO_LARGE");
    assert!(body["error"].is_string(), "{body}");
}
