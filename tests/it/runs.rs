//! Runs: asynchronous execution, watching, cancelling, and who may see what.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::{governance_request as request, trace, TestApp, JAKE};

async fn app() -> TestApp {
    TestApp::builder()
        .workflow(
            "slow",
            json!({"steps": [{"id": "wait", "command": ["sleep", "30"]}]}),
        )
        .workflow(
            "quick",
            json!({"steps": [{"id": "hi", "command": ["echo", "hi"]}]}),
        )
        .spawn()
        .await
}

async fn start_async(app: &TestApp, workflow: &str, trace: &str) -> Value {
    let reply = app
        .execute(
            &request(workflow),
            &[
                ("x-trace-id", trace.to_owned()),
                ("prefer", "respond-async".to_owned()),
            ],
        )
        .await;
    assert_eq!(
        reply.header("location"),
        Some(format!("/runs/{trace}").as_str())
    );
    reply.expect_ok(202)
}

async fn wait_for(app: &TestApp, trace: &str, status: &str) -> Value {
    app.wait_for_run(trace, status, Duration::from_secs(20))
        .await
}

#[tokio::test]
async fn an_async_run_answers_202_and_can_be_watched_to_the_end() {
    let app = app().await;
    let accepted = start_async(&app, "quick", "async-1").await;
    assert_eq!(accepted["trace_id"], "async-1");
    assert_eq!(accepted["status_url"], "/runs/async-1");
    let done = wait_for(&app, "async-1", "succeeded").await;
    assert_eq!(done["steps"][0]["stdout"], "hi\n");
    assert!(done["finished_at"].is_string());
    assert_eq!(app.outcomes("async-1"), ["started", "success"]);
}

#[tokio::test]
async fn the_body_flag_also_makes_a_run_async() {
    let app = app().await;
    let mut body = request("quick");
    body["async"] = json!(true);
    app.execute(&body, &trace("async-2")).await.expect_ok(202);
    wait_for(&app, "async-2", "succeeded").await;
}

#[tokio::test]
async fn an_invalid_async_request_is_still_refused_synchronously() {
    let app = app().await;
    let mut body = request("quick");
    body["aim"]["actor"]["name"] = json!("AB");
    body["async"] = json!(true);
    app.execute(&body, &[])
        .await
        .expect(400, "GOVERNANCE_VALIDATION_FAILED");
}

#[tokio::test]
async fn cancelling_a_running_run_kills_its_step_and_records_cancelled() {
    let app = app().await;
    start_async(&app, "slow", "cancel-1").await;
    let running = wait_for(&app, "cancel-1", "running").await;
    assert_eq!(running["current_step"], "wait");
    let started = Instant::now();
    let body = app
        .post_empty("/runs/cancel-1/cancel", &app.jake())
        .await
        .expect_ok(200);
    assert_eq!(body["status"], "cancelling");
    let done = wait_for(&app, "cancel-1", "cancelled").await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the 30 s sleep was killed"
    );
    assert_eq!(done["cancelled_by"], JAKE);
    let records = app.audit_for("cancel-1");
    assert_eq!(records.last().unwrap()["outcome"], "cancelled");
    assert_eq!(records.last().unwrap()["code"], "CANCELLED");
    assert!(app.verify_audit().is_valid());
    // A finished run cannot be cancelled again.
    app.post_empty("/runs/cancel-1/cancel", &app.jake())
        .await
        .expect(409, "RUN_FINISHED");
}

#[tokio::test]
async fn only_the_accountable_human_admins_and_auditors_see_a_run() {
    let app = app().await;
    start_async(&app, "quick", "mine-1").await;
    wait_for(&app, "mine-1", "succeeded").await;
    let stranger = app.token("mallory@example.org", "user");
    app.get("/runs/mine-1", Some(&stranger))
        .await
        .expect(404, "NOT_FOUND");
    app.post_empty("/runs/mine-1/cancel", &stranger)
        .await
        .expect(404, "NOT_FOUND");
    let listed = app.get("/runs", Some(&stranger)).await.expect_ok(200);
    assert_eq!(listed["count"], 0);
    let auditor = app.token("audit@example.org", "auditor");
    app.get("/runs/mine-1", Some(&auditor)).await.expect_ok(200);
    let all = app
        .get("/runs?status=succeeded&workflow=quick", Some(&auditor))
        .await
        .expect_ok(200);
    assert_eq!(all["runs"][0]["trace_id"], "mine-1");
    app.get("/runs?status=bogus", Some(&auditor))
        .await
        .expect(400, "VALIDATION_ERROR");
    app.get("/runs", None).await.expect(401, "AUTH_REQUIRED");
}

