//! Smaller holes an attacker found (issue 12, items 4 and 7): one person is one person, overrides
//! belong to the run's human, a key twice is refused, template values are not options, extractor
//! rejections answer JSON, and `--dev` listens on this machine only.

use serde_json::json;

use crate::helpers::{governance_request, sustainbot, Settings, TestApp, GOVERNED, TEST_SECRET};

fn guarded() -> serde_json::Value {
    json!({"approval": {"required": true, "approver_roles": ["admin"]}, "steps": []})
}

#[tokio::test]
async fn a_padded_or_recased_token_for_the_requester_cannot_approve_their_own_run() {
    let app = TestApp::builder()
        .workflow("guarded", guarded())
        .spawn()
        .await;
    let bob = "bob@example.org";
    let mut request = governance_request("guarded");
    request["aim"]["actor"]["email"] = json!(bob);
    let accepted = app
        .execute_as(&app.token(bob, "admin"), &request, &[])
        .await
        .expect_ok(202);
    let trace_id = accepted["trace_id"].as_str().unwrap();
    for alias in [
        "bob@example.org ",
        "BOB@example.org",
        "\u{ff42}ob@example.org",
    ] {
        let refused = app
            .post_empty(
                &format!("/runs/{trace_id}/approve"),
                &app.token(alias, "admin"),
            )
            .await
            .expect(403, "APPROVAL_REFUSED");
        assert!(
            refused["error"].as_str().unwrap().contains("Self-approval"),
            "{alias:?}: {refused}"
        );
    }
    // The padded token still owns the run (sees and may cancel it).
    let padded = app.token("Bob@Example.org ", "user");
    app.get(&format!("/runs/{trace_id}"), Some(&padded))
        .await
        .expect_ok(200);
}

#[test]
fn the_token_command_refuses_a_padded_actor() {
    let out = sustainbot().jwt_secret(TEST_SECRET).run(&[
        "token",
        "--actor",
        "bob@example.org ",
        "--role",
        "admin",
    ]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not written plainly"),
        "{out:?}"
    );
    assert!(out.stdout.is_empty());
}

#[tokio::test]
async fn an_auditor_cannot_record_an_override_on_another_humans_run() {
    let app = TestApp::builder()
        .workflow(
            "say",
            json!({"steps": [{"id": "out", "command": ["echo", "hi"]}]}),
        )
        .spawn()
        .await;
    let body = app
        .execute(&governance_request("say"), &[])
        .await
        .expect_ok(200);
    let trace_id = body["trace_id"].as_str().unwrap();
    let change = json!({"step": "out", "replacement": "bye", "reason": "rewording"});
    let path = format!("/runs/{trace_id}/override");
    app.post_json(
        &path,
        &change,
        Some(&app.token("aud@example.org", "auditor")),
    )
    .await
    .expect(403, "FORBIDDEN_ROLE");
    app.post_json(&path, &change, Some(&app.jake()))
        .await
        .expect_ok(200);
}

#[tokio::test]
async fn a_key_given_twice_in_a_request_is_refused() {
    let app = TestApp::spawn().await;
    let text = r#"{"workflow_name": "noop", "workflow_name": "other", "drag_mode": "draft"}"#;
    let reply = app
        .post_raw(
            GOVERNED,
            text.as_bytes().to_vec(),
            &[
                ("content-type", "application/json".to_owned()),
                ("authorization", format!("Bearer {}", app.jake())),
            ],
        )
        .await;
    let body = reply.expect(400, "VALIDATION_ERROR");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("duplicate key 'workflow_name'"),
        "{body}"
    );
}

#[tokio::test]
async fn a_parameter_that_starts_with_a_dash_is_not_an_option_unless_the_step_says_so() {
    let app = TestApp::builder()
        .workflow("echo", json!({"steps": [{"id": "say", "command": ["echo", "{{ parameters.x }}"]}]}))
        .workflow("after-dashes", json!({"steps": [{"id": "say", "command": ["echo", "--", "{{ parameters.x }}"]}]}))
        .workflow("options", json!({"steps": [{"id": "say", "command": ["echo", "{{ parameters.x }}"], "option_arguments": true}]}))
        .spawn()
        .await;
    let mut request = governance_request("echo");
    request["parameters"] = json!({"x": "--output=/tmp/owned"});
    let body = app
        .execute(&request, &[])
        .await
        .expect(500, "WORKFLOW_FAILED");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("read as an option"),
        "{body}"
    );
    for workflow in ["after-dashes", "options"] {
        request["workflow_name"] = json!(workflow);
        app.execute(&request, &[]).await.expect_ok(200);
    }
}

