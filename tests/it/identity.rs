//! Tokens from an identity provider: a stand-in provider on loopback (discovery and a JWK set that
//! rotates and goes down), RS256, ES256 and EdDSA tokens, what is refused and with which code, and
//! the person and roles a token signs in (bound to the governed run by email).

mod idp;

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use sustainbot::auth::GroupMapping;

use crate::helpers::{
    base64url, governance_request, sustainbot, trace, Finished, Reply, Settings, TestApp,
    TestAppBuilder, ANA, JAKE,
};
use idp::{fixture, FakeIdp, IdpKey, AUDIENCE};

/// A server that trusts `idp` (discovery from its issuer) for this audience, with Keycloak's
/// realm roles, and refreshes on an unknown `kid` without waiting.
fn trusting(idp: &FakeIdp) -> TestAppBuilder {
    TestApp::builder()
        .env("JWT_ISSUER", &idp.issuer)
        .env("JWT_AUDIENCE", AUDIENCE)
        .env("JWT_ROLES_CLAIM", "realm_access.roles")
        .env("JWT_JWKS_MIN_REFRESH_SECONDS", "0")
}

async fn run_noop(app: &TestApp, token: &str) -> Reply {
    app.execute_as(token, &governance_request("noop"), &[])
        .await
}

#[track_caller]
fn refused(reply: &Reply, code: &str, says: &str) {
    let body = reply.expect(401, code);
    let message = body["error"].as_str().unwrap_or_default();
    assert!(message.contains(says), "{message:?} should say {says:?}");
}

#[tokio::test]
async fn an_rs256_token_signs_a_person_in_with_email_name_and_roles() {
    let key = IdpKey::load("rsa-a", "kid-a");
    let idp = FakeIdp::start(&[&key]).await;
    let app = trusting(&idp)
        .workflow(
            "deployers-only",
            json!({"roles": ["deployer"], "steps": []}),
        )
        .spawn()
        .await;
    let token = key.sign(&idp.person(JAKE, &["deployer", "offline_access"]));
    let body = app
        .execute_as(
            &token,
            &governance_request("deployers-only"),
            &trace("idp-1"),
        )
        .await
        .expect_ok(200);
    assert_eq!(body["success"], true, "{body}");
    let principal = &app.audit_for("idp-1")[0]["principal"];
    assert_eq!(
        *principal,
        json!({"actor": JAKE, "name": "Jake Smith", "role": "deployer",
               "roles": ["offline_access"], "user_id": format!("sub-{JAKE}")})
    );
    assert!(app.verify_audit().is_valid());
    assert_eq!(idp.discovery_requests(), 1, "discovery once, at start-up");

    // The shared secret's tokens keep working beside the provider's, their records unchanged.
    let body = run_noop(&app, &app.jake()).await.expect_ok(200);
    let records = app.audit_for(body["trace_id"].as_str().unwrap());
    assert!(
        records[0]["principal"].get("name").is_none(),
        "{}",
        records[0]
    );

    let health = app.get("/health", None).await.expect_ok(200);
    let provider = &health["components"]["identity_provider"];
    assert_eq!(provider["source"], "issuer");
    assert_eq!(provider["keys"], 1);
    assert_eq!(provider["healthy"], true);
    assert!(provider["last_refresh"].is_string(), "{provider}");
}

