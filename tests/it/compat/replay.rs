//! The recording (`tests/compat/recorded.json`) and the cases it answers, and sending one recorded
//! request to our server the way the recorder sent it to the original (tokens minted afresh, with
//! the same claims and the same kind of time claims).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::Algorithm;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::answer::Answer;
use crate::helpers::{signed_token, unsigned_token, Reply, TestClient};

/// `tests/compat/<name>` (or any path under the crate) as an absolute path.
pub fn path(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// `tests/compat/cases.json`: the shared rules, the profiles and the cases as written.
#[derive(Debug, Deserialize)]
pub struct Cases {
    pub jwt_secret: String,
    pub wrong_secret: String,
    pub mask_keys: Vec<String>,
    pub profiles: BTreeMap<String, Profile>,
    /// As written: a recording is current when it holds each of these verbatim.
    pub cases: Vec<Value>,
}

/// The server set-up a group of cases runs against.
#[derive(Debug, Deserialize)]
pub struct Profile {
    pub governance_enabled: bool,
    /// `up`: OpenClaw is the stand-in; `down`: nothing listens at `OPENCLAW_URL`.
    pub openclaw: String,
}

/// `tests/compat/recorded.json`.
#[derive(Debug, Deserialize)]
pub struct Recording {
    pub recorded_at: String,
    pub original: Value,
    pub versions: Value,
    pub standin_labels: StandinLabels,
    pub cases: Vec<Recorded>,
}

/// How the recording names the stand-ins' addresses.
#[derive(Debug, Deserialize)]
pub struct StandinLabels {
    pub standin: String,
    pub nothing_listening: String,
    pub down_port: u16,
}

/// One case as recorded: the case as it was written, the request as sent, the original's answer
/// and the bodies it posted to OpenClaw.
#[derive(Debug, Deserialize)]
pub struct Recorded {
    pub name: String,
    pub profile: String,
    pub case: Value,
    pub request: Sent,
    pub response: Answer,
    pub openclaw: Vec<Value>,
}

#[derive(Debug, Deserialize)]
pub struct Sent {
    pub method: String,
    pub path: String,
    pub headers: BTreeMap<String, String>,
    pub token: Option<TokenSpec>,
    pub body: Option<String>,
}

/// A token to mint at send time: time claims are relative to now.
#[derive(Debug, Deserialize)]
pub struct TokenSpec {
    pub claims: Map<String, Value>,
    #[serde(default)]
    pub iat: Option<TimeSpec>,
    #[serde(default)]
    pub nbf: Option<TimeSpec>,
    #[serde(default)]
    pub exp: Option<TimeSpec>,
    pub alg: String,
    /// `Bearer`, `bearer`, or empty for the bare token.
    pub scheme: String,
    /// `server` (the servers' secret) or `wrong`.
    pub secret: String,
}

#[derive(Debug, Deserialize)]
pub struct TimeSpec {
    #[serde(rename = "in")]
    pub offset: i64,
    /// `time.time() + offset` (a fraction), else whole seconds as PyJWT writes a datetime.
    #[serde(default)]
    pub float: bool,
}

impl TimeSpec {
    fn numeric_date(&self, now: f64) -> Value {
        if self.float {
            let value = now + self.offset as f64;
            Value::from(if value.fract() == 0.0 {
                value + 0.25
            } else {
                value
            })
        } else {
            Value::from(now as i64 + self.offset)
        }
    }
}

impl TokenSpec {
    /// The `Authorization` header value.
    fn authorization(&self, cases: &Cases) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs_f64();
        let mut claims = self.claims.clone();
        for (name, spec) in [("iat", &self.iat), ("nbf", &self.nbf), ("exp", &self.exp)] {
            if let Some(spec) = spec {
                claims.insert(name.to_owned(), spec.numeric_date(now));
            }
        }
        let claims = Value::Object(claims);
        let token = if self.alg == "none" {
            unsigned_token(&claims)
        } else {
            let secret = match self.secret.as_str() {
                "server" => &cases.jwt_secret,
                "wrong" => &cases.wrong_secret,
                other => panic!("unknown token secret {other:?}"),
            };
            let algorithm = Algorithm::from_str(&self.alg).expect("a known algorithm");
            signed_token(&claims, secret.as_bytes(), algorithm)
        };
        if self.scheme.is_empty() {
            token
        } else {
            format!("{} {token}", self.scheme)
        }
    }
}

impl Sent {
    /// Sends the request to `server`.
    pub async fn send(&self, server: &TestClient, cases: &Cases) -> Reply {
        let method = reqwest::Method::from_str(&self.method).expect("an HTTP method");
        let mut request = server.client.request(method, server.url(&self.path));
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        if let Some(token) = &self.token {
            request = request.header("authorization", token.authorization(cases));
        }
        if let Some(body) = &self.body {
            request = request.body(body.clone());
        }
        let response = request.send().await.expect("request sent");
        let path = response.url().path().to_owned();
        let reply = Reply::read(response).await;
        // The original's requests, odd ones included, get answers our description documents.
        if server.checked {
            reply.check(&self.method, &path);
        }
        reply
    }
}

#[test]
fn time_claims_are_whole_or_fractional_seconds_from_now() {
    let whole = TimeSpec {
        offset: 60,
        float: false,
    };
    assert_eq!(whole.numeric_date(1000.7), Value::from(1060));
    let float = TimeSpec {
        offset: 60,
        float: true,
    };
    assert_eq!(float.numeric_date(1000.5), Value::from(1060.5));
    assert_eq!(float.numeric_date(1000.0), Value::from(1060.25));
}