#[tokio::test]
async fn a_path_that_is_not_utf8_answers_the_json_error_body() {
    let app = TestApp::spawn().await;
    let reply = app.get("/runs/%FF%FE", Some(&app.jake())).await;
    let body = reply.expect(400, "VALIDATION_ERROR");
    assert!(body["trace_id"].is_string(), "{body}");
}

/// A run that takes a while, and one that waits for an admin's approval.
fn busy_app_workflows() -> crate::helpers::TestAppBuilder {
    TestApp::builder()
        .workers(1)
        .queue(1)
        .workflow(
            "slow",
            json!({"steps": [{"id": "nap", "command": ["sleep", "2"]}]}),
        )
        .workflow(
            "guarded",
            json!({"approval": {"required": true, "approver_roles": ["admin"]},
            "steps": [{"id": "nap", "command": ["sleep", "1"]}]}),
        )
}

#[tokio::test]
async fn a_full_queue_is_a_429_before_anything_is_promised() {
    let app = busy_app_workflows().spawn().await;
    let prefer = [("prefer", "respond-async".to_owned())];
    let first = app
        .execute(&governance_request("slow"), &prefer)
        .await
        .expect_ok(202);
    let second = app
        .execute(&governance_request("slow"), &prefer)
        .await
        .expect_ok(202);
    assert_eq!(
        (first["status"].as_str(), second["status"].as_str()),
        (Some("queued"), Some("queued"))
    );
    let third = app.execute(&governance_request("slow"), &prefer).await;
    assert_eq!(third.header("retry-after"), Some("5"));
    third.expect(429, "TOO_MANY_RUNS");

    // An approval that cannot be queued is not used up: the run keeps waiting.
    let ana = app.token("ana@example.org", "admin");
    let waiting = app
        .execute(&governance_request("guarded"), &[])
        .await
        .expect_ok(202);
    let trace_id = waiting["trace_id"].as_str().unwrap();
    app.post_empty(&format!("/runs/{trace_id}/approve"), &ana)
        .await
        .expect(429, "TOO_MANY_RUNS");
    let run = app
        .get(&format!("/runs/{trace_id}"), Some(&ana))
        .await
        .expect_ok(200);
    assert_eq!(run["status"], "pending_approval");
    // Once the queue drains, the same approval goes through.
    app.wait_for_run(
        first["trace_id"].as_str().unwrap(),
        "succeeded",
        std::time::Duration::from_secs(10),
    )
    .await;
    app.wait_for_run(
        second["trace_id"].as_str().unwrap(),
        "succeeded",
        std::time::Duration::from_secs(10),
    )
    .await;
    app.post_empty(&format!("/runs/{trace_id}/approve"), &ana)
        .await
        .expect_ok(202);
    app.wait_for_run(trace_id, "succeeded", std::time::Duration::from_secs(10))
        .await;
}

#[tokio::test]
async fn parameters_are_bounded_and_large_ones_are_recorded_by_size_and_hash() {
    let app = TestApp::spawn().await;
    let mut request = governance_request("noop");
    request["parameters"] = json!({"blob": "x".repeat(100 * 1024)});
    let refused = app
        .execute(&request, &[])
        .await
        .expect(413, "PARAMETERS_TOO_LARGE");
    assert_eq!(refused["audit_logged"], true);

    request["parameters"] = json!({"blob": "y".repeat(20 * 1024)});
    let body = app.execute(&request, &[]).await.expect_ok(200);
    let records = app.audit_for(body["trace_id"].as_str().unwrap());
    for record in &records {
        let parameters = &record["parameters"];
        assert_eq!(parameters["truncated"], true, "{parameters}");
        assert!(parameters["sha256"]
            .as_str()
            .unwrap()
            .starts_with("sha256:"));
    }
    let size: usize = records.iter().map(|r| r.to_string().len()).sum();
    assert!(size < 8 * 1024, "two records of {size} bytes");
}