#[tokio::test]
async fn es256_and_eddsa_tokens_verify_with_keys_of_their_own_type_only() {
    let (rsa, ec, ed) = (
        IdpKey::load("rsa-a", "kid-rsa"),
        IdpKey::load("ec-p256", "kid-ec"),
        IdpKey::load("ed25519", "kid-ed"),
    );
    let idp = FakeIdp::start(&[&rsa, &ec, &ed]).await;
    let app = trusting(&idp).spawn().await;
    for key in [&ec, &ed] {
        let body = run_noop(&app, &key.sign(&idp.person(JAKE, &[])))
            .await
            .expect_ok(200);
        assert_eq!(body["success"], true, "{:?}: {body}", key.algorithm);
    }
    // An RSA signature presented under the EC key's kid: that key serves ES256 alone.
    let swapped = rsa.sign_as(Algorithm::RS256, Some("kid-ec"), &idp.person(JAKE, &[]));
    refused(
        &run_noop(&app, &swapped).await,
        "INVALID_TOKEN",
        "Invalid or expired token",
    );
    // The RSA key serves the PSS family too.
    let pss = rsa.sign_as(Algorithm::PS256, Some("kid-rsa"), &idp.person(JAKE, &[]));
    run_noop(&app, &pss).await.expect_ok(200);
}

#[tokio::test]
async fn a_wrong_issuer_or_audience_an_expired_token_and_one_without_exp_are_refused() {
    let key = IdpKey::load("rsa-a", "kid-a");
    let idp = FakeIdp::start(&[&key]).await;
    let app = trusting(&idp).spawn().await;
    let cases: [(&str, Value, &str); 5] = [
        ("iss", json!("https://evil.example.org"), "issuer"),
        ("aud", json!("another-app"), "audience"),
        ("exp", json!(crate::helpers::now() - 3600), "expired"),
        ("exp", Value::Null, "'exp'"),
        ("aud", Value::Null, "'aud'"),
    ];
    for (claim, value, says) in cases {
        let mut claims = idp.person(JAKE, &[]);
        if value.is_null() {
            claims.as_object_mut().unwrap().remove(claim);
        } else {
            claims[claim] = value;
        }
        refused(
            &run_noop(&app, &key.sign(&claims)).await,
            "INVALID_TOKEN",
            says,
        );
    }
    assert!(app.audit_lines().is_empty(), "nobody was signed in");
}

#[tokio::test]
async fn a_token_naming_no_verified_person_is_refused() {
    let key = IdpKey::load("rsa-a", "kid-a");
    let idp = FakeIdp::start(&[&key]).await;
    let app = trusting(&idp).spawn().await;
    let mut machine = idp.person(JAKE, &[]);
    machine.as_object_mut().unwrap().remove("email");
    refused(
        &run_noop(&app, &key.sign(&machine)).await,
        "INVALID_TOKEN",
        "names no person",
    );
    let mut unverified = idp.person(JAKE, &[]);
    unverified["email_verified"] = json!(false);
    refused(
        &run_noop(&app, &key.sign(&unverified)).await,
        "INVALID_TOKEN",
        "email_verified",
    );
}

#[tokio::test]
async fn hs256_signed_with_the_providers_public_key_is_refused() {
    let key = IdpKey::load("rsa-a", "kid-a");
    let idp = FakeIdp::start(&[&key]).await;
    let hmac_secret = b"a-symmetric-key-in-the-jwk-set-0123456789";
    let mut published = vec![key.public_jwk.clone()];
    published.push(json!({"kty": "oct", "kid": "kid-hmac", "k": base64url(hmac_secret)}));
    idp.publish_raw(published);
    let app = trusting(&idp).spawn().await;
    let claims = idp.person(JAKE, &["admin"]);
    let jwk_text = key.public_jwk.to_string();
    for (secret, kid) in [
        (key.public_pem.as_bytes(), "kid-a"),
        (jwk_text.as_bytes(), "kid-a"),
        (hmac_secret.as_slice(), "kid-hmac"),
    ] {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(kid.to_owned());
        let forged = encode(&header, &claims, &EncodingKey::from_secret(secret)).unwrap();
        refused(
            &run_noop(&app, &forged).await,
            "INVALID_TOKEN",
            "Invalid or expired token",
        );
    }
    // The real key still works: the refusals were about the forgeries.
    run_noop(&app, &key.sign(&claims)).await.expect_ok(200);
}

