//! Slack slash commands, approval buttons and notifications, with real signatures, against a
//! stand-in for Slack on loopback that captures what Slack would receive.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::{
    action_form, command_form, message_text, now, signed_headers, FakeSlack, Reply, Settings,
    TestApp, ANA, FORM, JAKE,
};

const SECRET: &str = "slack-signing-secret-for-command-tests";
/// Jake (a deployer), Ana (an admin), Aud (an auditor); nobody else is mapped.
const USERS: &str = r#"{
  "UJAKE": {"name": "Jake Smith", "email": "jake@example.org", "role": "deployer", "title": "DevOps Engineer"},
  "UANA": {"name": "Ana Lopez", "email": "ana@example.org", "role": "admin"},
  "UAUD": {"name": "Aud Itor", "email": "aud@example.org", "role": "auditor"}
}"#;

struct Rig {
    app: TestApp,
    slack: FakeSlack,
    _users: tempfile::TempDir,
}

async fn rig_with(extra: &[(&str, &str)]) -> Rig {
    let slack = FakeSlack::start().await;
    let users = tempfile::tempdir().expect("tempdir");
    let users_file = users.path().join("slack-users.json");
    std::fs::write(&users_file, USERS).expect("users file");
    let mut builder = TestApp::builder()
        .slack_signing_secret(SECRET)
        .slack_users_file(&users_file)
        .slack_at(&slack.base)
        .env("SLACK_APPROVALS_CHANNEL", "C0APPROVE")
        .workflow("ok", json!({"description": "says hello", "steps": [{"id": "hello", "command": ["echo", "hello"]}]}))
        .workflow("broken", json!({"steps": [{"id": "fails", "command": ["false"]}]}))
        .workflow("count", json!({"parameters": {"n": {"type": "integer", "required": true}},
            "steps": [{"id": "show", "command": ["echo", "{{ parameters.n }}"]}]}))
        .workflow("guarded", json!({"approval": {"required": true, "approver_roles": ["admin", "deployer"]},
            "steps": [{"id": "say", "command": ["echo", "approved work"]}]}));
    for (key, value) in extra {
        builder = builder.env(key, value);
    }
    Rig {
        app: builder.spawn().await,
        slack,
        _users: users,
    }
}

async fn rig() -> Rig {
    rig_with(&[]).await
}

impl Rig {
    /// Posts a signed slash command; the reply and how long it took.
    async fn command_at(
        &self,
        path: &str,
        user: &str,
        command: &str,
        text: &str,
        reply_to: &str,
    ) -> (Reply, Duration) {
        let body = command_form(user, command, text, &self.slack.response_url(reply_to));
        let headers = signed_headers(SECRET, now(), &body, FORM);
        let started = Instant::now();
        let reply = self.app.post_raw(path, body, &headers).await;
        (reply, started.elapsed())
    }

    async fn command(&self, user: &str, text: &str, reply_to: &str) -> Value {
        let (reply, _) = self
            .command_at("/slack/commands", user, "/sustainbot", text, reply_to)
            .await;
        reply.expect_ok(200)
    }

    /// Clicks a button; Slack gets an empty 200 at once, the rest follows at `reply_to`.
    async fn click(&self, user: &str, action_id: &str, trace_id: &str, reply_to: &str) {
        self.click_with(user, action_id, trace_id, reply_to, "trigger-1")
            .await
    }

