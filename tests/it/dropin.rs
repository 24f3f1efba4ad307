//! What the original's clients and monitors read: health fields with their original meaning,
//! its metrics, `success: false` on error bodies of the run endpoints, `OPTIONS`.

use serde_json::{json, Value};

use crate::helpers::{governance_request, serve, Settings, TestApp, GOVERNED};

#[tokio::test]
async fn health_says_whether_the_model_and_openclaw_answer_and_names_bad_files_without_paths() {
    // OpenClaw answers here, the model server does not (nothing listens on its port).
    let openclaw = serve(axum::Router::new()).await;
    let app = TestApp::builder()
        .env("OPENCLAW_URL", &format!("http://{openclaw}"))
        .workflow_file("broken.json", "{\"steps\": [{\"id\": \"x\"}]}")
        .spawn()
        .await;
    for path in ["/health", "/status"] {
        let body = app.get(path, None).await.expect_ok(200);
        let components = &body["components"];
        assert_eq!(components["llm"]["healthy"], false, "{path}: {body}");
        assert_eq!(
            components["workflows"]["healthy"], true,
            "OpenClaw answers: {body}"
        );
        assert_eq!(components["workflows"]["files_valid"], false, "{body}");
        let invalid = &components["workflows"]["invalid"][0];
        assert_eq!(invalid["file"], "broken.json", "{body}");
        let text = body.to_string();
        let dir = app.workflows_dir.to_string_lossy().into_owned();
        assert!(!text.contains(&dir), "no server path in {path}: {text}");
    }
}

#[tokio::test]
async fn metrics_have_application_info_and_count_one_entry_per_run_outcome() {
    let app = TestApp::spawn().await;
    app.execute(&governance_request("noop"), &[])
        .await
        .expect_ok(200);
    let metrics = app.get("/metrics", None).await.text;
    assert!(
        metrics.contains(&format!(
            "sustainbot_application_info{{version=\"{}\",build=\"debug\"}} 1",
            env!("CARGO_PKG_VERSION")
        )),
        "{metrics}"
    );
    let line = |prefix: &str| {
        metrics
            .lines()
            .filter(|l| l.starts_with(prefix))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        line("sustainbot_audit_log_entries_total{"),
        ["sustainbot_audit_log_entries_total{outcome=\"success\",drag_mode=\"execute\"} 1"]
    );
    assert_eq!(
        line("sustainbot_audit_intent_records_total{"),
        ["sustainbot_audit_intent_records_total{drag_mode=\"execute\"} 1"]
    );
}

#[tokio::test]
async fn every_error_body_of_the_run_endpoints_says_success_false() {
    let app = TestApp::spawn().await;
    // No token, an unknown workflow (audited), a bad body, the ungoverned route while governed.
    let no_token = app
        .post_json(GOVERNED, &governance_request("noop"), None)
        .await;
    assert_eq!(no_token.expect(401, "AUTH_REQUIRED")["success"], false);
    let unknown = app
        .execute(&governance_request("no-such-flow"), &[])
        .await
        .expect(404, "WORKFLOW_NOT_FOUND");
    assert_eq!(unknown["success"], false);
    assert_eq!(unknown["audit_logged"], true);
    let bad = app.execute(&json!({"workflow_name": "noop"}), &[]).await;
    assert_eq!(bad.expect(400, "GOVERNANCE_ERROR")["success"], false);
    let token = app.jake();
    let ungoverned = app
        .post_json("/workflows/noop/execute", &json!({}), Some(&token))
        .await
        .expect(400, "GOVERNANCE_REQUIRED");
    assert_eq!(ungoverned["success"], false);
    // Other endpoints' errors are unchanged.
    let other = app
        .get("/runs/nope", Some(&token))
        .await
        .expect(404, "NOT_FOUND");
    assert_eq!(other.get("success"), None::<&Value>);
}

#[tokio::test]
async fn options_answers_with_the_allowed_methods() {
    let app = TestApp::spawn().await;
    let client = reqwest::Client::new();
    let reply = client
        .request(reqwest::Method::OPTIONS, app.url(GOVERNED))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status().as_u16(), 200);
    let allow = reply.headers()["allow"].to_str().unwrap().to_owned();
    assert_eq!(allow, "POST,OPTIONS");
    let health = client
        .request(reqwest::Method::OPTIONS, app.url("/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);
    assert!(health.headers()["allow"].to_str().unwrap().contains("GET"));
    let nowhere = client
        .request(reqwest::Method::OPTIONS, app.url("/nowhere"))
        .send()
        .await
        .unwrap();
    assert_eq!(nowhere.status().as_u16(), 404);
}
