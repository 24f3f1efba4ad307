//! No token, secret, signing key or Slack signature ever reaches a log or a trace: the real binary,
//! logging at `debug` as JSON lines and as text and exporting its traces, is driven through the
//! suite's kinds of scenario (a governed run whose steps carry a secret, refusals, bad tokens,
//! signed and forged Slack requests, audit and run reads), then every byte it logged or exported
//! is searched for each of them.

use std::time::Duration;

use jsonwebtoken::Algorithm;
use serde_json::{json, Value};

use crate::helpers::{
    claims_for, command_form, governance_request, json_lines, now, short_name_request,
    signed_headers, signed_token, trace, unsigned_token, Collector, EchoServer, FakeSlack,
    Settings, Site, FORM, JAKE, TEST_SECRET,
};

const SLACK_SECRET: &str = "slack-signing-secret-never-logged-0001";
const STEP_SECRET: &str = "step-secret-value-never-logged-0002";
const COLLECTOR_KEY: &str = "otlp-collector-key-never-logged-0003";
const LLM_KEY: &str = "llm-api-key-never-logged-0004";
const USERS: &str =
    r#"{"UJAKE": {"name": "Jake Smith", "email": "jake@example.org", "role": "admin"}}"#;

/// A command step and an `http` step, both given the secret `STEP_TOKEN`.
fn deploy(echo: &str) -> Value {
    json!({"steps": [
        {"id": "check", "command": ["printenv", "STEP_TOKEN"], "secrets": ["STEP_TOKEN"]},
        {"id": "call", "http": {"url": format!("{echo}/deployed"), "method": "POST",
            "headers": {"authorization": "Bearer {{ secrets.STEP_TOKEN }}"},
            "body": {"token": "{{ secrets.STEP_TOKEN }}"}}}
    ]})
}

// The collector must keep answering while the test waits for the server to exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_secret_key_or_signature_reaches_a_log_or_a_trace() {
    let collector = Collector::start().await;
    let slack = FakeSlack::start().await;
    let echo = EchoServer::start().await;
    let site = Site::new();
    let (private_key, _) = site.keygen();
    site.workflow("deploy", &deploy(&echo.base));
    site.write("slack-users.json", USERS);
    let log = site.path().join("sustainbot.jsonl");
    let stderr = site.path().join("stderr.log");
    let mut server = site
        .sustainbot()
        .debug_logs()
        .otlp(&collector.base)
        .env(
            "OTEL_EXPORTER_OTLP_HEADERS",
            &format!("authorization=Bearer {COLLECTOR_KEY}"),
        )
        .signing_key(&private_key)
        .checkpoint_every(1)
        .slack_signing_secret(SLACK_SECRET)
        .slack_users_file(&site.path().join("slack-users.json"))
        .slack_at(&slack.base)
        .env("LLM_API_KEY", LLM_KEY)
        .env("STEP_TOKEN", STEP_SECRET)
        .start_logging_to(&log, std::fs::File::create(&stderr).expect("stderr file"));
    let mut never = vec![
        TEST_SECRET.to_owned(),
        SLACK_SECRET.to_owned(),
        STEP_SECRET.to_owned(),
        COLLECTOR_KEY.to_owned(),
        LLM_KEY.to_owned(),
        "xoxb-test-token".to_owned(),
        std::fs::read_to_string(&private_key)
            .expect("the signing key")
            .trim()
            .to_owned(),
    ];

    // A governed run whose steps carry the secret, and reads of it.
    let jake = server.jake();
    let auditor = server.token("aud@example.org", "auditor");
    never.extend([jake.clone(), auditor.clone()]);
    let ran = server
        .execute(&governance_request("deploy"), &trace("secret-run"))
        .await;
    assert_eq!(ran.status, 200, "{}", ran.text);
    assert_eq!(echo.requests(), 1);
    assert_eq!(
        server.get("/runs/secret-run", Some(&jake)).await.status,
        200
    );
    assert_eq!(
        server
            .get("/audit/entries?limit=5", Some(&auditor))
            .await
            .status,
        200
    );
    assert_eq!(
        server.get("/audit/verify", Some(&auditor)).await.status,
        200
    );

    // Refusals and bad tokens.
    let refused = server.execute(&short_name_request("deploy"), &[]).await;
    assert_eq!(refused.status, 400);
    let mut other = governance_request("deploy");
    other["aim"]["actor"]["email"] = json!("someone-else@example.org");
    assert_eq!(server.execute(&other, &[]).await.status, 403);
    let mut expired = claims_for(JAKE);
    expired["exp"] = json!(now() - 60);
    let bad_tokens = [
        signed_token(
            &claims_for(JAKE),
            b"another-secret-0123456789abcdef012",
            Algorithm::HS256,
        ),
        signed_token(&expired, TEST_SECRET.as_bytes(), Algorithm::HS256),
        unsigned_token(&claims_for(JAKE)),
        "garbage-token-never-logged".to_owned(),
    ];
    for token in bad_tokens {
        let reply = server
            .execute_as(&token, &governance_request("deploy"), &[])
            .await;
        assert_eq!(reply.status, 401, "{}", reply.text);
        never.push(token);
    }

    // Slack: a signed command, the same request again (a replay), a forged and a stale signature.
    let body = command_form("UJAKE", "/sustainbot", "list", &slack.response_url("r1"));
    let signed = signed_headers(SLACK_SECRET, now(), &body, FORM);
    let forged = signed_headers("not-the-secret", now(), &body, FORM);
    let stale = signed_headers(SLACK_SECRET, now() - 600, &body, FORM);
    for (headers, status) in [
        (&signed, 200),
        (&signed, 401),
        (&forged, 401),
        (&stale, 401),
    ] {
        let reply = server
            .post_raw("/slack/commands", body.clone(), headers)
            .await;
        assert_eq!(reply.status, status, "{}", reply.text);
        never.extend(
            headers
                .iter()
                .filter(|(name, _)| *name == "x-slack-signature")
                .map(|(_, signature)| signature.clone()),
        );
    }

    // Let the last spans go out, then stop (the rest is flushed at exit).
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(server.terminate().success());

    let logged = [
        (
            "the JSON log",
            std::fs::read_to_string(&log).expect("JSON log"),
        ),
        ("stderr", std::fs::read_to_string(&stderr).expect("stderr")),
        (
            "the exported traces",
            String::from_utf8_lossy(&collector.bodies()).into_owned(),
        ),
    ];
    for (place, text) in &logged {
        assert!(
            text.contains("secret-run"),
            "{place} does not show the run:\n{text}"
        );
        for secret in &never {
            let shown: String = secret.chars().take(12).collect();
            assert!(!text.contains(secret.as_str()), "{place} holds {shown}...");
        }
    }
    // With traces exported too, a run's log lines still show their request's span.
    let queued = json_lines(&log)
        .into_iter()
        .find(|l| l["message"] == "run queued" && l["trace_id"] == "secret-run")
        .expect("the run's queued line");
    assert_eq!(queued["span"]["name"], "request", "{queued}");
    assert_eq!(queued["span"]["trace_id"], "secret-run", "{queued}");
    // The collector's key did reach the collector, as a header.
    let authorizations: Vec<_> = collector
        .headers()
        .iter()
        .filter_map(|h| h.get("authorization").cloned())
        .collect();
    assert!(
        !authorizations.is_empty()
            && authorizations
                .iter()
                .all(|v| v == &format!("Bearer {COLLECTOR_KEY}")),
        "{authorizations:?}"
    );
}