#[tokio::test]
async fn alg_none_is_refused_with_or_without_a_kid() {
    let key = IdpKey::load("rsa-a", "kid-a");
    let idp = FakeIdp::start(&[&key]).await;
    let app = trusting(&idp).spawn().await;
    let payload = base64url(idp.person(JAKE, &[]).to_string().as_bytes());
    for header in [
        json!({"alg": "none", "typ": "JWT"}),
        json!({"alg": "none", "kid": "kid-a"}),
    ] {
        let token = format!("{}.{payload}.", base64url(header.to_string().as_bytes()));
        refused(
            &run_noop(&app, &token).await,
            "INVALID_TOKEN",
            "Invalid or expired token",
        );
    }
}

#[tokio::test]
async fn an_unknown_kid_refreshes_the_keys_and_a_rotated_out_key_is_refused() {
    let (old, new) = (
        IdpKey::load("rsa-a", "kid-2024"),
        IdpKey::load("rsa-b", "kid-2025"),
    );
    let idp = FakeIdp::start(&[&old]).await;
    let app = trusting(&idp).spawn().await;
    run_noop(&app, &old.sign(&idp.person(JAKE, &[])))
        .await
        .expect_ok(200);
    assert_eq!(idp.jwks_requests(), 1);

    // Rotation: the new key appears and the old one is withdrawn.
    idp.publish(&[&new]);
    run_noop(&app, &new.sign(&idp.person(JAKE, &[])))
        .await
        .expect_ok(200);
    assert_eq!(
        idp.jwks_requests(),
        2,
        "the unknown kid fetched the keys once"
    );
    let reply = run_noop(&app, &old.sign(&idp.person(JAKE, &[]))).await;
    refused(&reply, "UNKNOWN_SIGNING_KEY", "does not publish");
    assert_eq!(idp.jwks_requests(), 3);
}

#[tokio::test]
async fn unknown_kids_refresh_the_keys_at_most_once_per_interval() {
    let (known, unknown) = (
        IdpKey::load("rsa-a", "kid-a"),
        IdpKey::load("rsa-b", "kid-b"),
    );
    let idp = FakeIdp::start(&[&known]).await;
    let app = trusting(&idp)
        .env("JWT_JWKS_MIN_REFRESH_SECONDS", "3600")
        .spawn()
        .await;
    idp.publish(&[&known, &unknown]);
    for kid in ["kid-b", "kid-random-1", "kid-random-2"] {
        let token = unknown.sign_as(Algorithm::RS256, Some(kid), &idp.person(JAKE, &[]));
        refused(&run_noop(&app, &token).await, "UNKNOWN_SIGNING_KEY", "key");
    }
    assert_eq!(idp.jwks_requests(), 1, "only the start-up fetch");
    run_noop(&app, &known.sign(&idp.person(JAKE, &[])))
        .await
        .expect_ok(200);
}

#[tokio::test]
async fn with_the_provider_down_cached_keys_serve_and_an_unknown_kid_is_401() {
    let (cached, unseen) = (
        IdpKey::load("ec-p256", "kid-ec"),
        IdpKey::load("rsa-b", "kid-b"),
    );
    let idp = FakeIdp::start(&[&cached]).await;
    let app = trusting(&idp).spawn().await;
    idp.stop();

    run_noop(&app, &cached.sign(&idp.person(JAKE, &[])))
        .await
        .expect_ok(200);
    let reply = run_noop(&app, &unseen.sign(&idp.person(JAKE, &[]))).await;
    refused(&reply, "UNKNOWN_SIGNING_KEY", "cannot be fetched");
    let health = app.get("/health", None).await.expect_ok(200);
    let provider = &health["components"]["identity_provider"];
    assert_eq!(provider["healthy"], false, "{provider}");
    assert_eq!(provider["keys"], 1, "the cached key stays");
    assert!(provider["last_error"].is_string(), "{provider}");
    // Still served after the failed refresh.
    run_noop(&app, &cached.sign(&idp.person(JAKE, &[])))
        .await
        .expect_ok(200);
}