#[tokio::test]
async fn a_run_can_be_watched_as_server_sent_events() {
    let app = TestApp::builder()
        .workflow(
            "steps",
            json!({"steps": [{"id": "one", "command": ["sh", "-c", "sleep 0.3; echo first"]},
                             {"id": "two", "command": ["echo", "second"]}]}),
        )
        .spawn()
        .await;
    app.execute(
        &request("steps"),
        &[
            ("x-trace-id", "sse-1".to_owned()),
            ("prefer", "respond-async".to_owned()),
        ],
    )
    .await
    .expect_ok(202);
    let mut response = app
        .client
        .get(app.url("/runs/sse-1/events"))
        .bearer_auth(app.jake())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut text = String::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while let Ok(Some(chunk)) = tokio::time::timeout_at(deadline.into(), response.chunk())
        .await
        .unwrap_or(Ok(None))
    {
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let events: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect();
    assert_eq!(events.first(), Some(&"run"), "{text}");
    assert!(events.contains(&"step_finished"), "{text}");
    assert!(text.contains("\"stdout\":\"second\\n\""), "{text}");
    assert!(
        text.contains("\"status\":\"succeeded\""),
        "the stream ends with the final status: {text}"
    );
}

#[tokio::test]
async fn a_human_override_of_an_output_is_recorded_with_hashes_and_counted() {
    let app = app().await;
    app.execute(&request("quick"), &trace("ovr-1"))
        .await
        .expect_ok(200);
    let override_body =
        json!({"step": "hi", "replacement": "hello, edited by a human", "reason": "tone"});
    let reply = app
        .post_json("/runs/ovr-1/override", &override_body, Some(&app.jake()))
        .await
        .expect_ok(200);
    assert_eq!(reply["recorded"], true);
    let record = app
        .audit_for("ovr-1")
        .into_iter()
        .find(|r| r["kind"] == "override")
        .expect("override audited");
    assert_eq!(record["step"], "hi");
    assert_eq!(record["actor"]["actor"], JAKE);
    assert_eq!(record["reason"], "tone");
    assert_eq!(record["before_sha256"], reply["before_sha256"]);
    assert_ne!(record["before_sha256"], record["after_sha256"]);
    let metrics = app.get("/metrics", None).await.text;
    assert!(
        metrics.contains("sustainbot_human_overrides_total{workflow_name=\"quick\"} 1"),
        "{metrics}"
    );
    // A step that did not run, or a missing reason, is refused.
    let missing = json!({"step": "nope", "replacement": "x", "reason": "y"});
    app.post_json("/runs/ovr-1/override", &missing, Some(&app.jake()))
        .await
        .expect(404, "NOT_FOUND");
    let no_reason = json!({"step": "hi", "replacement": "x"});
    app.post_json("/runs/ovr-1/override", &no_reason, Some(&app.jake()))
        .await
        .expect(400, "VALIDATION_ERROR");
}

#[tokio::test]
async fn a_run_cancelled_while_queued_leaves_the_queue_at_once() {
    let app = TestApp::builder()
        .workflow(
            "single",
            json!({"max_concurrent_runs": 1, "steps": [{"id": "wait", "command": ["sleep", "30"]}]}),
        )
        .spawn()
        .await;
    start_async(&app, "single", "busy-1").await;
    wait_for(&app, "busy-1", "running").await;
    start_async(&app, "single", "queued-1").await;
    wait_for(&app, "queued-1", "queued").await;
    let cancel = |trace: &'static str| {
        let app = &app;
        async move {
            app.post_empty(&format!("/runs/{trace}/cancel"), &app.jake())
                .await
        }
    };
    let started = Instant::now();
    cancel("queued-1").await.expect_ok(200);
    let done = wait_for(&app, "queued-1", "cancelled").await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "it did not wait for the 30 s run ahead of it: {done}"
    );
    assert_eq!(
        app.get("/runs/busy-1", Some(&app.jake()))
            .await
            .expect_ok(200)["status"],
        "running",
        "the run ahead of it is untouched"
    );
    assert_eq!(app.outcomes("queued-1"), ["cancelled"], "it never started");
    cancel("busy-1").await.expect_ok(200);
    wait_for(&app, "busy-1", "cancelled").await;
}