    async fn click_with(
        &self,
        user: &str,
        action_id: &str,
        trace_id: &str,
        reply_to: &str,
        trigger: &str,
    ) {
        let payload = json!({
            "type": "block_actions",
            "user": {"id": user, "username": "clicker", "team_id": "T0001"},
            "team": {"id": "T0001", "domain": "acme"},
            "channel": {"id": "C0APPROVE", "name": "approvals"},
            "container": {"type": "message", "channel_id": "C0APPROVE", "message_ts": "1700000000.000100"},
            "trigger_id": trigger,
            "response_url": self.slack.response_url(reply_to),
            "actions": [{"action_id": action_id, "block_id": "sustainbot_decision", "value": trace_id, "type": "button"}],
        });
        let body = action_form(&payload);
        let headers = signed_headers(SECRET, now(), &body, FORM);
        let reply = self.app.post_raw("/slack/actions", body, &headers).await;
        assert_eq!(reply.status.as_u16(), 200, "{}", reply.text);
        assert!(reply.text.is_empty(), "{}", reply.text);
    }

    /// Jake asks to run `guarded` (it waits for approval); its trace id.
    async fn request_guarded(&self, reply_to: &str) -> String {
        let ack = self
            .command(
                "UJAKE",
                r#"run guarded mission="Ship the approved change today""#,
                reply_to,
            )
            .await;
        Rig::trace_in(&ack)
    }

    /// The trace id the reply names (`trace \`...\``).
    fn trace_in(reply: &Value) -> String {
        let text = message_text(reply);
        let start = text.find("trace `").expect("a trace id in the reply") + "trace `".len();
        text[start..]
            .split('`')
            .next()
            .unwrap_or_default()
            .to_owned()
    }
}

fn text_of(message: &Value) -> String {
    message_text(message)
}

#[tokio::test]
async fn a_run_from_either_url_is_acknowledged_runs_governed_and_answers_at_the_response_url() {
    let rig = rig().await;
    for (path, reply_to) in [
        ("/slack/commands", "r-commands"),
        ("/slack/events", "r-events"),
    ] {
        let (reply, took) = rig
            .command_at(
                path,
                "UJAKE",
                "/sustainbot",
                r#"run ok mission="Say hello to the team" criteria="hello printed; nothing else""#,
                reply_to,
            )
            .await;
        assert!(took < Duration::from_secs(3), "acknowledged in {took:?}");
        let ack = reply.expect_ok(200);
        assert!(text_of(&ack).contains("accepted"), "{ack}");
        let trace_id = Rig::trace_in(&ack);

        let results = rig
            .slack
            .wait_for(&format!("response/{reply_to}"), 1, |_| true)
            .await;
        let result = &results[0].body;
        let text = text_of(result);
        assert!(
            text.contains("succeeded") && text.contains(&trace_id),
            "{text}"
        );
        assert!(text.contains("`hello`"), "each step's status: {text}");
        assert_eq!(result["response_type"], "ephemeral");

        let records = rig.app.audit_for(&trace_id);
        let outcomes: Vec<&str> = records
            .iter()
            .map(|r| r["outcome"].as_str().unwrap_or_default())
            .collect();
        assert_eq!(outcomes, ["started", "success"], "{records:#?}");
        let started = &records[0];
        assert_eq!(started["aim"]["actor"]["email"], JAKE);
        assert_eq!(started["aim"]["actor"]["role"], "DevOps Engineer");
        assert_eq!(started["principal"]["actor"], JAKE);
        assert_eq!(started["principal"]["role"], "deployer");
        assert_eq!(started["principal"]["user_id"]["slack_user"], "UJAKE");
        let source = &started["aim"]["input"]["sources"][0];
        assert_eq!(source["type"], "slack_slash_command");
        assert_eq!(source["description"], "acme/deploys /sustainbot");
        assert_eq!(
            started["aim"]["mission"]["objective"],
            "Say hello to the team"
        );
        assert_eq!(
            started["aim"]["mission"]["success_criteria"],
            json!(["hello printed", "nothing else"])
        );
        assert_eq!(started["drag_mode"], "execute");
    }
    assert!(rig.app.verify_audit().problem.is_none());
}