#[tokio::test]
async fn groups_become_roles_through_the_mapping_and_unmapped_groups_give_none() {
    let key = IdpKey::load("rsa-a", "kid-a");
    let idp = FakeIdp::start(&[&key]).await;
    let app = trusting(&idp)
        .env("JWT_ROLES_CLAIM", "groups")
        .env("JWT_GROUP_ROLES", "sre=deployer, platform-admins=admin")
        .workflow(
            "deployers-only",
            json!({"roles": ["deployer"], "steps": []}),
        )
        .spawn()
        .await;
    let request = governance_request("deployers-only");
    let sre = key.sign(&idp.person(JAKE, &["sre"]));
    let body = app.execute_as(&sre, &request, &[]).await.expect_ok(200);
    let records = app.audit_for(body["trace_id"].as_str().unwrap());
    assert_eq!(records[0]["principal"]["role"], "deployer");
    // A group named like a role is no role unless the mapping says so.
    let literal = key.sign(&idp.person(JAKE, &["deployer"]));
    app.execute_as(&literal, &request, &[])
        .await
        .expect(403, "FORBIDDEN_ROLE");

    // A roles policy file hands the provider its own mapping.
    let provider = app.state.identity_provider.as_ref().expect("a provider");
    provider.set_group_roles(GroupMapping::parse("release-managers=deployer").unwrap());
    let manager = key.sign(&idp.person(JAKE, &["release-managers"]));
    app.execute_as(&manager, &request, &[]).await.expect_ok(200);
    app.execute_as(&sre, &request, &[])
        .await
        .expect(403, "FORBIDDEN_ROLE");
}

/// A policy that lets `devops` run `noop` and `admin` reload, mapping the provider's `sre` group to
/// `roles`.
fn policy_mapping_sre_to(roles: &str) -> String {
    format!(
        "rules:\n  - roles: [devops]\n    allow: [run]\n    workflows: [noop]\n  \
         - roles: [admin]\n    allow: [reload]\ngroups:\n  sre: [{roles}]\n"
    )
}

#[tokio::test]
async fn the_policy_files_groups_give_roles_and_follow_its_reloads() {
    let key = IdpKey::load("rsa-a", "kid-a");
    let idp = FakeIdp::start(&[&key]).await;
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, policy_mapping_sre_to("devops")).unwrap();
    let app = trusting(&idp)
        .env("JWT_ROLES_CLAIM", "groups")
        // The file's entry for `sre` replaces this one; `platform` keeps its role.
        .env("JWT_GROUP_ROLES", "sre=auditor,platform=devops")
        .policy(&policy)
        .spawn()
        .await;
    let sre = key.sign(&idp.person(JAKE, &["sre"]));
    let body = app
        .execute_as(&sre, &governance_request("noop"), &trace("sre-1"))
        .await
        .expect_ok(200);
    assert_eq!(body["success"], true, "{body}");
    let started = &app.audit_for("sre-1")[0];
    assert_eq!(started["principal"]["role"], "devops", "{started}");
    assert_eq!(started["policy_rule"], 1, "{started}");
    let platform = key.sign(&idp.person(JAKE, &["platform"]));
    run_noop(&app, &platform).await.expect_ok(200);

    // The file now maps `sre` elsewhere: after a reload the same token has that role instead.
    std::fs::write(&policy, policy_mapping_sre_to("viewer")).unwrap();
    app.post_empty("/workflows/reload", &app.jake())
        .await
        .expect_ok(200);
    let body = app
        .execute_as(&sre, &governance_request("noop"), &trace("sre-2"))
        .await
        .expect(403, "FORBIDDEN_ROLE");
    assert!(
        body["error"].as_str().unwrap().contains("role 'viewer'"),
        "{body}"
    );

    // The file watcher's reload hands the provider the mapping too.
    std::fs::write(&policy, policy_mapping_sre_to("devops, oncall")).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while run_noop(&app, &sre).await.status != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "the edited mapping was never picked up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_governed_run_is_bound_to_the_tokens_email_and_four_eyes_compare_emails() {
    let key = IdpKey::load("rsa-a", "kid-a");
    let idp = FakeIdp::start(&[&key]).await;
    let app = trusting(&idp)
        .workflow(
            "guarded",
            json!({"approval": {"required": true, "approver_roles": ["admin"]},
                   "steps": [{"id": "say", "command": ["echo", "ok"]}]}),
        )
        .spawn()
        .await;
    let jake = key.sign(&idp.person(JAKE, &["admin"]));
    let mut as_ana = governance_request("noop");
    as_ana["aim"]["actor"]["email"] = json!(ANA);
    app.execute_as(&jake, &as_ana, &[])
        .await
        .expect_refused(&app, 403, "ACTOR_MISMATCH");

    let accepted = app
        .execute_as(&jake, &governance_request("guarded"), &trace("idp-4eyes"))
        .await
        .expect_ok(202);
    assert_eq!(accepted["status"], "pending_approval");
    let approve = |token: String| {
        let app = &app;
        async move {
            app.post_json("/runs/idp-4eyes/approve", &json!({}), Some(&token))
                .await
        }
    };
    // The requester, by provider token or by a shared-secret token naming the same email.
    approve(jake.clone()).await.expect(403, "APPROVAL_REFUSED");
    approve(app.token(&JAKE.to_uppercase(), "admin"))
        .await
        .expect(403, "APPROVAL_REFUSED");
    let ana = key.sign(&idp.person(ANA, &["admin"]));
    approve(ana).await.expect_ok(202);
}

