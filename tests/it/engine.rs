//! The workflow engine through the governed endpoint: per-workflow policy, the parameter schema,
//! command steps run as real child processes that parameters cannot inject into, and templated
//! `http` steps against real loopback servers.

use axum::Router;
use serde_json::{json, Value};

use crate::helpers::{
    http_workflow, run_request as request, serve, trace, EchoServer, Settings, TestApp, JAKE,
};

#[tokio::test]
async fn a_command_step_runs_for_real_and_its_output_is_returned_and_hashed_in_the_audit() {
    let app = TestApp::with_workflow(
        "echo-version",
        json!({"parameters": {"version": {"type": "string", "required": true}},
               "steps": [{"id": "say", "command": ["printf", "%s", "{{ parameters.version }}"]},
                         {"id": "again", "command": ["printf", "[%s]", "{{ steps.say.output }}"]}]}),
    )
    .await;
    let body = app
        .execute(
            &request("echo-version", "execute", json!({"version": "v9.9.9"})),
            &trace("cmd-1"),
        )
        .await
        .expect_ok(200);
    assert_eq!(body["steps"][0]["stdout"], "v9.9.9");
    assert_eq!(body["steps"][1]["stdout"], "[v9.9.9]");
    assert_eq!(body["steps"][1]["exit_code"], 0);
    let records = app.audit_for("cmd-1");
    assert_eq!(records.len(), 2);
    let steps = records[1]["steps"]
        .as_array()
        .expect("steps on the outcome record");
    assert_eq!(steps.len(), 2);
    assert!(steps[0]["stdout_sha256"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    assert!(
        steps[0].get("stdout").is_none(),
        "outputs go to the caller, hashes to the audit trail"
    );
    assert!(app.verify_audit().is_valid());
}

#[tokio::test]
async fn a_parameter_cannot_inject_a_command() {
    let marker = std::env::temp_dir().join(format!("sustainbot-pwned-{}", std::process::id()));
    let app = TestApp::with_workflow(
        "echo-it",
        json!({"steps": [{"id": "say", "command": ["echo", "{{ parameters.text }}"]}]}),
    )
    .await;
    let hostile = format!("; touch {0} && $(touch {0}) `touch {0}`", marker.display());
    let body = app
        .run_workflow("echo-it", json!({"text": hostile}))
        .await
        .expect_ok(200);
    assert_eq!(
        body["steps"][0]["stdout"].as_str().unwrap().trim_end(),
        hostile
    );
    assert!(!marker.exists(), "the parameter stayed one inert argument");
}

#[tokio::test]
async fn a_failing_command_fails_the_run_and_stops_later_steps() {
    let app = TestApp::with_workflow(
        "two",
        json!({"steps": [{"id": "bad", "command": ["sh", "-c", "echo oops >&2; exit 3"]},
                         {"id": "never", "command": ["echo", "should not run"]}]}),
    )
    .await;
    let body = app
        .run_workflow("two", json!({}))
        .await
        .expect(500, "WORKFLOW_FAILED");
    assert_eq!(body["steps"].as_array().unwrap().len(), 1);
    assert_eq!(body["steps"][0]["exit_code"], 3);
    assert_eq!(body["steps"][0]["stderr"], "oops\n");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("exited with code 3"),
        "{body}"
    );
}

#[tokio::test]
async fn a_hung_step_is_killed_at_its_timeout() {
    let app = TestApp::with_workflow(
        "hang",
        json!({"steps": [{"id": "sleep", "command": ["sleep", "30"], "timeout_seconds": 1}]}),
    )
    .await;
    let started = std::time::Instant::now();
    let body = app
        .run_workflow("hang", json!({}))
        .await
        .expect(500, "WORKFLOW_FAILED");
    assert!(started.elapsed() < std::time::Duration::from_secs(15));
    assert_eq!(body["steps"][0]["timed_out"], true);
    assert!(
        body["error"].as_str().unwrap().contains("timed out"),
        "{body}"
    );
}

#[tokio::test]
async fn a_mode_the_workflow_does_not_permit_is_refused_and_audited() {
    let app = TestApp::with_workflow("exec-only", json!({"drag_modes": ["execute"]})).await;
    let body = app
        .execute(
            &request("exec-only", "research", json!({})),
            &trace("mode-1"),
        )
        .await
        .expect_refused(&app, 400, "DRAG_MODE_NOT_ALLOWED")
        .body;
    assert!(
        body["error"].as_str().unwrap().contains("research"),
        "{body}"
    );
}

#[tokio::test]
async fn a_role_the_workflow_does_not_permit_is_forbidden_and_audited() {
    let app = TestApp::with_workflow("admins", json!({"roles": ["admin"]})).await;
    let user = app.token(JAKE, "user");
    app.execute_as(
        &user,
        &request("admins", "execute", json!({})),
        &trace("role-1"),
    )
    .await
    .expect_refused(&app, 403, "FORBIDDEN_ROLE");
    // An admin may.
    app.run_workflow("admins", json!({})).await.expect_ok(200);
}

#[tokio::test]
async fn parameters_are_checked_against_the_schema_listing_every_problem() {
    let app = TestApp::with_workflow(
        "deploy",
        json!({"parameters": {"environment": {"type": "string", "enum": ["staging"], "required": true},
                              "version": {"type": "string", "pattern": "^v[0-9]+\\.[0-9]+\\.[0-9]+$", "required": true}}}),
    )
    .await;
    let body = app
        .execute(
            &request(
                "deploy",
                "execute",
                json!({"environment": "production", "version": "latest", "force": true}),
            ),
            &trace("params-1"),
        )
        .await
        .expect_refused(&app, 400, "INVALID_PARAMETERS")
        .body;
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        [
            "parameters.force",
            "parameters.environment",
            "parameters.version"
        ]
    );
}

