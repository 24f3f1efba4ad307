//! JWT authentication on `POST /workflows/governed/execute`.

use jsonwebtoken::Algorithm;
use serde_json::{json, Value};
use sustainbot::auth::JwtKeys;

use crate::helpers::{
    claims_for, governance_request, now, signed_token, unsigned_token, Reply, TestApp, GOVERNED,
    JAKE, TEST_SECRET,
};

async fn execute_with_authorization(app: &TestApp, authorization: &str) -> Reply {
    app.post_raw(
        GOVERNED,
        serde_json::to_vec(&governance_request("noop")).expect("json"),
        &[
            ("content-type", "application/json".to_owned()),
            ("authorization", authorization.to_owned()),
        ],
    )
    .await
}

#[track_caller]
fn assert_invalid_token(reply: &Reply) -> Value {
    let body = reply.expect(401, "INVALID_TOKEN");
    assert_eq!(body["error"], "Invalid or expired token");
    body
}

#[tokio::test]
async fn missing_authorization_header_is_401_auth_required() {
    let app = TestApp::spawn().await;
    let body = app
        .post_json(GOVERNED, &governance_request("noop"), None)
        .await
        .expect(401, "AUTH_REQUIRED");
    assert_eq!(body["error"], "Authorization header required");
    assert!(
        app.audit_lines().is_empty(),
        "nothing to audit without a caller"
    );
}

#[tokio::test]
async fn garbage_token_is_401_invalid_token() {
    let app = TestApp::spawn().await;
    assert_invalid_token(&execute_with_authorization(&app, "Bearer not.a.jwt").await);
    assert_invalid_token(&execute_with_authorization(&app, "Bearer ").await);
}

#[tokio::test]
async fn token_signed_with_another_secret_is_401_invalid_token() {
    let app = TestApp::spawn().await;
    let other = JwtKeys::new(
        b"another-secret-another-secret-0123456789",
        Algorithm::HS256,
    );
    let token = other.mint(JAKE, "admin", Some(3600)).expect("mint");
    assert_invalid_token(&execute_with_authorization(&app, &format!("Bearer {token}")).await);
}

#[tokio::test]
async fn expired_token_is_401_invalid_token() {
    let app = TestApp::spawn().await;
    let mut claims = claims_for(JAKE);
    claims["iat"] = json!(now() - 7200);
    claims["exp"] = json!(now() - 60);
    let token = signed_token(&claims, TEST_SECRET.as_bytes(), Algorithm::HS256);
    assert_invalid_token(&execute_with_authorization(&app, &format!("Bearer {token}")).await);
}

#[tokio::test]
async fn alg_none_token_is_401_invalid_token() {
    let app = TestApp::spawn().await;
    let token = unsigned_token(&claims_for(JAKE));
    assert!(token.ends_with('.'), "empty signature: {token}");
    assert_invalid_token(&execute_with_authorization(&app, &format!("Bearer {token}")).await);
}

#[tokio::test]
async fn hs512_token_is_401_when_the_server_uses_hs256() {
    let app = TestApp::spawn().await;
    let token = signed_token(&claims_for(JAKE), TEST_SECRET.as_bytes(), Algorithm::HS512);
    assert_invalid_token(&execute_with_authorization(&app, &format!("Bearer {token}")).await);
}

#[tokio::test]
async fn bare_token_without_bearer_prefix_is_accepted() {
    let app = TestApp::spawn().await;
    let body = execute_with_authorization(&app, &app.jake())
        .await
        .expect_ok(200);
    assert_eq!(body["success"], true, "{body}");
}

#[tokio::test]
async fn token_without_exp_is_accepted_as_the_original_did() {
    let app = TestApp::spawn().await;
    let token = signed_token(&claims_for(JAKE), TEST_SECRET.as_bytes(), Algorithm::HS256);
    let body = execute_with_authorization(&app, &format!("Bearer {token}"))
        .await
        .expect_ok(200);
    assert_eq!(body["success"], true, "{body}");
}

#[tokio::test]
async fn a_pyjwt_token_with_fractional_times_is_accepted() {
    let app = TestApp::spawn().await;
    let now = now() as f64 + 0.618;
    let claims = json!({"actor": JAKE, "role": "user", "iat": now, "exp": now + 3600.25});
    let token = signed_token(&claims, TEST_SECRET.as_bytes(), Algorithm::HS256);
    let body = execute_with_authorization(&app, &format!("Bearer {token}"))
        .await
        .expect_ok(200);
    assert_eq!(body["success"], true, "{body}");
    let expired = json!({"actor": JAKE, "exp": now - 5.5});
    let token = signed_token(&expired, TEST_SECRET.as_bytes(), Algorithm::HS256);
    assert_invalid_token(&execute_with_authorization(&app, &format!("Bearer {token}")).await);
}

#[tokio::test]
async fn a_list_of_roles_gives_every_role_and_the_record_keeps_them() {
    let app = TestApp::builder()
        .workflow(
            "deployers-only",
            json!({"roles": ["deployer"], "steps": []}),
        )
        .spawn()
        .await;
    let claims = json!({"actor": JAKE, "role": ["viewer", "deployer"]});
    let token = signed_token(&claims, TEST_SECRET.as_bytes(), Algorithm::HS256);
    let reply = app
        .execute_as(&token, &governance_request("deployers-only"), &[])
        .await;
    let body = reply.expect_ok(200);
    let trace = body["trace_id"].as_str().unwrap();
    let principal = &app.audit_for(trace)[0]["principal"];
    assert_eq!(principal["role"], "viewer");
    assert_eq!(principal["roles"], json!(["deployer"]));
    assert!(app.verify_audit().problem.is_none());
}

#[tokio::test]
async fn an_actor_that_is_not_a_string_is_refused_with_its_reason() {
    let app = TestApp::spawn().await;
    let claims = json!({"actor": {"email": JAKE}, "role": "user"});
    let token = signed_token(&claims, TEST_SECRET.as_bytes(), Algorithm::HS256);
    let body = execute_with_authorization(&app, &format!("Bearer {token}"))
        .await
        .expect(401, "INVALID_TOKEN");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("'actor' must be a string"),
        "{body}"
    );
}