#[tokio::test]
async fn parameters_take_their_declared_types_and_a_failing_run_reports_its_failure() {
    let rig = rig().await;
    let ack = rig
        .command("UJAKE", "run count n=7 mode=grunt", "r-count")
        .await;
    let trace_id = Rig::trace_in(&ack);
    rig.slack
        .wait_for("response/r-count", 1, |m| text_of(m).contains("succeeded"))
        .await;
    assert_eq!(rig.app.audit_for(&trace_id)[0]["parameters"]["n"], 7);

    let ack = rig
        .command("UJAKE", "run broken mode=grunt", "r-broken")
        .await;
    let trace_id = Rig::trace_in(&ack);
    let result = rig.slack.wait_for("response/r-broken", 1, |_| true).await;
    let text = text_of(&result[0].body);
    assert!(
        text.contains("failed") && text.contains("WORKFLOW_FAILED") && text.contains("exit 1"),
        "{text}"
    );
    assert_eq!(rig.app.outcomes(&trace_id), ["started", "failure"]);
}

#[tokio::test]
async fn every_command_of_the_original_app_answers() {
    let rig = rig().await;
    let help = rig.command("UJAKE", "help", "r").await;
    assert!(
        text_of(&help).contains("/sustainbot run <workflow>"),
        "{help}"
    );
    let (empty, _) = rig
        .command_at("/slack/commands", "UJAKE", "/sustainbot", "", "r")
        .await;
    assert!(text_of(&empty.expect_ok(200)).contains("/sustainbot logs"));

    let status = rig.command("UJAKE", "status", "r").await;
    assert!(text_of(&status).contains("Audit trail"), "{status}");
    let (status2, _) = rig
        .command_at("/slack/commands", "UJAKE", "/sustainbot-status", "", "r")
        .await;
    assert!(text_of(&status2.expect_ok(200)).contains("Audit trail"));

    let list = rig.command("UJAKE", "list", "r").await;
    let text = text_of(&list);
    assert!(
        text.contains("`ok`: says hello")
            && text.contains("`guarded`")
            && text.contains("needs approval"),
        "{text}"
    );
    let (workflows, _) = rig
        .command_at("/slack/commands", "UJAKE", "/sustainbot-workflows", "", "r")
        .await;
    assert!(text_of(&workflows.expect_ok(200)).contains("`broken`"));

    let ack = rig.command("UJAKE", "run ok mode=draft", "r-run").await;
    let trace_id = Rig::trace_in(&ack);
    rig.slack
        .wait_for("response/r-run", 1, |m| text_of(m).contains("succeeded"))
        .await;

    let runs = rig.command("UJAKE", "runs", "r").await;
    assert!(text_of(&runs).contains(&trace_id), "{runs}");

    // Jake sees his run's steps; the audit records are for readers of the trail.
    let logs = rig.command("UJAKE", &format!("logs {trace_id}"), "r").await;
    let text = text_of(&logs);
    assert!(
        text.contains("`hello`") && text.contains("for auditors and admins"),
        "{text}"
    );
    let (logs, _) = rig
        .command_at(
            "/slack/commands",
            "UAUD",
            "/sustainbot-logs",
            &trace_id,
            "r",
        )
        .await;
    let text = text_of(&logs.expect_ok(200));
    assert!(
        text.contains("run started") && text.contains("run success"),
        "{text}"
    );

    let verify = rig.command("UAUD", "verify", "r").await;
    assert!(
        text_of(&verify).contains("The audit trail verifies"),
        "{verify}"
    );
    let refused = rig.command("UJAKE", "verify", "r").await;
    assert!(text_of(&refused).contains("FORBIDDEN_ROLE"), "{refused}");
    assert_eq!(refused["response_type"], "ephemeral");
}

