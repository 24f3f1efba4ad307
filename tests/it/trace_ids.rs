//! A finished run's trace id is not another principal's to reuse (409 `TRACE_ID_IN_USE`), also
//! after a restart, when the run is known only from the audit trail.

use serde_json::Value;

use crate::helpers::{governance_request, trace, Site, TestApp, ANA};

fn as_ana(mut request: Value) -> Value {
    request["aim"]["actor"]["email"] = ANA.into();
    request["aim"]["actor"]["name"] = "Ana Lopez".into();
    request
}

#[tokio::test]
async fn another_principal_cannot_reuse_a_finished_runs_trace_id_but_its_owner_can() {
    let app = TestApp::spawn().await;
    app.execute(&governance_request("noop"), &trace("shared-1"))
        .await
        .expect_ok(200);
    let ana = app.token(ANA, "user");
    app.execute_as(
        &ana,
        &as_ana(governance_request("noop")),
        &trace("shared-1"),
    )
    .await
    .expect(409, "TRACE_ID_IN_USE");
    // Jake's own id is his to reuse once his run has ended.
    app.execute(&governance_request("noop"), &trace("shared-1"))
        .await
        .expect_ok(200);
    let started: Vec<Value> = app
        .audit_for("shared-1")
        .into_iter()
        .filter(|r| r["outcome"] == "started")
        .collect();
    assert!(started
        .iter()
        .all(|r| r["principal"]["actor"] == "jake@example.org"));
}

#[tokio::test]
async fn after_a_restart_the_audit_trail_still_says_whose_a_trace_id_is() {
    let site = Site::new();
    let mut first = site.start();
    let reply = first
        .execute(&governance_request("noop"), &trace("before-restart"))
        .await;
    assert_eq!(reply.status.as_u16(), 200, "{}", reply.text);
    first.kill();
    let second = site.start();
    let ana = second.token(ANA, "user");
    second
        .execute_as(
            &ana,
            &as_ana(governance_request("noop")),
            &trace("before-restart"),
        )
        .await
        .expect(409, "TRACE_ID_IN_USE");
    let reply = second
        .execute(&governance_request("noop"), &trace("before-restart"))
        .await;
    assert_eq!(reply.status.as_u16(), 200, "{}", reply.text);
}
