//! Rate limits per principal and per client address: 429 `RATE_LIMITED` with `Retry-After`, off by
//! default.

use crate::helpers::{Settings, TestApp};

#[tokio::test]
async fn a_client_address_over_its_rate_gets_429_with_retry_after() {
    let app = TestApp::builder()
        .env("RATE_LIMIT_PER_IP_PER_MINUTE", "3")
        .spawn()
        .await;
    let token = app.jake();
    for _ in 0..2 {
        app.get("/workflows", Some(&token)).await.expect_ok(200);
    }
    app.get("/health", None).await.expect_ok(200);
    let reply = app.get("/workflows", Some(&token)).await;
    reply.expect(429, "RATE_LIMITED");
    assert_eq!(
        reply.header("retry-after"),
        Some("20"),
        "one token per 20 s"
    );
    // Unauthenticated requests count too: the address is what is limited.
    app.get("/runs", None).await.expect(429, "RATE_LIMITED");
}

#[tokio::test]
async fn a_principal_over_its_rate_gets_429_and_others_do_not() {
    let app = TestApp::builder()
        .env("RATE_LIMIT_PER_MINUTE", "2")
        .spawn()
        .await;
    let jake = app.jake();
    app.get("/workflows", Some(&jake)).await.expect_ok(200);
    app.get("/runs", Some(&jake)).await.expect_ok(200);
    let reply = app.get("/workflows", Some(&jake)).await;
    reply.expect(429, "RATE_LIMITED");
    assert_eq!(reply.header("retry-after"), Some("30"));
    // The same person with another token (padded, other case) is the same principal.
    let again = app.token("JAKE@example.org", "admin");
    app.get("/workflows", Some(&again))
        .await
        .expect(429, "RATE_LIMITED");
    let ana = app.token("ana@example.org", "user");
    app.get("/workflows", Some(&ana)).await.expect_ok(200);
}

#[tokio::test]
async fn without_settings_nothing_is_rate_limited() {
    let app = TestApp::spawn().await;
    let token = app.jake();
    for _ in 0..100 {
        app.get("/workflows", Some(&token)).await.expect_ok(200);
    }
}