#[tokio::test]
async fn mistakes_get_an_ephemeral_reply_with_the_usage_not_an_http_error() {
    let rig = rig().await;
    for (text, expected) in [
        ("frobnicate", "Unknown command"),
        ("run nope mode=draft", "Workflow not found"),
        ("run ok oops mode=draft", "not a `key=value`"),
        ("run ok", "needs a mission"),
        ("logs", "needs one trace id"),
    ] {
        let reply = rig.command("UJAKE", text, "r").await;
        let shown = text_of(&reply);
        assert!(
            shown.contains(expected) && shown.contains("*Usage*"),
            "{text}: {shown}"
        );
        assert_eq!(reply["response_type"], "ephemeral");
    }
    // The parameter schema is the gate's: its refusal is shown with its code.
    let reply = rig
        .command("UJAKE", "run count n=seven mode=grunt", "r")
        .await;
    assert!(text_of(&reply).contains("INVALID_PARAMETERS"), "{reply}");
}

#[tokio::test]
async fn forged_stale_replayed_and_malformed_requests_run_nothing() {
    let rig = rig().await;
    let body = command_form(
        "UJAKE",
        "/sustainbot",
        "run ok mode=draft",
        &rig.slack.response_url("x"),
    );
    let forged = signed_headers("not-the-secret", now(), &body, FORM);
    rig.app
        .post_raw("/slack/commands", body.clone(), &forged)
        .await
        .expect(401, "INVALID_SIGNATURE");
    let stale = signed_headers(SECRET, now() - 301, &body, FORM);
    rig.app
        .post_raw("/slack/commands", body.clone(), &stale)
        .await
        .expect(401, "STALE_REQUEST");
    let unsigned = [("content-type", FORM.to_owned())];
    rig.app
        .post_raw("/slack/commands", body.clone(), &unsigned)
        .await
        .expect(401, "MISSING_SIGNATURE");

    let good = signed_headers(SECRET, now(), &body, FORM);
    rig.app
        .post_raw("/slack/commands", body.clone(), &good)
        .await
        .expect_ok(200);
    rig.app
        .post_raw("/slack/events", body.clone(), &good)
        .await
        .expect(401, "REPLAYED_REQUEST");
    rig.app
        .post_raw("/slack/commands", body, &good)
        .await
        .expect(401, "REPLAYED_REQUEST");

    let malformed = b"user_id=UJAKE&text=%ZZ".to_vec();
    let headers = signed_headers(SECRET, now(), &malformed, FORM);
    rig.app
        .post_raw("/slack/commands", malformed, &headers)
        .await
        .expect(400, "VALIDATION_ERROR");
    let no_command = b"user_id=UJAKE&text=run".to_vec();
    let headers = signed_headers(SECRET, now(), &no_command, FORM);
    rig.app
        .post_raw("/slack/commands", no_command, &headers)
        .await
        .expect(400, "VALIDATION_ERROR");

    // Only the one good request ran anything.
    rig.slack.wait_for("response/x", 1, |_| true).await;
    let started = rig
        .app
        .audit_lines()
        .into_iter()
        .filter(|r| r["outcome"] == "started")
        .count();
    assert_eq!(started, 1);
    let metrics = rig.app.get("/metrics", None).await.text;
    for outcome in ["invalid", "stale", "missing", "replayed", "success"] {
        assert!(
            metrics.contains(&format!(
                "sustainbot_slack_signature_verifications_total{{outcome=\"{outcome}\"}}"
            )),
            "{outcome}"
        );
    }
}

#[tokio::test]
async fn an_unmapped_user_is_refused_on_the_record_and_runs_nothing() {
    let rig = rig().await;
    let reply = rig.command("USTRANGER", "run ok mode=draft", "r").await;
    let text = text_of(&reply);
    assert!(
        text.contains("not mapped to an accountable human") && text.contains("UNKNOWN_USER"),
        "{text}"
    );
    assert_eq!(reply["response_type"], "ephemeral");
    let records = rig.app.audit_lines();
    assert_eq!(records.len(), 1, "{records:#?}");
    let refusal = &records[0];
    assert_eq!(refusal["outcome"], "rejected");
    assert_eq!(refusal["code"], "UNKNOWN_USER");
    assert_eq!(refusal["workflow_name"], "ok");
    assert_eq!(refusal["principal"]["user_id"]["slack_user"], "USTRANGER");
    assert!(refusal["principal"]["actor"].is_null());
}

