//! The scenarios of `openapi_statuses.rs` that read and decide runs, read the audit trail, and
//! speak for Slack.

use serde_json::json;

use super::{bearer, json_body, send, Seen, SLACK_SECRET};
use crate::helpers::{
    action_form, command_form, governance_request, now, signed_headers, signed_token, trace,
    TestApp, ANA, FORM, JAKE, TEST_SECRET,
};

pub(super) async fn runs(app: &TestApp, seen: &mut Seen) {
    let jake = app.jake();
    let ana = app.token(ANA, "admin");
    let auditor = app.token(ANA, "auditor");
    app.execute(&governance_request("say"), &trace("r-say"))
        .await
        .expect_ok(200);
    let mut gets = vec![
        ("/runs", jake.clone()),
        ("/runs?limit=0", jake.clone()),
        ("/runs/r-say", jake.clone()),
        ("/runs/nobody", jake.clone()),
        ("/runs/r-say/events", jake.clone()),
        ("/runs/nobody/events", jake.clone()),
    ];
    gets.push(("/workflows", jake.clone()));
    for (path, token) in gets {
        let reply = send(app, "GET", path, &[bearer(&token)], Vec::new()).await;
        seen.add("GET", path, &reply);
    }
    let posts = [
        ("/workflows/reload", jake.clone(), json!(null)),
        ("/workflows/reload", app.token(JAKE, "user"), json!(null)),
        ("/runs/g-wait/approve", jake.clone(), json!({})),
        ("/runs/g-wait/approve", ana.clone(), json!({"reason": 5})),
        ("/runs/r-say/approve", ana.clone(), json!({})),
        ("/runs/g-wait/deny", ana.clone(), json!({})),
        ("/runs/g-wait/deny", jake.clone(), json!({"reason": "mine"})),
        ("/runs/r-say/deny", ana.clone(), json!({"reason": "no"})),
        ("/runs/g-wait/cancel", auditor.clone(), json!(null)),
        ("/runs/nobody/cancel", jake.clone(), json!(null)),
        ("/runs/r-say/cancel", jake.clone(), json!(null)),
        ("/runs/r-say/override", jake.clone(), json!({})),
        (
            "/runs/r-say/override",
            jake.clone(),
            json!({"step": "nope", "replacement": "x", "reason": "why"}),
        ),
        (
            "/runs/r-say/override",
            jake.clone(),
            json!({"step": "say", "replacement": "hi", "reason": "friendlier"}),
        ),
        (
            "/runs/r-say/override",
            nameless(),
            json!({"step": "say", "replacement": "hi", "reason": "friendlier"}),
        ),
        (
            "/runs/g-wait/approve",
            ana.clone(),
            json!({"reason": "fine"}),
        ),
        ("/runs/g-async/cancel", jake.clone(), json!(null)),
    ];
    for (path, token, body) in posts {
        let mut headers = vec![bearer(&token)];
        let bytes = if body.is_null() {
            Vec::new()
        } else {
            headers.push(("content-type", "application/json".to_owned()));
            json_body(&body)
        };
        let reply = send(app, "POST", path, &headers, bytes).await;
        seen.add("POST", path, &reply);
    }
    // A second one, waiting, to be denied and withdrawn.
    for id in ["g-deny", "g-withdraw"] {
        app.execute(&governance_request("guarded"), &trace(id))
            .await
            .expect_ok(202);
    }
    let reply = app
        .post_json("/runs/g-deny/deny", &json!({"reason": "no"}), Some(&ana))
        .await;
    seen.add("POST", "/runs/g-deny/deny", &reply);
    let reply = app.post_empty("/runs/g-withdraw/cancel", &jake).await;
    seen.add("POST", "/runs/g-withdraw/cancel", &reply);
}

/// A valid token that names no human (no `actor`).
fn nameless() -> String {
    signed_token(
        &json!({"user_id": "svc", "role": "admin", "iat": now()}),
        TEST_SECRET.as_bytes(),
        jsonwebtoken::Algorithm::HS256,
    )
}

