//! A roles policy (`POLICY_PATH`): default deny, each action allowed by its rule and refused
//! otherwise (403 `FORBIDDEN_ROLE` naming the action), the deciding rule named on the audit
//! record, reloaded with the workflows (a bad file keeping the policy in force); and the
//! `sustainbot policy check` and `explain` commands.

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tempfile::TempDir;

use crate::helpers::{
    run_request, step, sustainbot, trace, Finished, Settings, Site, TestApp, ANA, JAKE,
};

/// The issue's policy, and a rule for cancelling deployments.
const POLICY: &str = r#"default: deny
rules:
  - roles: [devops, admin]
    allow: [run]
    workflows: ["deploy-*", "noop"]
    drag_modes: [execute, grunt]
  - roles: [admin]
    allow: [approve, audit.read, override, reload, apikey.manage]
  - roles: [auditor]
    allow: [audit.read]
  - roles: [lead]
    allow: [cancel]
    workflows: ["deploy-*"]
"#;

/// A server under a policy file, with deployments to run.
struct Governed {
    app: TestApp,
    policy: PathBuf,
    _dir: TempDir,
}

impl Deref for Governed {
    type Target = TestApp;

    fn deref(&self) -> &TestApp {
        &self.app
    }
}

impl Governed {
    async fn spawn(policy: &str) -> Governed {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("policy.yaml");
        std::fs::write(&path, policy).expect("write the policy");
        let app = TestApp::builder()
            .policy(&path)
            .workflow(
                "deploy-web",
                json!({"steps": [{"id": "hi", "command": ["echo", "hi"]}]}),
            )
            .workflow(
                "deploy-slow",
                json!({"steps": [{"id": "wait", "command": ["sleep", "30"]}]}),
            )
            .workflow(
                "deploy-guarded",
                json!({"approval": {"required": true, "approver_roles": ["admin", "lead"]},
                       "steps": []}),
            )
            .workflow("backup", json!({"steps": []}))
            .spawn()
            .await;
        Governed {
            app,
            policy: path,
            _dir: dir,
        }
    }

    fn rewrite(&self, policy: &str) {
        std::fs::write(&self.policy, policy).expect("rewrite the policy");
    }

    /// Runs `workflow` in `mode` as `token` (whose actor is jake, the request's), as trace `id`.
    async fn run(
        &self,
        token: &str,
        workflow: &str,
        mode: &str,
        id: &str,
    ) -> crate::helpers::Reply {
        self.execute_as(token, &run_request(workflow, mode, json!({})), &trace(id))
            .await
    }

    /// Each record of a trace as (its outcome or decision, its `policy_rule`).
    fn rules_of(&self, trace: &str) -> Vec<(String, Value)> {
        self.audit_for(trace)
            .iter()
            .map(|r| {
                (
                    step(r),
                    r.get("policy_rule").cloned().unwrap_or(Value::Null),
                )
            })
            .collect()
    }
}

fn named(list: &[(&str, Value)]) -> Vec<(String, Value)> {
    list.iter()
        .map(|(s, v)| ((*s).to_owned(), v.clone()))
        .collect()
}

#[track_caller]
fn says(body: &Value, text: &str) {
    let error = body["error"].as_str().unwrap_or_default();
    assert!(error.contains(text), "{text:?} not in {body}");
}

