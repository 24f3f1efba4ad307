//! Humans in charge: a run that needs approval waits for a different human with an approver role.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::{governance_request, trace, Reply, Settings, TestApp, ANA, JAKE};

/// `guarded` needs an admin's approval, which expires after `expires_seconds` (none: the default).
fn guarded(expires_seconds: Option<u64>) -> Value {
    let mut approval = json!({"required": true, "approver_roles": ["admin"]});
    if let Some(expires) = expires_seconds {
        approval["expires_seconds"] = json!(expires);
    }
    json!({"approval": approval, "steps": [{"id": "say", "command": ["echo", "approved work"]}]})
}

async fn app(expires: u64) -> TestApp {
    TestApp::with_workflow("guarded", guarded(Some(expires))).await
}

async fn request_run(app: &TestApp, id: &str) -> Value {
    app.execute(&governance_request("guarded"), &trace(id))
        .await
        .expect_ok(202)
}

async fn decide(app: &TestApp, trace: &str, verb: &str, token: &str, body: Value) -> Reply {
    app.post_json(&format!("/runs/{trace}/{verb}"), &body, Some(token))
        .await
}

fn decisions(app: &TestApp, trace: &str) -> Vec<(String, String)> {
    app.audit_for(trace)
        .iter()
        .filter(|r| r["kind"] == "approval")
        .map(|r| {
            (
                r["decision"].as_str().unwrap().to_owned(),
                r["actor"]["actor"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

async fn status(app: &TestApp, trace: &str) -> Value {
    app.get(&format!("/runs/{trace}"), Some(&app.jake()))
        .await
        .expect_ok(200)
}

#[tokio::test]
async fn a_run_needing_approval_waits_and_a_second_human_approves_it() {
    let app = app(3600).await;
    let accepted = request_run(&app, "appr-1").await;
    assert_eq!(accepted["status"], "pending_approval");
    assert_eq!(accepted["approve_url"], "/runs/appr-1/approve");
    assert_eq!(status(&app, "appr-1").await["status"], "pending_approval");
    assert!(
        app.audit_for("appr-1")
            .iter()
            .all(|r| r["outcome"] != "started"),
        "nothing ran yet"
    );

    let ana = app.token(ANA, "admin");
    decide(
        &app,
        "appr-1",
        "approve",
        &ana,
        json!({"reason": "reviewed the diff"}),
    )
    .await
    .expect_ok(202);
    // The approved run finishes.
    app.wait_for_run("appr-1", "succeeded", Duration::from_secs(10))
        .await;
    assert_eq!(
        decisions(&app, "appr-1"),
        [
            ("requested".into(), JAKE.into()),
            ("approved".into(), ANA.into())
        ]
    );
    let outcomes: Vec<Value> = app
        .audit_for("appr-1")
        .iter()
        .filter(|r| r["kind"] == "run")
        .map(|r| r["outcome"].clone())
        .collect();
    assert_eq!(outcomes, [json!("started"), json!("success")]);
    assert!(app.verify_audit().is_valid());
}

#[tokio::test]
async fn self_approval_and_non_approvers_are_refused_and_audited() {
    let app = app(3600).await;
    request_run(&app, "appr-2").await;
    // Jake requested it; his admin token cannot approve it.
    decide(&app, "appr-2", "approve", &app.jake(), json!({}))
        .await
        .expect(403, "APPROVAL_REFUSED");
    let user = app.token("bob@example.org", "user");
    decide(&app, "appr-2", "approve", &user, json!({}))
        .await
        .expect(403, "APPROVAL_REFUSED");
    assert_eq!(
        status(&app, "appr-2").await["status"],
        "pending_approval",
        "still waiting for a proper approver"
    );
    let refused: Vec<String> = decisions(&app, "appr-2")
        .into_iter()
        .map(|(d, _)| d)
        .collect();
    assert_eq!(refused, ["requested", "refused", "refused"]);
}

#[tokio::test]
async fn a_denial_needs_a_reason_and_ends_the_run() {
    let app = app(3600).await;
    request_run(&app, "appr-3").await;
    let ana = app.token(ANA, "admin");
    decide(&app, "appr-3", "deny", &ana, json!({}))
        .await
        .expect(400, "VALIDATION_ERROR");
    decide(
        &app,
        "appr-3",
        "deny",
        &ana,
        json!({"reason": "not during the freeze"}),
    )
    .await
    .expect_ok(200);
    assert_eq!(status(&app, "appr-3").await["status"], "rejected");
    decide(&app, "appr-3", "approve", &ana, json!({}))
        .await
        .expect(409, "RUN_NOT_PENDING");
    let record = app
        .audit_for("appr-3")
        .into_iter()
        .find(|r| r["decision"] == "denied")
        .expect("denial audited");
    assert_eq!(record["reason"], "not during the freeze");
    assert_eq!(record["actor"]["actor"], ANA);
}

#[tokio::test]
async fn approvals_expire() {
    let app = app(1).await;
    request_run(&app, "appr-4").await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let ana = app.token(ANA, "admin");
    decide(&app, "appr-4", "approve", &ana, json!({}))
        .await
        .expect(410, "APPROVAL_EXPIRED");
    assert_eq!(status(&app, "appr-4").await["status"], "rejected");
    assert!(decisions(&app, "appr-4")
        .iter()
        .any(|(d, _)| d == "expired"));
}

#[tokio::test]
async fn a_request_nobody_decides_expires_by_itself_on_the_record() {
    let app = app(1).await;
    request_run(&app, "appr-6").await;
    // It expires.
    app.wait_for_run("appr-6", "rejected", Duration::from_secs(10))
        .await;
    let expired: Vec<Value> = app
        .audit_for("appr-6")
        .into_iter()
        .filter(|r| r["decision"] == "expired")
        .collect();
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0]["actor"]["role"], "system");
    // Auditors can ask for the approval records alone.
    let page = app
        .get(
            "/audit/entries?kind=approval&trace_id=appr-6",
            Some(&app.token(ANA, "auditor")),
        )
        .await
        .expect_ok(200);
    let kinds: Vec<&str> = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["decision"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["requested", "expired"], "{page}");
    // A late decision hears that it expired.
    let ana = app.token(ANA, "admin");
    decide(&app, "appr-6", "approve", &ana, json!({}))
        .await
        .expect(410, "APPROVAL_EXPIRED");
}

#[tokio::test]
async fn a_trace_id_still_waiting_cannot_be_reused() {
    let app = app(3600).await;
    request_run(&app, "appr-7").await;
    app.execute(&governance_request("guarded"), &trace("appr-7"))
        .await
        .expect(409, "TRACE_ID_IN_USE");
    assert_eq!(status(&app, "appr-7").await["status"], "pending_approval");
    let ana = app.token(ANA, "admin");
    decide(&app, "appr-7", "deny", &ana, json!({"reason": "not now"}))
        .await
        .expect_ok(200);
    let outcomes: Vec<String> = app
        .audit_for("appr-7")
        .iter()
        .filter_map(|r| r["code"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        outcomes,
        ["TRACE_ID_IN_USE"],
        "the refusal is on the record"
    );
}

#[tokio::test]
async fn a_cancel_that_lands_while_the_request_is_being_recorded_still_withdraws_it() {
    use sustainbot::auth::Principal;
    use sustainbot::pipeline::{RequestBody, RunRequest};
    use sustainbot::trace::TraceId;
    let app = app(3600).await;
    let person = |email: &str| Principal::new(Some(email.to_owned()), "admin".into(), None);
    let gate = &app.state.gate;
    let prepared = gate
        .prepare(RunRequest {
            trace_id: TraceId::parse("appr-8").unwrap(),
            principal: person(JAKE),
            body: RequestBody::Governed(Ok(Some(governance_request("guarded")))),
            approvable: true,
        })
        .await
        .unwrap();
    // The cancel arrives after the run is registered and before it is parked.
    let live = gate.runs().get("appr-8").unwrap();
    assert!(live.cancel_as(ANA, &person(ANA)));
    let cancelled = prepared.hold_for_approval().await.unwrap_err();
    assert_eq!(cancelled.code(), "CANCELLED");
    assert_eq!(status(&app, "appr-8").await["status"], "cancelled");
    assert_eq!(
        decisions(&app, "appr-8"),
        [
            ("requested".to_owned(), JAKE.to_owned()),
            ("withdrawn".to_owned(), ANA.to_owned())
        ]
    );
    let ana = app.token(ANA, "admin");
    decide(&app, "appr-8", "approve", &ana, json!({}))
        .await
        .expect(409, "RUN_NOT_PENDING");
}

#[tokio::test]
async fn runs_waiting_for_approval_are_bounded() {
    let app = TestApp::builder()
        .workflow("guarded", guarded(None))
        .approvals_max(2)
        .spawn()
        .await;
    request_run(&app, "wait-a").await;
    request_run(&app, "wait-b").await;
    let reply = app
        .execute(&governance_request("guarded"), &trace("wait-c"))
        .await;
    assert!(reply.header("retry-after").is_some());
    reply.expect_refused(&app, 429, "TOO_MANY_RUNS");
    assert_eq!(status(&app, "wait-c").await["status"], "rejected");
    // A decision frees a place.
    let ana = app.token(ANA, "admin");
    decide(&app, "wait-a", "deny", &ana, json!({"reason": "no"}))
        .await
        .expect_ok(200);
    request_run(&app, "wait-d").await;
}

#[tokio::test]
async fn a_waiting_run_can_be_withdrawn() {
    let app = app(3600).await;
    request_run(&app, "appr-5").await;
    app.post_empty("/runs/appr-5/cancel", &app.jake())
        .await
        .expect_ok(200);
    assert_eq!(status(&app, "appr-5").await["status"], "cancelled");
    assert!(decisions(&app, "appr-5")
        .iter()
        .any(|(d, _)| d == "withdrawn"));
}