pub(super) async fn audit(app: &TestApp, seen: &mut Seen) {
    let auditor = app.token(ANA, "auditor");
    let user = app.token(JAKE, "user");
    for (path, token) in [
        ("/audit/entries?limit=2", auditor.clone()),
        ("/audit/entries?limit=zero", auditor.clone()),
        ("/audit/entries", user.clone()),
        ("/audit/entries/g-ok", auditor.clone()),
        ("/audit/entries/nobody", auditor.clone()),
        ("/audit/entries/g-ok", user.clone()),
        ("/audit/verify", auditor.clone()),
        ("/audit/verify", user.clone()),
    ] {
        let reply = send(app, "GET", path, &[bearer(&token)], Vec::new()).await;
        seen.add("GET", path, &reply);
    }
}

/// A Slack URL, the headers and the body sent to it.
type SlackRequest = (&'static str, Vec<(&'static str, String)>, Vec<u8>);

pub(super) async fn slack(app: &TestApp, open: &TestApp, seen: &mut Seen) {
    let challenge = json_body(&json!({"type": "url_verification", "challenge": "c-1"}));
    let callback = json_body(&json!({"type": "event_callback", "event_id": "Ev1",
        "event": {"type": "reaction_added"}}));
    let help = command_form("U1", "/sustainbot", "help", "");
    let help_too = command_form("U2", "/sustainbot", "help", "");
    let click = action_form(&json!({"type": "block_actions", "actions": []}));
    let json_type = "application/json";
    let signed = |body: &[u8], kind: &str| signed_headers(SLACK_SECRET, now(), body, kind);
    let cases: Vec<SlackRequest> = vec![
        (
            "/slack/events",
            signed(&challenge, json_type),
            challenge.clone(),
        ),
        (
            "/slack/events",
            signed(&callback, json_type),
            callback.clone(),
        ),
        ("/slack/events", signed(&help, FORM), help.clone()),
        ("/slack/commands", signed(&help_too, FORM), help_too.clone()),
        ("/slack/actions", signed(&click, FORM), click.clone()),
        (
            "/slack/commands",
            signed(b"command=&user_id=", FORM),
            b"command=&user_id=".to_vec(),
        ),
        (
            "/slack/actions",
            signed(b"payload=1", FORM),
            b"payload=1".to_vec(),
        ),
    ];
    for (path, headers, body) in cases {
        let reply = send(app, "POST", path, &headers, body).await;
        seen.add("POST", path, &reply);
    }
    // Each refusal of a signature, on each URL (a body of its own, so that none is a replay).
    for path in ["/slack/events", "/slack/commands", "/slack/actions"] {
        let body = command_form("U9", "/sustainbot", path, "");
        let refused = [
            (vec![("content-type", FORM.to_owned())], "MISSING_SIGNATURE"),
            (
                signed_headers("another-secret", now(), &body, FORM),
                "INVALID_SIGNATURE",
            ),
            (
                signed_headers(SLACK_SECRET, now() - 3600, &body, FORM),
                "STALE_REQUEST",
            ),
        ];
        for (headers, code) in refused {
            let reply = send(app, "POST", path, &headers, body.clone()).await;
            reply.expect(401, code);
            seen.add("POST", path, &reply);
        }
        // The same signed request twice.
        let headers = signed(&body, FORM);
        send(app, "POST", path, &headers, body.clone()).await;
        let reply = send(app, "POST", path, &headers, body.clone()).await;
        reply.expect(401, "REPLAYED_REQUEST");
        seen.add("POST", path, &reply);
    }
    for path in ["/slack/events", "/slack/commands", "/slack/actions"] {
        let reply = send(open, "POST", path, &signed(&help, FORM), help.clone()).await;
        reply.expect(503, "SLACK_NOT_CONFIGURED");
        seen.add("POST", path, &reply);
    }
    // Over Slack's own cap.
    let big = vec![b'a'; 64 * 1024 + 1];
    for path in ["/slack/events", "/slack/commands", "/slack/actions"] {
        let reply = send(app, "POST", path, &signed(&big, FORM), big.clone()).await;
        seen.add("POST", path, &reply);
    }
}