#[tokio::test]
async fn a_run_is_allowed_by_workflow_glob_and_mode_and_its_records_name_the_rule() {
    let app = Governed::spawn(POLICY).await;
    let devops = app.token(JAKE, "devops");
    app.run(&devops, "deploy-web", "execute", "pol-run-1")
        .await
        .expect_ok(200);
    assert_eq!(
        app.rules_of("pol-run-1"),
        named(&[("started", json!(1)), ("success", json!(1))])
    );
    app.run(&devops, "noop", "grunt", "pol-run-2")
        .await
        .expect_ok(200);

    for (workflow, mode) in [("deploy-web", "draft"), ("backup", "execute")] {
        let refused = app
            .run(
                &devops,
                workflow,
                mode,
                &format!("pol-run-{workflow}-{mode}"),
            )
            .await
            .expect_refused(&app, 403, "FORBIDDEN_ROLE");
        says(
            &refused.body,
            &format!("Action 'run' of workflow '{workflow}' in DRAG mode {mode}"),
        );
        says(
            &refused.body,
            "no rule of the policy allows it (default: deny)",
        );
        assert_eq!(refused.record["policy_rule"], 0, "the default refused");
    }
    let auditor = app.token(JAKE, "auditor");
    app.run(&auditor, "noop", "execute", "pol-run-3")
        .await
        .expect_refused(&app, 403, "FORBIDDEN_ROLE");
    assert!(app.verify_audit().is_valid());
}

