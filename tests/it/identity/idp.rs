//! A stand-in identity provider on loopback: OpenID Connect discovery and a JWK set it can rotate,
//! counting the fetches; it can be stopped. And its signing keys (test fixtures, never real ones)
//! with the tokens they sign.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use crate::helpers::now;

/// The audience the test servers are configured with.
pub const AUDIENCE: &str = "sustainbot-tests";

/// `tests/fixtures/idp/<name>`.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/idp")
        .join(name)
}

fn read(name: &str) -> String {
    std::fs::read_to_string(fixture(name)).expect("fixture")
}

/// One of the provider's signing keys.
#[derive(Clone)]
pub struct IdpKey {
    pub kid: String,
    pub algorithm: Algorithm,
    encoding: EncodingKey,
    /// `tests/fixtures/idp/<stem>.pub.pem`, as written.
    pub public_pem: String,
    /// The public JWK as published (with `kid`).
    pub public_jwk: Value,
}

impl IdpKey {
    /// `stem` of the fixtures (`rsa-a`, `rsa-b`, `ec-p256`, `ed25519`), published as `kid`.
    pub fn load(stem: &str, kid: &str) -> IdpKey {
        let (_, der) = spki::der::pem::decode_vec(read(&format!("{stem}.key.pem")).as_bytes())
            .expect("a PEM private key");
        let (algorithm, encoding) = match stem {
            s if s.starts_with("rsa") => (Algorithm::RS256, EncodingKey::from_rsa_der(&der)),
            s if s.starts_with("ec") => (Algorithm::ES256, EncodingKey::from_ec_der(&der)),
            _ => (Algorithm::EdDSA, EncodingKey::from_ed_der(&der)),
        };
        let mut public_jwk: Value =
            serde_json::from_str(&read(&format!("{stem}.jwk.json"))).expect("a JWK");
        public_jwk["kid"] = json!(kid);
        IdpKey {
            kid: kid.to_owned(),
            algorithm,
            encoding,
            public_pem: read(&format!("{stem}.pub.pem")),
            public_jwk,
        }
    }

    /// A token of `claims` signed with this key, its header naming the key's `kid`.
    pub fn sign(&self, claims: &Value) -> String {
        self.sign_as(self.algorithm, Some(&self.kid), claims)
    }

    /// A token signed with this key under another algorithm (RSA: RS384, PS256...) or `kid`.
    pub fn sign_as(&self, algorithm: Algorithm, kid: Option<&str>, claims: &Value) -> String {
        let mut header = Header::new(algorithm);
        header.kid = kid.map(str::to_owned);
        encode(&header, claims, &self.encoding).expect("sign a token")
    }
}

#[derive(Default)]
struct Published {
    issuer: String,
    keys: Vec<Value>,
    discovery_requests: usize,
    jwks_requests: usize,
    /// Stopped: any connection still open is answered 503.
    down: bool,
}

/// The stand-in. `issuer` is `http://127.0.0.1:<port>`.
pub struct FakeIdp {
    pub issuer: String,
    published: Arc<Mutex<Published>>,
    server: tokio::task::JoinHandle<()>,
}

async fn discovery(State(published): State<Arc<Mutex<Published>>>) -> Response {
    let mut published = published.lock().unwrap();
    published.discovery_requests += 1;
    if published.down {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let issuer = published.issuer.clone();
    Json(json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/protocol/openid-connect/certs"),
        "id_token_signing_alg_values_supported": ["RS256", "ES256", "EdDSA"],
    }))
    .into_response()
}

async fn jwks(State(published): State<Arc<Mutex<Published>>>) -> Response {
    let mut published = published.lock().unwrap();
    published.jwks_requests += 1;
    if published.down {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    (
        [("cache-control", "public, max-age=3600")],
        Json(json!({"keys": published.keys})),
    )
        .into_response()
}

impl FakeIdp {
    /// A provider publishing `keys`.
    pub async fn start(keys: &[&IdpKey]) -> FakeIdp {
        let published = Arc::new(Mutex::new(Published::default()));
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/protocol/openid-connect/certs", get(jwks))
            .with_state(Arc::clone(&published));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let issuer = format!("http://{}", listener.local_addr().expect("address"));
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        published.lock().unwrap().issuer = issuer.clone();
        let idp = FakeIdp {
            issuer,
            published,
            server,
        };
        idp.publish(keys);
        idp
    }

    /// From now on the JWK set holds `keys` (and only them).
    pub fn publish(&self, keys: &[&IdpKey]) {
        self.published.lock().unwrap().keys = keys.iter().map(|k| k.public_jwk.clone()).collect();
    }

    /// Publishes a raw JWK set entry (a symmetric key, say).
    pub fn publish_raw(&self, keys: Vec<Value>) {
        self.published.lock().unwrap().keys = keys;
    }

    /// How many times the JWK set was fetched.
    pub fn jwks_requests(&self) -> usize {
        self.published.lock().unwrap().jwks_requests
    }

    pub fn discovery_requests(&self) -> usize {
        self.published.lock().unwrap().discovery_requests
    }

    /// Stops listening; a connection the server kept alive is answered 503.
    pub fn stop(&self) {
        self.published.lock().unwrap().down = true;
        self.server.abort();
    }

    /// Claims of a person as a Keycloak realm issues them to this server.
    pub fn person(&self, email: &str, roles: &[&str]) -> Value {
        let now = now();
        json!({
            "iss": self.issuer,
            "aud": AUDIENCE,
            "sub": format!("sub-{email}"),
            "iat": now,
            "exp": now + 600,
            "email": email,
            "email_verified": true,
            "name": "Jake Smith",
            "preferred_username": email.split('@').next().unwrap_or(email),
            "realm_access": {"roles": roles},
            "groups": roles,
        })
    }
}

impl Drop for FakeIdp {
    fn drop(&mut self) {
        self.server.abort();
    }
}
