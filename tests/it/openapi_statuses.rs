//! Every status and error code the API description documents, provoked and answered as
//! documented (the test client checks each answer against the description), except a short list
//! that needs a broken disk, a full queue or a panic: those name the test that provokes them.

use std::collections::BTreeSet;

use serde_json::{json, Value};

mod apikeys;
mod runs_and_slack;

use apikeys::apikeys;
use runs_and_slack::{audit, runs, slack};

use crate::helpers::openapi::description;
use crate::helpers::{
    governance_request, short_name_request, trace, Reply, Settings, TestApp, TestClient, ANA, JAKE,
};

const SLACK_SECRET: &str = "slack-signing-secret-for-the-description";

/// What the description documents: `"<METHOD> <template> <status> <code>"`, `-` for an answer
/// that is not an error body.
fn documented() -> BTreeSet<String> {
    fn codes(schema: &Value, into: &mut BTreeSet<String>) {
        match schema {
            Value::Object(map) => {
                if let Some(list) = map
                    .get("properties")
                    .and_then(|p| p.get("code"))
                    .and_then(|c| c.get("enum"))
                    .and_then(Value::as_array)
                {
                    into.extend(list.iter().filter_map(Value::as_str).map(str::to_owned));
                }
                map.values().for_each(|v| codes(v, into));
            }
            Value::Array(items) => items.iter().for_each(|v| codes(v, into)),
            _ => {}
        }
    }
    let mut all = BTreeSet::new();
    for (path, item) in description().doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("path item") {
            let method = method.to_uppercase();
            for (status, response) in operation["responses"].as_object().expect("responses") {
                let mut found = BTreeSet::new();
                codes(response, &mut found);
                if found.is_empty() {
                    found.insert("-".to_owned());
                }
                for code in found {
                    all.insert(format!("{method} {path} {status} {code}"));
                }
            }
        }
    }
    all
}

/// Documented answers this file does not provoke, and where they are.
const ELSEWHERE: &[(&str, &str)] = &[
    (
        " 500 INTERNAL_ERROR",
        "a panicking handler: http::tests (src/http/mod.rs)",
    ),
    (
        " 503 AUDIT_UNAVAILABLE",
        "a full disk or a removed log: failure.rs, audit.rs",
    ),
    (" 503 SHUTTING_DOWN", "a request during the shutdown drain"),
    (
        " 408 REQUEST_TIMEOUT",
        "a body that does not arrive in time, on raw sockets: connections.rs",
    ),
    (
        " 503 TOO_MANY_CONNECTIONS",
        "every connection busy, on raw sockets: connections.rs",
    ),
    (
        " 413 PARAMETERS_TOO_LARGE",
        "parameters over the cap: holes.rs",
    ),
    (
        " 401 UNKNOWN_SIGNING_KEY",
        "an identity provider's token under a key it does not publish: identity.rs",
    ),
    (
        " 429 RATE_LIMITED",
        "over a configured rate (off by default): rate_limit.rs",
    ),
    (
        " 429 TOO_MANY_RUNS",
        "a full run queue: engine.rs, approval.rs",
    ),
    (
        " 409 CANCELLED",
        "a cancel racing the start of a run: approval.rs",
    ),
    (
        " 410 APPROVAL_EXPIRED",
        "an expired approval request: approval.rs",
    ),
    (
        "/approve 403 FORBIDDEN_ROLE",
        "a policy file (POLICY_PATH) with no rule to approve: policy.rs",
    ),
    (
        "/deny 403 FORBIDDEN_ROLE",
        "a policy file (POLICY_PATH) with no rule to approve: policy.rs",
    ),
    ("GET /health 503 -", "a degraded audit sink: failure.rs"),
    ("GET /status 503 -", "a degraded audit sink: failure.rs"),
    (
        "POST /workflows/{name}/execute 409 TRACE_ID_IN_USE",
        "the gate's one-live-run check, shared with the governed path (provoked here)",
    ),
];

/// The answers seen, as [`documented`] names them.
#[derive(Default)]
struct Seen(BTreeSet<String>);

impl Seen {
    /// Records `reply` to `method path` (checked against the description as it was read).
    fn add(&mut self, method: &str, path: &str, reply: &Reply) -> Value {
        let template = description()
            .template(path.split('?').next().unwrap_or(path))
            .unwrap_or_else(|| panic!("{path} is not described"))
            .to_owned();
        let body: Value = serde_json::from_str(&reply.text).unwrap_or(Value::Null);
        let status = reply.status.as_u16();
        let code = match body["code"].as_str() {
            Some(code) if status >= 400 => code.to_owned(),
            _ => "-".to_owned(),
        };
        self.0
            .insert(format!("{method} {template} {status} {code}"));
        body
    }
}