#[tokio::test]
async fn a_workflows_own_roles_still_hold_under_the_policy() {
    let app = Governed::spawn(POLICY).await;
    let path = app.workflows_dir.join("deploy-admins.json");
    std::fs::write(&path, r#"{"roles": ["admin"], "steps": []}"#).unwrap();
    app.post_empty("/workflows/reload", &app.token(ANA, "admin"))
        .await
        .expect_ok(200);
    let refused = app
        .run(
            &app.token(JAKE, "devops"),
            "deploy-admins",
            "execute",
            "pol-own-1",
        )
        .await
        .expect_refused(&app, 403, "FORBIDDEN_ROLE");
    says(&refused.body, "may not run this workflow (allowed: admin)");
    assert_eq!(refused.record["policy_rule"], 1, "the policy allowed it");
    app.run(&app.jake(), "deploy-admins", "execute", "pol-own-2")
        .await
        .expect_ok(200);
}

#[tokio::test]
async fn reading_the_trail_and_reloading_follow_their_rules() {
    let app = Governed::spawn(POLICY).await;
    let admin = app.token(ANA, "admin");
    let auditor = app.token(ANA, "auditor");
    let devops = app.token(JAKE, "devops");
    app.get("/audit/entries", Some(&admin)).await.expect_ok(200);
    app.get("/audit/entries", Some(&auditor))
        .await
        .expect_ok(200);
    let refused = app
        .get("/audit/verify", Some(&devops))
        .await
        .expect(403, "FORBIDDEN_ROLE");
    says(
        &refused,
        "Action 'audit.read' is not allowed for role 'devops'",
    );

    app.post_empty("/workflows/reload", &admin)
        .await
        .expect_ok(200);
    let refused = app
        .post_empty("/workflows/reload", &auditor)
        .await
        .expect(403, "FORBIDDEN_ROLE");
    says(
        &refused,
        "Action 'reload' is not allowed for role 'auditor'",
    );
}

#[tokio::test]
async fn an_approval_needs_a_rule_and_each_decision_names_the_one_that_decided() {
    let app = Governed::spawn(POLICY).await;
    let devops = app.token(JAKE, "devops");
    app.run(&devops, "deploy-guarded", "execute", "pol-appr-1")
        .await
        .expect_ok(202);
    // A lead is one of the workflow's approver roles, but no rule lets a lead approve.
    let lead = app.token(ANA, "lead");
    let refused = app
        .post_json("/runs/pol-appr-1/approve", &json!({}), Some(&lead))
        .await
        .expect(403, "FORBIDDEN_ROLE");
    says(&refused, "Action 'approve' of workflow 'deploy-guarded'");
    app.post_json(
        "/runs/pol-appr-1/deny",
        &json!({"reason": "no"}),
        Some(&lead),
    )
    .await
    .expect(403, "FORBIDDEN_ROLE");
    let admin = app.token(ANA, "admin");
    app.post_json("/runs/pol-appr-1/approve", &json!({}), Some(&admin))
        .await
        .expect_ok(202);
    app.wait_for_run("pol-appr-1", "succeeded", Duration::from_secs(10))
        .await;
    assert_eq!(
        app.rules_of("pol-appr-1"),
        named(&[
            ("requested", json!(1)),
            ("refused", json!(0)),
            ("refused", json!(0)),
            ("approved", json!(2)),
            ("started", json!(1)),
            ("success", json!(1)),
        ])
    );
}

#[tokio::test]
async fn ones_own_run_is_cancelled_without_a_rule_and_anothers_by_one() {
    let app = Governed::spawn(POLICY).await;
    let devops = app.token(JAKE, "devops");
    for id in ["pol-cancel-1", "pol-cancel-2"] {
        let mut body = run_request("deploy-slow", "execute", json!({}));
        body["async"] = json!(true);
        app.execute_as(&devops, &body, &trace(id))
            .await
            .expect_ok(202);
    }
    // The auditor sees every run, but no rule lets an auditor cancel one.
    let refused = app
        .post_empty("/runs/pol-cancel-1/cancel", &app.token(ANA, "auditor"))
        .await
        .expect(403, "FORBIDDEN_ROLE");
    says(&refused, "Action 'cancel' of workflow 'deploy-slow'");
    // Another devops does not even see it.
    app.post_empty(
        "/runs/pol-cancel-1/cancel",
        &app.token("bob@example.org", "devops"),
    )
    .await
    .expect(404, "NOT_FOUND");
    let lead = app.token(ANA, "lead");
    app.post_empty("/runs/pol-cancel-1/cancel", &lead)
        .await
        .expect_ok(200);
    app.post_empty("/runs/pol-cancel-2/cancel", &devops)
        .await
        .expect_ok(200);
    for id in ["pol-cancel-1", "pol-cancel-2"] {
        app.wait_for_run(id, "cancelled", Duration::from_secs(10))
            .await;
    }

    // A request waiting for approval, withdrawn by a lead: the record names rule 4.
    app.run(&devops, "deploy-guarded", "execute", "pol-cancel-3")
        .await
        .expect_ok(202);
    app.post_empty("/runs/pol-cancel-3/cancel", &lead)
        .await
        .expect_ok(200);
    assert_eq!(
        app.rules_of("pol-cancel-3"),
        named(&[("requested", json!(1)), ("withdrawn", json!(4))])
    );
}

#[tokio::test]
async fn an_override_on_anothers_run_needs_a_rule_and_names_it() {
    let app = Governed::spawn(POLICY).await;
    let devops = app.token(JAKE, "devops");
    app.run(&devops, "deploy-web", "execute", "pol-ovr-1")
        .await
        .expect_ok(200);
    let body = json!({"step": "hi", "replacement": "hello", "reason": "tone"});
    app.post_json("/runs/pol-ovr-1/override", &body, Some(&devops))
        .await
        .expect_ok(200);
    let refused = app
        .post_json(
            "/runs/pol-ovr-1/override",
            &body,
            Some(&app.token(ANA, "auditor")),
        )
        .await
        .expect(403, "FORBIDDEN_ROLE");
    says(&refused, "Action 'override' of workflow 'deploy-web'");
    app.post_json(
        "/runs/pol-ovr-1/override",
        &body,
        Some(&app.token(ANA, "admin")),
    )
    .await
    .expect_ok(200);
    let overrides: Vec<Value> = app
        .audit_for("pol-ovr-1")
        .into_iter()
        .filter(|r| r["kind"] == "override")
        .map(|r| r.get("policy_rule").cloned().unwrap_or(Value::Null))
        .collect();
    assert_eq!(
        overrides,
        [Value::Null, json!(2)],
        "one's own run needs no rule"
    );
}

/// [`POLICY`] with devops allowed to read the trail.
fn with_devops_reading() -> String {
    format!("{POLICY}  - roles: [devops]\n    allow: [audit.read]\n")
}

#[tokio::test]
async fn a_reload_picks_up_a_changed_policy_and_a_bad_one_keeps_the_policy_in_force() {
    let app = Governed::spawn(POLICY).await;
    let admin = app.token(ANA, "admin");
    let devops = app.token(JAKE, "devops");
    app.get("/audit/entries", Some(&devops))
        .await
        .expect(403, "FORBIDDEN_ROLE");

    app.rewrite(&with_devops_reading());
    let reloaded = app
        .post_empty("/workflows/reload", &admin)
        .await
        .expect_ok(200);
    assert_eq!(reloaded["invalid"], json!([]));
    app.get("/audit/entries", Some(&devops))
        .await
        .expect_ok(200);
    let health = app.get("/health", None).await.expect_ok(200);
    assert_eq!(health["components"]["policy"]["rules"], 5);

    app.rewrite("default: deny\nrules:\n  - roles: [devops]\n    allow: [audit.reed]\n");
    let reloaded = app
        .post_empty("/workflows/reload", &admin)
        .await
        .expect_ok(200);
    let invalid = reloaded["invalid"].as_array().expect("a list");
    assert_eq!(invalid.len(), 1, "{reloaded}");
    assert!(invalid[0]["file"]
        .as_str()
        .unwrap()
        .ends_with("policy.yaml"));
    let reason = invalid[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("policy.yaml:4:13: unknown action 'audit.reed'"),
        "{reason}"
    );
    assert!(
        reason.contains("the policy in force stays as it was"),
        "{reason}"
    );
    // The policy in force is still the changed one.
    app.get("/audit/entries", Some(&devops))
        .await
        .expect_ok(200);
    app.post_empty("/workflows/reload", &admin)
        .await
        .expect_ok(200);
    let health = app.get("/health", None).await.expect_ok(200);
    let policy = &health["components"]["policy"];
    assert_eq!(policy["rules"], 5);
    let last_error = policy["last_error"].as_str().expect("the reason");
    assert!(
        last_error.starts_with("policy.yaml:4:13: unknown action"),
        "{last_error}"
    );
}

#[tokio::test]
async fn an_edited_policy_file_is_reloaded_by_itself() {
    let app = Governed::spawn(POLICY).await;
    let devops = app.token(JAKE, "devops");
    app.get("/audit/entries", Some(&devops))
        .await
        .expect(403, "FORBIDDEN_ROLE");
    app.rewrite(&with_devops_reading());
    let deadline = Instant::now() + Duration::from_secs(15);
    while app.get("/audit/entries", Some(&devops)).await.status != 200 {
        assert!(Instant::now() < deadline, "the edit was never picked up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn health_says_which_policy_is_in_force() {
    let app = Governed::spawn(POLICY).await;
    let health = app.get("/health", None).await.expect_ok(200);
    let policy = &health["components"]["policy"];
    assert_eq!(policy["file"], "policy.yaml", "the name, not the path");
    assert_eq!(policy["rules"], 4);
    assert!(policy["sha256"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(policy["last_error"], Value::Null);

    let built_in = TestApp::spawn().await;
    let health = built_in.get("/health", None).await.expect_ok(200);
    assert!(health["components"].get("policy").is_none(), "{health}");
}

#[test]
fn the_server_does_not_start_with_a_bad_policy_file() {
    let site = Site::new();
    site.write(
        "policy.yaml",
        "rules:\n  - roles: [admin]\n    allow: [relaod]\n",
    );
    site.sustainbot()
        .policy(&site.path().join("policy.yaml"))
        .run(&["--port", "0"])
        .expect_exit(2)
        .expect_stderr("policy.yaml:3:13: unknown action 'relaod'");
}

#[test]
fn the_command_line_runs_as_role_cli_under_the_policy() {
    let site = Site::new();
    site.workflow("backup", &json!({"steps": []}));
    site.write(
        "policy.yaml",
        "rules:\n  - roles: [cli]\n    allow: [run]\n    workflows: [noop]\n",
    );
    let policy = site.path().join("policy.yaml");
    site.sustainbot()
        .policy(&policy)
        .run_workflow("noop")
        .expect_exit(0);
    site.sustainbot()
        .policy(&policy)
        .run_workflow("backup")
        .expect_exit(1)
        .expect_stdout("FORBIDDEN_ROLE")
        .expect_stdout("Action 'run' of workflow 'backup'");
}

/// A policy file with a problem on each of several lines.
const BAD: &str = "default: deny
rules:
  - roles: [devops]
    allow: [run, deploy]
    workflows: [\"deploy-[ab]\"]
    drag_modes: [execute, analysis]
colour: blue
";

fn policy_command(site: &Site, args: &[&str]) -> std::process::Output {
    sustainbot().current_dir(site.path()).run(args)
}

#[test]
fn policy_check_names_each_problem_by_line_and_column() {
    let site = Site::new();
    site.write("bad.yaml", BAD);
    site.write("good.yaml", POLICY);
    let output = policy_command(&site, &["policy", "check", "bad.yaml"]).expect_exit(1);
    let lines: Vec<String> = output.stdout_text().lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 4, "{}", output.describe());
    assert!(lines[0].starts_with("bad.yaml:4:18: unknown action 'deploy'"));
    assert!(lines[1].starts_with("bad.yaml:5:17: bad pattern 'deploy-[ab]'"));
    assert!(lines[2].starts_with("bad.yaml:6:27: bad drag mode 'analysis'"));
    assert!(lines[3].starts_with("bad.yaml:7:1: unknown key 'colour'"));
    output.expect_stderr("bad.yaml: 4 problems");

    policy_command(&site, &["policy", "check", "good.yaml"])
        .expect_exit(0)
        .expect_stdout("good.yaml: valid: 4 rules, default deny, 0 groups");
    // POLICY_PATH when no file is named; nothing to check without either.
    sustainbot()
        .current_dir(site.path())
        .policy(Path::new("good.yaml"))
        .run(&["policy", "check"])
        .expect_exit(0);
    policy_command(&site, &["policy", "check"])
        .expect_exit(2)
        .expect_stderr("set POLICY_PATH");
    policy_command(&site, &["policy", "check", "missing.yaml"]).expect_exit(2);
}

#[test]
fn policy_explain_says_which_rule_decides_and_why() {
    let site = Site::new();
    site.write("policy.yaml", POLICY);
    let explain = |args: &[&str]| {
        let mut all = vec!["policy", "explain", "--policy", "policy.yaml"];
        all.extend_from_slice(args);
        policy_command(&site, &all)
    };
    explain(&[
        "--role",
        "devops",
        "--action",
        "run",
        "--workflow",
        "deploy-web",
        "--mode",
        "execute",
    ])
    .expect_exit(0)
    .expect_stdout("allowed by rule 1 (line 3): 'run' of workflow 'deploy-web'")
    .expect_stdout("rule 2 (line 7): does not apply: role 'devops' matches none of admin");
    explain(&[
        "--role",
        "devops",
        "--action",
        "run",
        "--workflow",
        "deploy-web",
        "--mode",
        "draft",
    ])
    .expect_exit(1)
    .expect_stdout("refused by the default (default: deny)")
    .expect_stdout("rule 1 (line 3): does not apply: DRAG mode draft is not one of execute, grunt");
    explain(&[
        "--role",
        "user",
        "--role",
        "auditor",
        "--action",
        "audit.read",
    ])
    .expect_exit(0)
    .expect_stdout("allowed by rule 3 (line 9)");
    explain(&["--role", "admin", "--action", "relaod"])
        .expect_exit(2)
        .expect_stderr("unknown action 'relaod'");
    explain(&[
        "--role",
        "admin",
        "--action",
        "reload",
        "--workflow",
        "noop",
    ])
    .expect_exit(2);
}
