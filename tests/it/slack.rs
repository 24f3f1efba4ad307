//! `POST /slack/events`: signed Slack Events API requests (the commands, buttons and
//! notifications are in `slack_commands.rs`).

use serde_json::json;

use crate::helpers::{now, Reply, Settings, TestApp};

const SIGNING_SECRET: &str = "slack-signing-secret-for-tests";
const PATH: &str = "/slack/events";

fn url_verification() -> Vec<u8> {
    serde_json::to_vec(&json!({
        "token": "legacy-token",
        "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
        "type": "url_verification",
    }))
    .expect("json")
}

async fn post_signed(app: &TestApp, body: Vec<u8>, timestamp: i64, signature: &str) -> Reply {
    app.post_raw(
        PATH,
        body,
        &[
            ("content-type", "application/json".to_owned()),
            ("x-slack-request-timestamp", timestamp.to_string()),
            ("x-slack-signature", signature.to_owned()),
        ],
    )
    .await
}

async fn post_unsigned(app: &TestApp) -> Reply {
    app.post_raw(
        PATH,
        url_verification(),
        &[("content-type", "application/json".to_owned())],
    )
    .await
}

async fn signed_app() -> TestApp {
    TestApp::builder()
        .slack_signing_secret(SIGNING_SECRET)
        .spawn()
        .await
}

#[tokio::test]
async fn signed_url_verification_answers_the_challenge_as_text() {
    let app = signed_app().await;
    let body = url_verification();
    let ts = now();
    let signature = sustainbot::slack::sign(SIGNING_SECRET, ts, &body);
    let reply = post_signed(&app, body, ts, &signature).await;
    assert_eq!(reply.status.as_u16(), 200, "{}", reply.text);
    assert_eq!(
        reply.text,
        "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
    );
    let content_type = reply.header("content-type").unwrap_or_default();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
}

#[tokio::test]
async fn bad_signature_is_401_invalid_signature() {
    let app = signed_app().await;
    let body = url_verification();
    let ts = now();
    let signature = sustainbot::slack::sign("some-other-secret", ts, &body);
    post_signed(&app, body, ts, &signature)
        .await
        .expect(401, "INVALID_SIGNATURE");
}

#[tokio::test]
async fn missing_signature_headers_are_401_missing_signature() {
    let app = signed_app().await;
    post_unsigned(&app).await.expect(401, "MISSING_SIGNATURE");
}

#[tokio::test]
async fn stale_timestamp_is_401_even_when_correctly_signed() {
    let app = signed_app().await;
    let body = url_verification();
    let ts = now() - 600;
    let signature = sustainbot::slack::sign(SIGNING_SECRET, ts, &body);
    post_signed(&app, body, ts, &signature)
        .await
        .expect(401, "STALE_REQUEST");
}

#[tokio::test]
async fn without_signing_secret_outside_dev_mode_is_503_slack_not_configured() {
    let app = TestApp::spawn().await;
    post_unsigned(&app)
        .await
        .expect(503, "SLACK_NOT_CONFIGURED");
}

#[tokio::test]
async fn without_signing_secret_in_dev_mode_unsigned_requests_are_accepted() {
    let app = TestApp::builder().dev(true).spawn().await;
    let reply = post_unsigned(&app).await;
    assert_eq!(reply.status.as_u16(), 200, "{}", reply.text);
    assert_eq!(
        reply.text,
        "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
    );
}
