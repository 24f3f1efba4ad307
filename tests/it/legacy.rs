//! Workflow files of the original server: loaded as legacy OpenClaw workflows, listed, run through
//! the gate against a stand-in OpenClaw (the original's body, an honest outcome), and checked and
//! migrated with the real binary.

use serde_json::{json, Value};

use crate::helpers::{run_request, step, trace, FakeOpenClaw, Finished, Settings, Site, TestApp};

/// A workflow file in the shape of the original's OpenClaw guide, as a team would have it.
const EXAMPLE: &str = r#"{
  "name": "example-workflow",
  "steps": [
    {"type": "task", "name": "step1"},
    {"type": "task", "name": "step2"}
  ]
}
"#;

fn example() -> Value {
    serde_json::from_str(EXAMPLE).expect("the example is JSON")
}

/// A server with `example-workflow.json` (legacy) beside the standard native workflows, sending
/// OpenClaw submissions to `openclaw` (nothing listens when `None`).
async fn app_with_example(openclaw: Option<&FakeOpenClaw>) -> TestApp {
    let builder = TestApp::builder().workflow_file("example-workflow.json", EXAMPLE);
    match openclaw {
        Some(openclaw) => builder.env("OPENCLAW_URL", &openclaw.base),
        None => builder,
    }
    .spawn()
    .await
}

fn parameters() -> Value {
    json!({"environment": "staging", "version": "v1.2.3"})
}

#[tokio::test]
async fn a_legacy_file_is_listed_beside_native_ones_and_is_not_invalid() {
    let app = app_with_example(None).await;
    let body = app
        .get("/workflows", Some(&app.jake()))
        .await
        .expect_ok(200);
    assert_eq!(
        body,
        json!({"workflows": ["example-workflow", "noop", "with-steps"], "count": 3})
    );
    let health = app.get("/health", None).await.expect_ok(200);
    assert_eq!(
        health["components"]["workflows"]["invalid"],
        json!([]),
        "{health}"
    );
}

#[tokio::test]
async fn a_legacy_workflow_runs_through_the_gate_posting_the_originals_body() {
    let openclaw = FakeOpenClaw::accepting().await;
    let app = app_with_example(Some(&openclaw)).await;
    let body = app
        .execute(
            &run_request("example-workflow", "execute", parameters()),
            &trace("legacy-run-1"),
        )
        .await
        .expect_ok(200);
    assert_eq!(body["success"], true, "{body}");
    assert_eq!(body["steps"][0]["kind"], "openclaw");
    assert_eq!(body["steps"][0]["http_status"], 202);

    assert_eq!(
        openclaw.received(),
        [json!({"workflow": example(), "parameters": parameters(),
                "execution_id": "legacy-run-1"})],
        "exactly the original's body, with the trace id as execution id"
    );
    let records = app.audit_for("legacy-run-1");
    assert_eq!(
        records.iter().map(step).collect::<Vec<_>>(),
        ["started", "success"]
    );
    assert_eq!(records[1]["workflow_name"], "example-workflow");
    assert_eq!(records[1]["aim"]["actor"]["name"], "Jake Smith");
    assert!(app.verify_audit().is_valid());
}

#[tokio::test]
async fn a_legacy_workflow_has_no_policy_any_mode_and_role_may_run_it() {
    let openclaw = FakeOpenClaw::accepting().await;
    let app = app_with_example(Some(&openclaw)).await;
    let user = app.token(crate::helpers::JAKE, "user");
    app.execute_as(
        &user,
        &run_request("example-workflow", "draft", json!({"anything": [1, 2]})),
        &trace("legacy-draft"),
    )
    .await
    .expect_ok(200);
    assert_eq!(
        openclaw.received()[0]["parameters"],
        json!({"anything": [1, 2]})
    );
}

#[tokio::test]
async fn an_unreachable_openclaw_is_a_failure_with_openclaw_unavailable() {
    let app = app_with_example(None).await;
    let reply = app
        .execute(
            &run_request("example-workflow", "execute", parameters()),
            &trace("legacy-down"),
        )
        .await;
    let failed = reply.expect_run_failed(&app, 500, "OPENCLAW_UNAVAILABLE");
    assert_eq!(failed.body["success"], false);
    let error = failed.body["error"].as_str().expect("an error");
    assert!(error.contains("OpenClaw is unreachable"), "{error}");
    assert!(
        failed.body.get("mode").is_none(),
        "never the original's pretend local execution: {}",
        failed.body
    );
    assert!(app.verify_audit().is_valid());
}

#[tokio::test]
async fn an_openclaw_answer_saying_failure_fails_the_run() {
    let openclaw =
        FakeOpenClaw::answering(200, json!({"success": false, "error": "unknown task type"})).await;
    let app = app_with_example(Some(&openclaw)).await;
    let reply = app
        .execute(
            &run_request("example-workflow", "execute", parameters()),
            &trace("legacy-refused"),
        )
        .await;
    let failed = reply.expect_run_failed(&app, 500, "WORKFLOW_FAILED");
    let error = failed.body["error"].as_str().expect("an error");
    assert!(
        error.contains("OpenClaw reported a failure: unknown task type"),
        "{error}"
    );
}