#[tokio::test]
async fn an_unmapped_user_is_looked_up_and_given_the_default_role_when_configured() {
    let rig = rig_with(&[("SLACK_DEFAULT_ROLE", "user")]).await;
    rig.slack.user(
        "UNEW",
        json!({"ok": true, "user": {"id": "UNEW", "name": "newbie",
        "profile": {"email": "new@example.org", "real_name": "New Person"}}}),
    );
    let ack = rig.command("UNEW", "run ok mode=draft", "r-new").await;
    let trace_id = Rig::trace_in(&ack);
    rig.slack
        .wait_for("response/r-new", 1, |m| text_of(m).contains("succeeded"))
        .await;
    let started = &rig.app.audit_for(&trace_id)[0];
    assert_eq!(started["principal"]["actor"], "new@example.org");
    assert_eq!(started["principal"]["role"], "user");
    assert_eq!(started["aim"]["actor"]["name"], "New Person");
    // Looked up once, then cached.
    rig.command("UNEW", "runs", "r").await;
    assert_eq!(rig.slack.at("api/users.info").len(), 1);
    let lookup = &rig.slack.at("api/users.info")[0];
    assert_eq!(
        lookup.authorization.as_deref(),
        Some("Bearer xoxb-test-token")
    );
    // Slack knows no such user: refused.
    let reply = rig.command("UGHOST", "runs", "r").await;
    assert!(text_of(&reply).contains("UNKNOWN_USER"));
}