#[tokio::test]
async fn the_shipped_deploy_workflow_builds_deploys_and_verifies() {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    // Copy the shipped definition and scripts so the test runs them as a user would.
    let app = TestApp::builder()
        .workflow(
            "deploy-to-staging",
            serde_json::from_str(
                &std::fs::read_to_string(repo.join("workflows/deploy-to-staging.json")).unwrap(),
            )
            .unwrap(),
        )
        .scripts_from(&repo.join("workflows/scripts"))
        .spawn()
        .await;
    let body = app
        .run_workflow(
            "deploy-to-staging",
            json!({"environment": "staging", "version": "v1.2.3"}),
        )
        .await
        .expect_ok(200);
    let ids: Vec<&str> = body["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["build", "deploy", "verify", "health"]);
    assert_eq!(body["steps"][2]["stdout"], "healthy: staging runs v1.2.3\n");
    // The health step called this very server ({{ server.url }}), on its real port.
    assert_eq!(body["steps"][3]["kind"], "http");
    assert_eq!(body["steps"][3]["success"], true);
    assert_eq!(body["steps"][3]["http_status"], 200);
    let health: Value = serde_json::from_str(body["steps"][3]["stdout"].as_str().unwrap()).unwrap();
    assert_eq!(health["status"], "healthy");
    // The wrong version pattern never reaches the scripts.
    app.run_workflow(
        "deploy-to-staging",
        json!({"environment": "staging", "version": "1.2.3"}),
    )
    .await
    .expect(400, "INVALID_PARAMETERS");
}

#[tokio::test]
async fn admins_reload_workflows_and_others_may_not() {
    let app = TestApp::spawn().await;
    std::fs::write(
        app.workflows_dir.join("fresh.json"),
        r#"{"description": "new"}"#,
    )
    .unwrap();
    std::fs::write(app.workflows_dir.join("broken.json"), r#"{"steps": "no"}"#).unwrap();
    let user = app.token(JAKE, "user");
    app.post_empty("/workflows/reload", &user)
        .await
        .expect(403, "FORBIDDEN_ROLE");
    let body = app
        .post_empty("/workflows/reload", &app.jake())
        .await
        .expect_ok(200);
    assert!(
        body["workflows"]
            .as_array()
            .unwrap()
            .contains(&json!("fresh")),
        "{body}"
    );
    assert!(
        !body["workflows"]
            .as_array()
            .unwrap()
            .contains(&json!("broken")),
        "{body}"
    );
    assert!(
        body["invalid"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("steps"),
        "{body}"
    );
}

#[tokio::test]
async fn changed_files_are_picked_up_without_a_restart() {
    let app = TestApp::spawn().await;
    std::fs::write(
        app.workflows_dir.join("hot.json"),
        r#"{"steps": [{"id": "x", "command": ["true"]}]}"#,
    )
    .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let body = app
            .get("/workflows", Some(&app.jake()))
            .await
            .expect_ok(200);
        if body["workflows"]
            .as_array()
            .unwrap()
            .contains(&json!("hot"))
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "hot.json never loaded: {body}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    app.run_workflow("hot", json!({})).await.expect_ok(200);
}

/// A YAML definition; `yes` is text in YAML 1.2.
const GREET_YAML: &str = r#"description: Say a name
drag_modes: [execute]
parameters:
  name: {type: string, enum: [yes, no], required: true}
steps:
  - id: say
    command: [printf, '%s', "{{ parameters.name }}"]
"#;

#[tokio::test]
async fn a_yaml_workflow_is_listed_runs_governed_and_survives_a_broken_edit() {
    let app = TestApp::builder()
        .workflow_file("greet.yaml", GREET_YAML)
        .spawn()
        .await;
    let listed = app
        .get("/workflows", Some(&app.jake()))
        .await
        .expect_ok(200);
    assert_eq!(listed["workflows"], json!(["greet", "noop", "with-steps"]));
    let body = app
        .execute(
            &request("greet", "execute", json!({"name": "yes"})),
            &trace("yaml-1"),
        )
        .await
        .expect_ok(200);
    assert_eq!(body["steps"][0]["stdout"], "yes");
    assert_eq!(app.audit_for("yaml-1").len(), 2, "started + outcome");

    // An edit that is not valid YAML: the reload reports file and line, the old version stays.
    std::fs::write(
        app.workflows_dir.join("greet.yaml"),
        GREET_YAML.replace("'%s', ", "'%s' "),
    )
    .unwrap();
    let body = app
        .post_empty("/workflows/reload", &app.jake())
        .await
        .expect_ok(200);
    assert_eq!(body["workflows"], json!(["greet", "noop", "with-steps"]));
    let invalid = body["invalid"].as_array().unwrap();
    assert_eq!(invalid.len(), 1, "{body}");
    assert!(
        invalid[0]["file"].as_str().unwrap().ends_with("greet.yaml"),
        "{body}"
    );
    let reason = invalid[0]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("invalid YAML: ")
            && reason.contains(" at line 7 column ")
            && reason.ends_with("(the previous valid version stays loaded)"),
        "{reason}"
    );
    let body = app
        .run_workflow("greet", json!({"name": "no"}))
        .await
        .expect_ok(200);
    assert_eq!(body["steps"][0]["stdout"], "no", "the previous version ran");
}

#[tokio::test]
async fn beyond_the_workers_and_the_queue_runs_are_refused_with_429() {
    let app = TestApp::builder()
        .workflow(
            "slow",
            json!({"max_concurrent_runs": 1, "steps": [{"id": "wait", "command": ["sleep", "1"]}]}),
        )
        .workers(4)
        .queue(1)
        .spawn()
        .await;
    let app = std::sync::Arc::new(app);
    let run = |id: &'static str| {
        let app = std::sync::Arc::clone(&app);
        tokio::spawn(async move {
            app.execute(&request("slow", "execute", json!({})), &trace(id))
                .await
        })
    };
    let first = run("slow-1");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let second = run("slow-2");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    // The workflow's one slot is busy and the queue of one is full.
    let third = run("slow-3").await.unwrap();
    third.expect_refused(&app, 429, "TOO_MANY_RUNS");
    assert!(third.header("retry-after").is_some(), "Retry-After is set");
    first.await.unwrap().expect_ok(200);
    // The queued run ran after the first.
    second.await.unwrap().expect_ok(200);
    let starts: Vec<String> = ["slow-1", "slow-2"]
        .iter()
        .map(|t| {
            app.audit_for(t)[0]["timestamp"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert!(starts[0] < starts[1]);
}

#[tokio::test]
async fn an_http_step_percent_encodes_a_parameter_into_its_path() {
    let echo = EchoServer::start().await;
    let app = TestApp::builder()
        .workflow(
            "fetch",
            json!({"parameters": {"name": {"type": "string", "required": true}},
                   "steps": [{"id": "get", "http": {"url": format!("{}/files/{{{{ parameters.name }}}}?v=1", echo.base),
                                                    "headers": {"X-Name": "{{ parameters.name }}"}}}]}),
        )
        .spawn()
        .await;
    let body = app
        .run_workflow("fetch", json!({"name": "../x?y=1#z@evil.com"}))
        .await
        .expect_ok(200);
    assert_eq!(body["steps"][0]["http_status"], 200);
    assert_eq!(
        body["steps"][0]["stdout"], "/files/..%2Fx%3Fy%3D1%23z%40evil.com?v=1|../x?y=1#z@evil.com",
        "one path segment, on the literal host; the header value as is"
    );
    assert_eq!(echo.requests(), 1);
}

#[tokio::test]
async fn a_line_break_in_an_http_header_value_fails_the_step_unsent() {
    let echo = EchoServer::start().await;
    let app = TestApp::with_workflow(
        "inject",
        http_workflow(json!({"url": format!("{}/", echo.base),
                             "headers": {"X-Name": "{{ parameters.name }}"}})),
    )
    .await;
    let body = app
        .run_workflow("inject", json!({"name": "ok\r\nX-Injected: 1"}))
        .await
        .expect(500, "WORKFLOW_FAILED");
    assert_eq!(body["steps"][0]["success"], false);
    let error = body["steps"][0]["error"].as_str().unwrap();
    assert!(
        error.starts_with(
            "http.headers.X-Name: the value of {{ parameters.name }} contains a line break"
        ),
        "{error}"
    );
    assert!(
        body["error"].as_str().unwrap().contains("line break"),
        "{body}"
    );
    assert_eq!(echo.requests(), 0, "nothing was sent");
}

#[tokio::test]
async fn an_earlier_steps_output_fills_an_http_url() {
    let echo = EchoServer::start().await;
    let app = TestApp::with_workflow(
        "chain",
        json!({"steps": [{"id": "a", "command": ["printf", "%s\\n", "v1.2.3/latest"]},
                         {"id": "get", "http": {"url": format!("{}/releases/{{{{ steps.a.output }}}}", echo.base)}}]}),
    )
    .await;
    let body = app.run_workflow("chain", json!({})).await.expect_ok(200);
    assert_eq!(body["steps"][1]["stdout"], "/releases/v1.2.3%2Flatest|-");
}

#[tokio::test]
async fn the_server_url_is_the_running_servers_own_address() {
    let app = TestApp::with_workflow(
        "self",
        json!({"steps": [{"id": "say", "command": ["echo", "{{ server.url }}"]},
                         {"id": "health", "http": {"url": "{{ server.url }}/health", "expect_status": 200}}]}),
    )
    .await;
    let body = app.run_workflow("self", json!({})).await.expect_ok(200);
    assert_eq!(body["steps"][0]["stdout"], format!("{}\n", app.address));
    assert!(!app.address.ends_with(":0"), "the actual port");
    assert_eq!(body["steps"][1]["http_status"], 200);
}

#[tokio::test]
async fn unknown_http_template_sources_are_load_errors_with_their_paths() {
    let app = TestApp::with_workflow(
        "bad-http",
        json!({"parameters": {"v": {"type": "string"}},
               "steps": [{"id": "call", "http": {
                   "url": "http://127.0.0.1:9/{{ parameters.in_url }}",
                   "headers": {"X-A": "{{ parameters.in_header }}"},
                   "body": {"b": "{{ parameters.in_body }}"}}}]}),
    )
    .await;
    let health = app.get("/health", None).await.expect_ok(200);
    let invalid = health["components"]["workflows"]["invalid"]
        .as_array()
        .unwrap();
    assert_eq!(invalid.len(), 1, "{health}");
    let reason = invalid[0]["reason"].as_str().unwrap();
    for expected in [
        "steps[0].http.url: unknown parameter 'in_url'",
        "steps[0].http.headers.X-A: unknown parameter 'in_header'",
        "steps[0].http.body: unknown parameter 'in_body'",
    ] {
        assert!(
            reason.contains(expected),
            "missing {expected:?} in {reason}"
        );
    }
    app.run_workflow("bad-http", json!({}))
        .await
        .expect(404, "WORKFLOW_NOT_FOUND");
}

#[tokio::test]
async fn an_http_step_follows_redirects_on_its_own_origin_only() {
    let elsewhere = EchoServer::start().await;
    let target = format!("{}/secret", elsewhere.base);
    let origin = serve(
        Router::new()
            .route(
                "/moved",
                axum::routing::get(|| async { axum::response::Redirect::temporary("/here") }),
            )
            .route("/here", axum::routing::get(|| async { "same origin" }))
            .route(
                "/away",
                axum::routing::get(move || {
                    let target = target.clone();
                    async move { axum::response::Redirect::temporary(&target) }
                }),
            ),
    )
    .await;
    let base = format!("http://{origin}");
    let server = TestApp::builder()
        .workflow(
            "moved",
            http_workflow(json!({"url": format!("{base}/moved")})),
        )
        .workflow(
            "away",
            http_workflow(json!({"url": format!("{base}/away")})),
        )
        .spawn()
        .await;
    let body = server.run_workflow("moved", json!({})).await.expect_ok(200);
    assert_eq!(body["steps"][0]["stdout"], "same origin");
    let body = server
        .run_workflow("away", json!({}))
        .await
        .expect(500, "WORKFLOW_FAILED");
    let error = body["steps"][0]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("redirect to another origin refused"),
        "{body}"
    );
    assert_eq!(elsewhere.requests(), 0, "the other origin was never asked");
}

#[tokio::test]
async fn an_http_step_sends_a_secret_from_the_environment_and_redacts_it_from_what_comes_back() {
    // A name no other test uses: the variable is set for this whole test process.
    let name = format!("SUSTAINBOT_TEST_SECRET_{}", std::process::id());
    std::env::set_var(&name, "s3cr3t-value");
    let echo = EchoServer::start().await;
    let app = TestApp::with_workflow(
        "hook",
        http_workflow(json!({"url": format!("{}/hook", echo.base),
                             "headers": {"X-Name": format!("{{{{ secrets.{name} }}}}")}})),
    )
    .await;
    let body = app.run_workflow("hook", json!({})).await.expect_ok(200);
    assert_eq!(echo.requests(), 1);
    // The echo server answered with the header it got: the secret was sent, and is redacted.
    assert_eq!(body["steps"][0]["stdout"], "/hook|[REDACTED]", "{body}");
    assert!(!body.to_string().contains("s3cr3t-value"));
    let trail = std::fs::read_to_string(&app.audit_path).unwrap();
    assert!(
        !trail.contains("s3cr3t-value"),
        "not on the audit trail either"
    );

    // Not set: the step fails before sending, naming the variable but no value.
    std::env::remove_var(&name);
    let body = app
        .run_workflow("hook", json!({}))
        .await
        .expect(500, "WORKFLOW_FAILED");
    let error = body["steps"][0]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(&format!("secret {name} is not set")),
        "{body}"
    );
    assert_eq!(echo.requests(), 1, "nothing was sent");
}