#[tokio::test]
async fn a_public_key_file_verifies_tokens_without_fetching_anything() {
    let (key, other) = (
        IdpKey::load("rsa-a", "unused"),
        IdpKey::load("rsa-b", "unused"),
    );
    let app = TestApp::builder()
        .env(
            "JWT_PUBLIC_KEY_FILE",
            fixture("rsa-a.pub.pem").to_str().unwrap(),
        )
        .env("JWT_AUDIENCE", AUDIENCE)
        .env("JWT_PROVIDER_ALGORITHMS", "RS256")
        .spawn()
        .await;
    let mut claims = json!({"aud": AUDIENCE, "email": JAKE, "exp": crate::helpers::now() + 60});
    run_noop(&app, &key.sign_as(Algorithm::RS256, None, &claims))
        .await
        .expect_ok(200);
    run_noop(&app, &key.sign_as(Algorithm::RS256, Some("any"), &claims))
        .await
        .expect_ok(200);
    let reply = run_noop(&app, &other.sign_as(Algorithm::RS256, None, &claims)).await;
    refused(&reply, "INVALID_TOKEN", "Invalid or expired token");
    // PS256 is not among JWT_PROVIDER_ALGORITHMS.
    let reply = run_noop(&app, &key.sign_as(Algorithm::PS256, None, &claims)).await;
    refused(&reply, "INVALID_TOKEN", "Invalid or expired token");
    claims["iss"] = json!("anyone");
    run_noop(&app, &key.sign_as(Algorithm::RS256, None, &claims))
        .await
        .expect_ok(200);
    let health = app.get("/health", None).await.expect_ok(200);
    let provider = &health["components"]["identity_provider"];
    assert_eq!(provider["source"], "public_key_file");
    assert_eq!(provider["healthy"], true);
}

#[test]
fn the_binary_refuses_a_private_key_file_and_will_not_mint_without_jwt_secret() {
    let private = fixture("rsa-a.key.pem");
    sustainbot()
        .env("JWT_PUBLIC_KEY_FILE", private.to_str().unwrap())
        .run(&["--port", "0"])
        .expect_exit(2)
        .expect_stderr("openssl pkey -in key.pem -pubout");
    sustainbot()
        .env("JWT_ISSUER", "https://idp.example.org/realms/acme")
        .run(&["token", "--actor", JAKE])
        .expect_exit(2)
        .expect_stderr("JWT_SECRET is not set");
}
