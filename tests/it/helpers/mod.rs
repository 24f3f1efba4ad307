//! The test harness: a real server on an ephemeral port, in its own temporary directory (in-process
//! in [`app`], the binary in [`process`]), driven over HTTP with reqwest ([`client`]), configured
//! with typed [`Settings`]; loopback servers for steps to call ([`loopback`]); and the requests and
//! tokens the contract speaks of (here).

use std::path::Path;

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

mod app;
mod client;
mod fake_slack;
mod loopback;
pub mod openapi;
mod otlp;
/// A throwaway database per test: the library's own helper, shared by path.
#[path = "../../../src/db/testing.rs"]
mod postgres;
mod private_pg;
mod process;
pub mod prometheus;
pub mod promql;
mod raw;
mod settings;

pub use app::{step, TestApp, TestAppBuilder};
pub use client::{trace, Reply, TestClient, GOVERNED};
pub use fake_slack::{action_form, command_form, message_text, signed_headers, FakeSlack, FORM};
pub use loopback::{http_workflow, serve, EchoServer, FakeOpenClaw};
pub use otlp::{Collector, ReceivedSpan};
pub use postgres::TestDb;
pub use private_pg::PrivatePostgres;
pub use process::{sigterm, sustainbot, Finished, ServerProcess, Site, BIN};
pub use raw::{socket_address, RawConnection};
pub use settings::Settings;

/// The JWT secret every test server uses (32+ bytes, not a published placeholder).
pub const TEST_SECRET: &str = "integration-test-secret-0123456789abcdef";

/// The identity the default governance request declares.
pub const JAKE: &str = "jake@example.org";

/// A second human: an approver, a reader of the trail.
pub const ANA: &str = "ana@example.org";

/// The contract's example governance request, for `workflow_name`.
pub fn governance_request(workflow_name: &str) -> Value {
    json!({
        "workflow_name": workflow_name,
        "aim": {
            "actor": {"name": "Jake Smith", "email": JAKE, "role": "DevOps Engineer"},
            "input": {
                "sources": [{"type": "slack_webhook", "description": "Slash command", "location": null}],
                "constraints": ["Read-only", "No destructive ops"]
            },
            "mission": {
                "objective": "Deploy app to staging with zero downtime",
                "success_criteria": ["Health checks pass", "Rollback ready"]
            }
        },
        "drag_mode": "execute",
        "parameters": {"environment": "staging", "version": "v1.2.3"}
    })
}

/// The contract's example request for `workflow`, in DRAG mode `mode`, with `parameters`.
pub fn run_request(workflow: &str, mode: &str, parameters: Value) -> Value {
    let mut body = governance_request(workflow);
    body["drag_mode"] = json!(mode);
    body["parameters"] = parameters;
    body
}

/// The demo's invalid request: a 2-character actor name and a 9-character objective.
pub fn demo_invalid_request() -> Value {
    let mut request = governance_request("deploy-to-staging");
    request["aim"]["actor"]["name"] = json!("AB");
    request["aim"]["mission"]["objective"] = json!("Too short");
    request
}

/// A request whose only problem is the business rule on the actor name.
pub fn short_name_request(workflow_name: &str) -> Value {
    let mut request = governance_request(workflow_name);
    request["aim"]["actor"]["name"] = json!("AB");
    request
}

/// Every line of a JSON-lines file (an audit log, a JSON log) as JSON; none when the file does
/// not exist.
pub fn json_lines(path: &Path) -> Vec<Value> {
    match std::fs::read_to_string(path) {
        Ok(text) => text
            .lines()
            .map(|line| serde_json::from_str(line).expect("every line is JSON"))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("cannot read {}: {e}", path.display()),
    }
}

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// A token with arbitrary claims, signed with `secret` and `algorithm`.
pub fn signed_token(claims: &Value, secret: &[u8], algorithm: Algorithm) -> String {
    encode(
        &Header::new(algorithm),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .expect("encode token")
}

/// An unsigned token: header `{"alg":"none","typ":"JWT"}`, the claims, and an empty signature.
pub fn unsigned_token(claims: &Value) -> String {
    let header = base64url(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = base64url(&serde_json::to_vec(claims).expect("claims json"));
    format!("{header}.{payload}.")
}

/// Base64url without padding (RFC 7515).
pub fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | (u32::from(b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

/// Claims like the server's own tokens, for `actor`.
pub fn claims_for(actor: &str) -> Value {
    json!({"user_id": actor, "actor": actor, "role": "admin", "iat": now()})
}

#[test]
fn base64url_matches_rfc_4648_vectors() {
    assert_eq!(base64url(b""), "");
    assert_eq!(base64url(b"f"), "Zg");
    assert_eq!(base64url(b"fo"), "Zm8");
    assert_eq!(base64url(b"foo"), "Zm9v");
    assert_eq!(base64url(b"foob"), "Zm9vYg");
    assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
}