#[tokio::test]
async fn an_approval_is_decided_by_a_second_humans_click_never_the_requesters() {
    let rig = rig().await;
    let ack = rig
        .command(
            "UJAKE",
            r#"run guarded mission="Ship the approved change today""#,
            "r-jake",
        )
        .await;
    let text = text_of(&ack);
    assert!(text.contains("needs a second human's approval"), "{text}");
    let trace_id = Rig::trace_in(&ack);

    // The request with its buttons: to the requester's channel and to the approvals channel.
    let request = &rig
        .slack
        .wait_for("response/r-jake", 1, |m| {
            m["blocks"][1]["type"] == "actions"
        })
        .await[0];
    assert_eq!(request.body["response_type"], "in_channel");
    assert_eq!(
        request.body["blocks"][1]["elements"][0]["value"],
        trace_id.as_str()
    );
    let posted = &rig
        .slack
        .wait_for("api/chat.postMessage", 1, |_| true)
        .await[0];
    assert_eq!(posted.body["channel"], "C0APPROVE");
    assert_eq!(
        posted.authorization.as_deref(),
        Some("Bearer xoxb-test-token")
    );

    // The requester's own click is refused; the run keeps waiting.
    rig.click("UJAKE", "sustainbot_approve", &trace_id, "click-jake")
        .await;
    let refused = &rig.slack.wait_for("response/click-jake", 1, |_| true).await[0].body;
    assert!(text_of(refused).contains("Self-approval"), "{refused}");
    assert_eq!(refused["response_type"], "ephemeral");
    assert_eq!(refused["replace_original"], false);
    // An auditor may not approve either.
    rig.click("UAUD", "sustainbot_approve", &trace_id, "click-aud")
        .await;
    let refused = &rig.slack.wait_for("response/click-aud", 1, |_| true).await[0].body;
    assert!(text_of(refused).contains("may not decide"), "{refused}");
    // A stranger's click is refused on the record.
    rig.click("USTRANGER", "sustainbot_approve", &trace_id, "click-x")
        .await;
    rig.slack
        .wait_for("response/click-x", 1, |m| {
            text_of(m).contains("UNKNOWN_USER")
        })
        .await;
    assert_eq!(
        rig.app.outcomes(&trace_id),
        ["requested", "refused", "refused"],
        "nothing ran yet"
    );

    // Ana approves: the message says who decided, the run runs, Jake gets the result. The click's
    // response_url has expired here, so the message is updated with chat.update.
    rig.click("UANA", "sustainbot_approve", &trace_id, "gone-ana")
        .await;
    let update = &rig.slack.wait_for("api/chat.update", 1, |_| true).await[0].body;
    assert_eq!(update["channel"], "C0APPROVE");
    assert_eq!(update["ts"], "1700000000.000100");
    assert!(
        text_of(update).contains("approved by Ana Lopez"),
        "{update}"
    );
    let result = rig.slack.wait_for("response/r-jake", 2, |_| true).await;
    assert!(
        text_of(&result[1].body).contains("succeeded"),
        "{:?}",
        result[1].body
    );

    let decisions: Vec<(String, String)> = rig
        .app
        .audit_for(&trace_id)
        .iter()
        .filter(|r| r["kind"] == "approval")
        .map(|r| {
            (
                r["decision"].as_str().unwrap().to_owned(),
                r["actor"]["actor"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        decisions,
        [
            ("requested".to_owned(), JAKE.to_owned()),
            ("refused".to_owned(), JAKE.to_owned()),
            ("refused".to_owned(), "aud@example.org".to_owned()),
            ("approved".to_owned(), ANA.to_owned()),
        ]
    );
    assert_eq!(
        rig.app.outcomes(&trace_id),
        [
            "requested",
            "refused",
            "refused",
            "approved",
            "started",
            "success"
        ]
    );
}

#[tokio::test]
async fn a_deny_click_asks_for_a_reason_in_a_modal_and_the_submission_denies() {
    let rig = rig().await;
    let trace_id = rig.request_guarded("r-jake").await;
    rig.click("UANA", "sustainbot_deny", &trace_id, "click-ana")
        .await;
    let opened = &rig.slack.wait_for("api/views.open", 1, |_| true).await[0].body;
    assert_eq!(opened["trigger_id"], "trigger-1");
    let view = &opened["view"];

    let submission = json!({
        "type": "view_submission",
        "user": {"id": "UANA", "username": "ana", "team_id": "T0001"},
        "team": {"id": "T0001"},
        "view": {"callback_id": view["callback_id"], "private_metadata": view["private_metadata"],
                 "state": {"values": {"reason": {"reason": {"type": "plain_text_input", "value": "Not during the freeze"}}}}},
    });
    let body = action_form(&submission);
    let headers = signed_headers(SECRET, now(), &body, FORM);
    let reply = rig.app.post_raw("/slack/actions", body, &headers).await;
    assert_eq!(reply.status.as_u16(), 200, "{}", reply.text);
    assert!(reply.text.is_empty(), "the modal closes: {}", reply.text);
    // The clicked message is replaced through the click's response_url.
    let update = &rig
        .slack
        .wait_for("response/click-ana", 1, |m| m["replace_original"] == true)
        .await[0]
        .body;
    assert!(
        text_of(update).contains("denied by Ana Lopez: Not during the freeze"),
        "{update}"
    );
    let denied = rig
        .app
        .audit_for(&trace_id)
        .into_iter()
        .find(|r| r["decision"] == "denied")
        .expect("a denied record");
    assert_eq!(denied["reason"], "Not during the freeze");
    assert_eq!(denied["actor"]["actor"], ANA);

    // The requester's own deny by modal is refused inside the modal.
    let second = rig.request_guarded("r-jake2").await;
    let submission = json!({
        "type": "view_submission",
        "user": {"id": "UJAKE", "team_id": "T0001"},
        "view": {"callback_id": "sustainbot_deny_reason",
                 "private_metadata": json!({"trace_id": second}).to_string(),
                 "state": {"values": {"reason": {"reason": {"value": "changed my mind"}}}}},
    });
    let body = action_form(&submission);
    let headers = signed_headers(SECRET, now(), &body, FORM);
    let answer = rig
        .app
        .post_raw("/slack/actions", body, &headers)
        .await
        .expect_ok(200);
    assert_eq!(answer["response_action"], "errors");
    assert!(
        answer["errors"]["reason"]
            .as_str()
            .unwrap()
            .contains("Self-approval"),
        "{answer}"
    );
}

#[tokio::test]
async fn approve_deny_and_cancel_also_work_as_commands() {
    let rig = rig().await;
    let first = rig.request_guarded("r1").await;
    let reply = rig.command("UJAKE", &format!("approve {first}"), "r").await;
    assert!(text_of(&reply).contains("APPROVAL_REFUSED"), "{reply}");
    let reply = rig
        .command("UANA", &format!("deny {first} not this week"), "r")
        .await;
    assert!(text_of(&reply).contains("Denied run"), "{reply}");
    // The requester hears of it where they asked.
    rig.slack
        .wait_for("response/r1", 1, |m| {
            text_of(m).contains("Denied by ana@example.org: not this week")
        })
        .await;

    let second = rig.request_guarded("r2").await;
    let reply = rig.command("UJAKE", &format!("cancel {second}"), "r").await;
    assert!(text_of(&reply).contains("Cancelling run"), "{reply}");
    let withdrawn = rig
        .app
        .audit_for(&second)
        .into_iter()
        .any(|r| r["decision"] == "withdrawn");
    assert!(withdrawn);
    let reply = rig.command("UAUD", &format!("cancel {first}"), "r").await;
    assert!(
        text_of(&reply).contains("RUN_FINISHED") || text_of(&reply).contains("FORBIDDEN_ROLE"),
        "{reply}"
    );
}

#[tokio::test]
async fn completions_of_runs_from_any_entry_point_go_to_the_webhook_with_retries() {
    let rig = rig().await;
    rig.slack.fail_webhook(1);
    rig.app
        .run_workflow("broken", json!({}))
        .await
        .expect(500, "WORKFLOW_FAILED");
    let posted = rig.slack.wait_for("webhook", 2, |_| true).await;
    assert_eq!(
        posted[0].body, posted[1].body,
        "the failed post was retried"
    );
    let text = text_of(&posted[1].body);
    assert!(
        text.contains("broken") && text.contains("failed") && text.contains("Requested by"),
        "{text}"
    );
    let metrics = rig.app.get("/metrics", None).await.text;
    assert!(
        metrics
            .contains(r#"sustainbot_slack_deliveries_total{target="webhook",result="retried"} 1"#),
        "{metrics}"
    );

    let quiet = rig_with(&[("SLACK_NOTIFY", "failures")]).await;
    quiet.app.run_workflow("ok", json!({})).await.expect_ok(200);
    quiet.app.run_workflow("broken", json!({})).await;
    let posted = quiet.slack.wait_for("webhook", 1, |_| true).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(quiet.slack.at("webhook").len(), 1, "{posted:?}");
    assert!(text_of(&posted[0].body).contains("broken"));
}

#[tokio::test]
async fn a_mention_with_a_command_is_answered_in_its_thread() {
    let rig = rig().await;
    let event = json!({
        "type": "event_callback", "team_id": "T0001", "event_id": "Ev1",
        "event": {"type": "app_mention", "user": "UJAKE", "channel": "C0001", "ts": "1700000001.000200",
                  "text": "<@U0APP> run ok mode=draft"},
    });
    let body = serde_json::to_vec(&event).unwrap();
    let headers = signed_headers(SECRET, now(), &body, "application/json");
    rig.app
        .post_raw("/slack/events", body.clone(), &headers)
        .await
        .expect_ok(200);
    let posted = &rig
        .slack
        .wait_for("api/chat.postMessage", 1, |_| true)
        .await[0]
        .body;
    assert_eq!(posted["thread_ts"], "1700000001.000200");
    assert!(text_of(posted).contains("accepted"), "{posted}");
    let trace_id = Rig::trace_in(posted);
    assert_eq!(
        rig.app.audit_for(&trace_id)[0]["aim"]["input"]["sources"][0]["type"],
        "slack_app_mention"
    );
    // Slack's retry of the same event (signed anew) does not run it twice.
    let headers = signed_headers(SECRET, now() + 1, &body, "application/json");
    rig.app
        .post_raw("/slack/events", body, &headers)
        .await
        .expect_ok(200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = rig
        .app
        .audit_lines()
        .into_iter()
        .filter(|r| r["outcome"] == "started")
        .count();
    assert_eq!(started, 1, "the retried event ran nothing");
    assert_eq!(
        rig.slack.at("api/chat.postMessage").len(),
        2,
        "the ack and the result"
    );
}

#[tokio::test]
async fn a_slow_answer_is_acknowledged_in_time_and_follows_at_the_response_url() {
    let rig = rig_with(&[("SLACK_DEFAULT_ROLE", "user")]).await;
    rig.slack.user(
        "USLOW",
        json!({"ok": true, "user": {"id": "USLOW", "profile": {"email": "slow@example.org", "real_name": "Slow Person"}}}),
    );
    rig.slack.slow_users_info(Duration::from_millis(3500));
    let (reply, took) = rig
        .command_at(
            "/slack/commands",
            "USLOW",
            "/sustainbot",
            "run ok mode=draft",
            "r-slow",
        )
        .await;
    assert!(took < Duration::from_secs(3), "acknowledged in {took:?}");
    assert!(text_of(&reply.expect_ok(200)).contains("Working on it"));
    // The handler's own reply and the run's result, both at the response_url (in either order).
    let replies = rig.slack.wait_for("response/r-slow", 2, |_| true).await;
    let texts: Vec<String> = replies.iter().map(|r| text_of(&r.body)).collect();
    assert!(texts.iter().any(|t| t.contains("accepted")), "{texts:?}");
    assert!(texts.iter().any(|t| t.contains("succeeded")), "{texts:?}");
}

#[tokio::test]
async fn a_deny_whose_reason_dialog_cannot_open_denies_nothing() {
    let rig = rig().await;
    let trace_id = rig.request_guarded("r-jake").await;
    rig.click_with("UANA", "sustainbot_deny", &trace_id, "click-ana", "expired")
        .await;
    let told = &rig.slack.wait_for("response/click-ana", 1, |_| true).await[0].body;
    assert!(text_of(told).contains("/sustainbot deny"), "{told}");
    assert_eq!(rig.app.outcomes(&trace_id), ["requested"]);
}

#[tokio::test]
async fn the_same_account_under_another_name_cannot_approve_its_own_run() {
    use crate::helpers::{signed_token, TEST_SECRET};
    let app = TestApp::builder()
        .workflow(
            "guarded",
            json!({"approval": {"required": true, "approver_roles": ["admin"]}, "steps": []}),
        )
        .spawn()
        .await;
    let token = |actor: &str| {
        let claims = json!({"actor": actor, "role": "admin", "user_id": 4242});
        signed_token(
            &claims,
            TEST_SECRET.as_bytes(),
            jsonwebtoken::Algorithm::HS256,
        )
    };
    let request = crate::helpers::governance_request("guarded");
    let accepted = app
        .execute_as(&token(JAKE), &request, &[])
        .await
        .expect_ok(202);
    let trace_id = accepted["trace_id"].as_str().unwrap();
    let refused = app
        .post_empty(
            &format!("/runs/{trace_id}/approve"),
            &token("jake.alias@example.org"),
        )
        .await
        .expect(403, "APPROVAL_REFUSED");
    assert!(
        refused["error"].as_str().unwrap().contains("Self-approval"),
        "{refused}"
    );
}