#[tokio::test]
async fn an_openclaw_error_status_fails_the_run() {
    let openclaw = FakeOpenClaw::answering(500, json!({"error": "boom"})).await;
    let app = app_with_example(Some(&openclaw)).await;
    let reply = app
        .execute(
            &run_request("example-workflow", "execute", parameters()),
            &trace("legacy-500"),
        )
        .await;
    let failed = reply.expect_run_failed(&app, 500, "WORKFLOW_FAILED");
    let error = failed.body["error"].as_str().expect("an error");
    assert!(error.contains("unexpected status 500"), "{error}");
    assert_eq!(
        openclaw.received().len(),
        1,
        "a submission is never repeated"
    );
}

/// A site whose workflows are one native, one legacy and one invalid file.
fn mixed_site() -> Site {
    let site = Site::new();
    site.write("workflows/example-workflow.json", EXAMPLE);
    site.write(
        "workflows/half.json",
        r#"{"name": "half", "roles": ["admin"], "steps": [{"type": "task"}]}"#,
    );
    site
}

#[test]
fn workflows_check_reports_each_file_as_native_legacy_or_invalid() {
    let site = mixed_site();
    let output = site
        .sustainbot()
        .run(&["workflows", "check"])
        .expect_exit(1);
    let text = output.stdout_text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{}", output.describe());
    assert!(lines[0].starts_with("legacy   example-workflow  example-workflow.json: "));
    assert!(lines[1].starts_with(
        "invalid  half              half.json: not a legacy workflow file: it has 'roles'"
    ));
    assert!(lines[2].starts_with("native   noop              noop.json"));
    output.expect_stderr("3 definition file(s): 1 native, 1 legacy, 1 invalid");

    let output = site
        .sustainbot()
        .run(&["workflows", "check", "workflows", "--json"])
        .expect_exit(1);
    let report: Value = serde_json::from_str(&output.stdout_text()).expect("JSON");
    let kinds: Vec<&str> = report["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| f["kind"].as_str().expect("kind"))
        .collect();
    assert_eq!(kinds, ["legacy", "invalid", "native"]);
    assert_eq!(report["invalid"], 1);
}

#[test]
fn workflows_check_of_a_clean_directory_exits_0_and_of_a_missing_one_2() {
    let site = Site::new();
    site.write("workflows/example-workflow.json", EXAMPLE);
    site.sustainbot()
        .run(&["workflows", "check", "workflows"])
        .expect_exit(0);
    site.sustainbot()
        .run(&["workflows", "check", "nowhere"])
        .expect_exit(2)
        .expect_stderr("cannot read nowhere");
}

#[tokio::test]
async fn workflows_migrate_writes_native_definitions_that_run_the_same() {
    let site = mixed_site();
    let output = site
        .sustainbot()
        .run(&["workflows", "migrate", "workflows", "--out", "migrated"])
        .expect_exit(1)
        .expect_stdout("migrated  example-workflow  -> migrated/example-workflow.json")
        .expect_stdout("copied    noop  -> migrated/noop.json");
    assert!(
        output.stdout_text().contains("invalid   half"),
        "{}",
        output.describe()
    );
    let migrated = std::fs::read_to_string(site.path().join("migrated/example-workflow.json"))
        .expect("the migrated definition");
    let definition: Value = serde_json::from_str(&migrated).expect("JSON");
    assert_eq!(
        definition,
        json!({"steps": [{"id": "submit", "openclaw_body": "original", "openclaw": example()}]})
    );
    assert_eq!(
        std::fs::read_to_string(site.path().join("migrated/noop.json")).unwrap(),
        std::fs::read_to_string(site.path().join("workflows/noop.json")).unwrap(),
        "a native file is copied unchanged"
    );
    assert!(!site.path().join("migrated/half.json").exists());
    site.sustainbot()
        .run(&["workflows", "check", "migrated"])
        .expect_exit(0)
        .expect_stdout("native   example-workflow");

    // An existing file is not overwritten without --force, and nothing is written then.
    std::fs::write(
        site.path().join("migrated/noop.json"),
        r#"{"description": "mine"}"#,
    )
    .unwrap();
    site.sustainbot()
        .run(&["workflows", "migrate", "workflows", "--out", "migrated"])
        .expect_exit(2)
        .expect_stderr("example-workflow.json exists (--force to overwrite it)");
    assert!(
        std::fs::read_to_string(site.path().join("migrated/noop.json"))
            .unwrap()
            .contains("mine")
    );
    site.sustainbot()
        .run(&[
            "workflows",
            "migrate",
            "workflows",
            "--out",
            "migrated",
            "--force",
        ])
        .expect_exit(1);

    // The migrated definition posts exactly what the legacy file posts.
    let openclaw = FakeOpenClaw::accepting().await;
    let app = TestApp::builder()
        .workflow_file("example-workflow.json", &migrated)
        .env("OPENCLAW_URL", &openclaw.base)
        .spawn()
        .await;
    app.execute(
        &run_request("example-workflow", "execute", parameters()),
        &trace("migrated-run-1"),
    )
    .await
    .expect_ok(200);
    assert_eq!(
        openclaw.received(),
        [json!({"workflow": example(), "parameters": parameters(),
                "execution_id": "migrated-run-1"})]
    );
    assert_eq!(app.outcomes("migrated-run-1"), ["started", "success"]);
}