/// Sends `method path` with `headers` and `body`; the answer is checked as every answer is.
async fn send(
    api: &TestClient,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> Reply {
    let method_value = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut request = api.client.request(method_value, api.url(path)).body(body);
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let reply = Reply::read(request.send().await.expect("request sent")).await;
    reply.check(method, path.split('?').next().unwrap_or(path));
    reply
}

fn bearer(token: &str) -> (&'static str, String) {
    ("authorization", format!("Bearer {token}"))
}

fn json_body(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).expect("json")
}

/// The workflows every scenario needs.
fn workflows() -> Vec<(&'static str, Value)> {
    vec![
        (
            "guarded",
            json!({"approval": {"required": true, "approver_roles": ["admin"]},
                   "steps": [{"id": "say", "command": ["echo", "approved"]}]}),
        ),
        ("exec-only", json!({"drag_modes": ["execute"]})),
        ("admins", json!({"roles": ["admin"]})),
        (
            "deploy",
            json!({"parameters": {"environment": {"type": "string", "required": true}}}),
        ),
        (
            "say",
            json!({"steps": [{"id": "say", "command": ["echo", "hello"]}]}),
        ),
    ]
}

async fn spawn(extra: &[(&str, &str)]) -> TestApp {
    let mut builder = TestApp::builder();
    for (name, definition) in workflows() {
        builder = builder.workflow(name, definition);
    }
    for (key, value) in extra {
        builder = builder.env(key, value);
    }
    builder.spawn().await
}

#[tokio::test]
async fn every_documented_status_and_code_is_answered_as_documented() {
    let app = spawn(&[("SLACK_SIGNING_SECRET", SLACK_SECRET)]).await;
    let open = spawn(&[
        ("GOVERNANCE_ENABLED", "false"),
        ("PROMETHEUS_ENABLED", "false"),
    ])
    .await;
    let mut seen = Seen::default();
    edge(&app, &mut seen).await;
    status_pages(&app, &open, &mut seen).await;
    governance(&app, &mut seen).await;
    governed(&app, &mut seen).await;
    ungoverned(&app, &open, &mut seen).await;
    runs(&app, &mut seen).await;
    audit(&app, &mut seen).await;
    apikeys(&app, &mut seen).await;
    slack(&app, &open, &mut seen).await;

    for (tail, _) in ELSEWHERE {
        assert!(
            documented().iter().any(|answer| answer.contains(tail)),
            "{tail} is no longer documented: drop it from ELSEWHERE"
        );
    }
    let missing: Vec<String> = documented()
        .into_iter()
        .filter(|answer| !seen.0.contains(answer))
        .filter(|answer| !ELSEWHERE.iter().any(|(tail, _)| answer.contains(tail)))
        .collect();
    assert!(
        missing.is_empty(),
        "documented but never answered: {missing:#?}"
    );
    let undocumented: Vec<&String> = seen
        .0
        .iter()
        .filter(|answer| !documented().contains(*answer))
        .filter(|answer| !answer.contains(" 500 WORKFLOW_FAILED"))
        .collect();
    assert!(undocumented.is_empty(), "{undocumented:#?}");
}

/// Every operation: an unusable `X-Trace-ID` (400), no token (401) where one is needed, a body
/// over the limit (413) where a body is read.
async fn edge(app: &TestApp, seen: &mut Seen) {
    for (path, item) in description().doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("path item") {
            let method = method.to_uppercase();
            let concrete = path
                .replace("{trace_id}", "nobody")
                .replace("{name}", "noop")
                .replace("{id}", "0000000000000000");
            let bad_trace = [("x-trace-id", "not a trace id".to_owned())];
            let reply = send(app, &method, &concrete, &bad_trace, Vec::new()).await;
            assert_eq!(
                reply.status.as_u16(),
                400,
                "{method} {path}: {}",
                reply.text
            );
            seen.add(&method, &concrete, &reply);
            if operation["responses"].get("401").is_some() && !path.starts_with("/slack") {
                let reply = send(app, &method, &concrete, &[], Vec::new()).await;
                seen.add(&method, &concrete, &reply);
                let garbage = [bearer("garbage")];
                let reply = send(app, &method, &concrete, &garbage, Vec::new()).await;
                seen.add(&method, &concrete, &reply);
                let unknown_key = [("x-api-key", "sbk_unknown".to_owned())];
                let reply = send(app, &method, &concrete, &unknown_key, Vec::new()).await;
                reply.expect(401, "INVALID_API_KEY");
                seen.add(&method, &concrete, &reply);
            }
            if operation["responses"].get("413").is_some() {
                let headers = [
                    bearer(&app.jake()),
                    ("content-type", "application/json".to_owned()),
                ];
                let big = vec![b' '; 1024 * 1024 + 1];
                let reply = send(app, &method, &concrete, &headers, big).await;
                seen.add(&method, &concrete, &reply);
            }
        }
    }
}

