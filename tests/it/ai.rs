//! AI steps held to their DRAG mode, against a small Ollama-compatible server on loopback, and
//! HTTP steps against a real local server.

use std::net::SocketAddr;

use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::helpers::{http_workflow, run_request as request, serve, trace, Settings, TestApp};

/// An Ollama stand-in that answers every prompt with "ECHO: <prompt>".
async fn fake_ollama() -> SocketAddr {
    async fn generate(Json(body): Json<Value>) -> Json<Value> {
        let prompt = body["prompt"].as_str().unwrap_or_default();
        Json(json!({"model": body["model"], "response": format!("ECHO: {prompt}"), "done": true}))
    }
    let app = Router::new()
        .route("/api/generate", post(generate))
        .route("/health", get(|| async { "ok" }))
        .route(
            "/broken",
            get(|| async { (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "down") }),
        );
    serve(app).await
}

async fn app_with_model(name: &str, prompt: &str) -> TestApp {
    let port = fake_ollama().await.port();
    TestApp::builder()
        .llm_port(port)
        .workflow(
            name,
            json!({"parameters": {"version": {"type": "string", "default": "v1.2.3"}},
                   "steps": [{"id": "notes", "llm": {"prompt": prompt}}]}),
        )
        .spawn()
        .await
}

#[tokio::test]
async fn an_ai_output_with_you_should_fails_a_research_run_and_is_audited() {
    let app = app_with_model("research", "You should use Docker").await;
    let failed = app
        .execute(&request("research", "research", json!({})), &trace("ai-1"))
        .await
        .expect_run_failed(&app, 500, "PRESCRIPTIVE_LANGUAGE");
    let violation = &failed.body["steps"][0]["violations"][0];
    assert_eq!(violation["phrase"], "you should");
    assert_eq!(
        (violation["start"].as_u64(), violation["end"].as_u64()),
        (Some(6), Some(16))
    );
    let error = failed.record["error"].as_str().unwrap();
    assert!(error.contains("'you should' at bytes 6..16"), "{error}");
    let metrics = app.get("/metrics", None).await.text;
    assert!(metrics.contains("sustainbot_prescriptive_language_detections_total{drag_mode=\"research\",phrase_type=\"you should\"} 1"), "{metrics}");
}

#[tokio::test]
async fn options_not_decisions_pass_and_prompts_are_rendered() {
    let app = app_with_model(
        "research",
        "Options include rolling back {{ parameters.version }}",
    )
    .await;
    let body = app
        .execute(&request("research", "draft", json!({})), &[])
        .await
        .expect_ok(200);
    assert_eq!(
        body["steps"][0]["stdout"],
        "ECHO: Options include rolling back v1.2.3"
    );
}

#[tokio::test]
async fn grunt_and_execute_output_is_not_filtered() {
    let app = app_with_model("directive", "You should restart the service").await;
    app.run_workflow("directive", json!({}))
        .await
        .expect_ok(200);
    app.execute(&request("directive", "grunt", json!({})), &[])
        .await
        .expect_ok(200);
}

#[tokio::test]
async fn a_model_server_that_is_down_fails_the_step_clearly() {
    let app = TestApp::builder()
        .llm_port(9)
        .workflow(
            "notes",
            json!({"steps": [{"id": "notes", "llm": {"prompt": "List the risks"}}]}),
        )
        .spawn()
        .await;
    let body = app
        .execute(&request("notes", "research", json!({})), &[])
        .await
        .expect(500, "WORKFLOW_FAILED");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("cannot reach model server"),
        "{body}"
    );
}

#[tokio::test]
async fn http_steps_check_a_real_endpoint() {
    let base = format!("http://{}", fake_ollama().await);
    let app = TestApp::builder()
        .workflow(
            "health",
            http_workflow(json!({"url": format!("{base}/health"), "expect_status": 200})),
        )
        .workflow(
            "broken",
            http_workflow(json!({"url": format!("{base}/broken"), "retries": 1, "backoff_ms": 10})),
        )
        .spawn()
        .await;
    let body = app.run_workflow("health", json!({})).await.expect_ok(200);
    assert_eq!(body["steps"][0]["http_status"], 200);
    assert_eq!(body["steps"][0]["stdout"], "ok");
    let body = app
        .run_workflow("broken", json!({}))
        .await
        .expect(500, "WORKFLOW_FAILED");
    assert_eq!(body["steps"][0]["http_status"], 500);
    assert!(body["error"].as_str().unwrap().contains("500"), "{body}");
}
