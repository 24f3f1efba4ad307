//! Secrets out of the steps' reach (issue 12, item 5): a command step of a server started the
//! usual way (secrets in its environment) cannot read them from the server's `/proc`, and, when
//! the server runs as root, runs as an unprivileged user that cannot read the audit trail.

use serde_json::json;

use crate::helpers::{Settings, Site, TEST_SECRET};

const WEBHOOK: &str = "https://hooks.slack.com/services/T000/B000/webhook-secret-value";

#[tokio::test]
async fn a_step_reading_the_servers_proc_environment_gets_no_secret() {
    let site = Site::new();
    site.workflow(
        "snoop",
        &json!({"steps": [{"id": "look", "command": ["sh", "-c",
            "id -u; tr '\\0' '\\n' < /proc/$PPID/environ; cat \"$0\"; true", "../logs/audit.jsonl"]}]}),
    );
    let server = site
        .sustainbot()
        .env("SLACK_WEBHOOK_URL", WEBHOOK)
        .env("SLACK_SIGNING_SECRET", "slack-signing-secret-value-0123")
        .start();
    let reply = server.run_workflow("snoop", json!({})).await;
    let body = reply.expect_ok(200);
    let step = &body["steps"][0];
    let seen = format!("{}{}", step["stdout"], step["stderr"]);
    for secret in [TEST_SECRET, WEBHOOK, "slack-signing-secret-value-0123"] {
        assert!(!seen.contains(secret), "a step read {secret}: {seen}");
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let uid = step["stdout"]
            .as_str()
            .unwrap()
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned();
        assert_ne!(
            uid, "0",
            "a server running as root runs its steps as nobody: {seen}"
        );
        assert!(
            seen.contains("Permission denied"),
            "nor can they read the audit trail: {seen}"
        );
    } else {
        eprintln!("not root: the run-as-nobody part of this test is skipped");
    }
}