async fn status_pages(app: &TestApp, open: &TestApp, seen: &mut Seen) {
    for path in ["/health", "/status", "/metrics", "/openapi.json"] {
        let reply = app.get(path, None).await;
        seen.add("GET", path, &reply);
    }
    let reply = open.get("/metrics", None).await;
    reply.expect(404, "NOT_FOUND");
    seen.add("GET", "/metrics", &reply);
}

async fn governance(app: &TestApp, seen: &mut Seen) {
    let mut analysis = governance_request("noop");
    analysis["drag_mode"] = json!("analysis");
    for body in [
        governance_request("noop"),
        json!({}),
        analysis,
        short_name_request("noop"),
    ] {
        let reply = app.post_json("/governance/validate", &body, None).await;
        seen.add("POST", "/governance/validate", &reply);
    }
    for body in [
        json!({"text": "You should use Docker", "drag_mode": "research"}),
        json!({"text": 42}),
    ] {
        let reply = app.post_json("/governance/filter", &body, None).await;
        seen.add("POST", "/governance/filter", &reply);
    }
}

async fn governed(app: &TestApp, seen: &mut Seen) {
    const PATH: &str = "/workflows/governed/execute";
    let mut runs = vec![
        (app.jake(), governance_request("noop"), trace("g-ok")),
        (
            app.jake(),
            governance_request("with-steps"),
            trace("g-fail"),
        ),
        (app.jake(), governance_request("guarded"), trace("g-wait")),
        (app.jake(), governance_request("guarded"), trace("g-wait")),
        (
            app.jake(),
            governance_request("no-such-flow"),
            trace("g-404"),
        ),
        (app.jake(), governance_request("bad name!"), trace("g-name")),
        (app.jake(), short_name_request("noop"), trace("g-rule")),
        (
            app.jake(),
            json!({"workflow_name": "noop"}),
            trace("g-shape"),
        ),
        (
            app.token(ANA, "admin"),
            governance_request("noop"),
            trace("g-actor"),
        ),
        (
            app.token(JAKE, "user"),
            governance_request("admins"),
            trace("g-role"),
        ),
        (app.jake(), governance_request("deploy"), trace("g-params")),
    ];
    let mut research = governance_request("exec-only");
    research["drag_mode"] = json!("research");
    runs.push((app.jake(), research, trace("g-mode")));
    let mut queued = governance_request("noop");
    queued["async"] = json!(true);
    runs.push((app.jake(), queued, trace("g-async")));
    for (token, body, extra) in runs {
        let reply = app.execute_as(&token, &body, &extra).await;
        seen.add("POST", PATH, &reply);
    }
}

async fn ungoverned(app: &TestApp, open: &TestApp, seen: &mut Seen) {
    let cases = [
        (app, "noop", "u-required"),
        (open, "noop", "u-ok"),
        (open, "with-steps", "u-fail"),
        (open, "no-such-flow", "u-404"),
        (open, "bad%20name", "u-name"),
        (open, "deploy", "u-params"),
        (open, "admins", "u-admins"),
        (open, "guarded", "u-approval"),
    ];
    for (server, name, id) in cases {
        let headers = [
            bearer(&server.jake()),
            ("content-type", "application/json".to_owned()),
            ("x-trace-id", id.to_owned()),
        ];
        let path = format!("/workflows/{name}/execute");
        let reply = send(server, "POST", &path, &headers, b"{}".to_vec()).await;
        seen.add("POST", &path, &reply);
    }
    let user = open.token(JAKE, "user");
    let headers = [
        bearer(&user),
        ("content-type", "application/json".to_owned()),
    ];
    let path = "/workflows/admins/execute";
    let reply = send(open, "POST", path, &headers, b"{}".to_vec()).await;
    reply.expect(403, "FORBIDDEN_ROLE");
    seen.add("POST", path, &reply);
    let path = "/workflows/noop/execute";
    let big = vec![b' '; 1024 * 1024 + 1];
    let reply = send(open, "POST", path, &[bearer(&open.jake())], big).await;
    reply.expect(413, "PAYLOAD_TOO_LARGE");
    seen.add("POST", path, &reply);
}
