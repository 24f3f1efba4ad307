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

/// The original's observability demo: a token whose actor is a display name.
fn display_name_token(actor: &str) -> String {
    let claims = json!({"actor": actor, "role": "admin"});
    signed_token(&claims, TEST_SECRET.as_bytes(), Algorithm::HS256)
}

#[tokio::test]
async fn a_display_name_identity_binds_to_the_actor_name_never_the_email() {
    let app = TestApp::spawn().await;
    let mut request = governance_request("noop");
    request["aim"]["actor"] =
        json!({"name": "Demo  user", "email": "demo@example.com", "role": "Observer"});
    let body = app
        .execute_as(&display_name_token("Demo User"), &request, &[])
        .await
        .expect_ok(200);
    let records = app.audit_for(body["trace_id"].as_str().unwrap());
    assert_eq!(records[0]["aim"]["actor"]["email"], "demo@example.com");
    assert_eq!(records[0]["principal"]["actor"], "Demo User");

    // Without an AIM email the name is not copied into the email field.
    request["aim"]["actor"] = json!({"name": "Demo User", "role": "Observer"});
    let body = app
        .execute_as(&display_name_token("demo user"), &request, &[])
        .await
        .expect_ok(200);
    let records = app.audit_for(body["trace_id"].as_str().unwrap());
    assert!(
        records[0]["aim"]["actor"]
            .get("email")
            .is_none_or(Value::is_null),
        "{}",
        records[0]
    );

    // Another person's name is refused, saying which field.
    request["aim"]["actor"]["name"] = json!("Someone Else");
    let refused = app
        .execute_as(&display_name_token("Demo User"), &request, &[])
        .await
        .expect(403, "ACTOR_MISMATCH");
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("AIM actor name 'Someone Else'"),
        "{refused}"
    );
}

#[tokio::test]
async fn an_empty_email_is_absent_a_bad_one_refused_and_a_blank_role_accepted_as_the_original() {
    let app = TestApp::spawn().await;
    let mut request = governance_request("noop");
    request["aim"]["actor"]["email"] = json!("");
    let body = app.execute(&request, &[]).await.expect_ok(200);
    let records = app.audit_for(body["trace_id"].as_str().unwrap());
    assert_eq!(
        records[0]["aim"]["actor"]["email"], JAKE,
        "bound from the token"
    );

    request["aim"]["actor"]["email"] = json!("jake@");
    app.execute(&request, &[])
        .await
        .expect(400, "GOVERNANCE_ERROR");

    let mut blank_role = governance_request("noop");
    blank_role["aim"]["actor"]["role"] = json!("   ");
    app.execute(&blank_role, &[]).await.expect_ok(200);
    blank_role["aim"]["actor"]["role"] = json!("");
    app.execute(&blank_role, &[])
        .await
        .expect(400, "GOVERNANCE_ERROR");
}
