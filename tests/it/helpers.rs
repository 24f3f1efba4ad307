//! The test harness: a real server on an ephemeral port, in its own temporary directory, driven over
//! HTTP with reqwest.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sustainbot::audit::verify::{verify_path, Report};
use sustainbot::auth::JwtKeys;
use sustainbot::config::{Config, Overrides};
use sustainbot::Application;
use tempfile::TempDir;

/// The JWT secret every test server uses (32+ bytes, not a published placeholder).
pub const TEST_SECRET: &str = "integration-test-secret-0123456789abcdef";

/// The identity the default governance request declares.
pub const JAKE: &str = "jake@example.org";

/// A running server and everything a test needs to talk to it.
pub struct TestApp {
    /// `http://127.0.0.1:<port>`
    pub address: String,
    pub client: reqwest::Client,
    pub audit_path: PathBuf,
    pub workflows_dir: PathBuf,
    pub keys: JwtKeys,
    /// The running server's state, for tests that drive the gate directly.
    pub state: sustainbot::http::AppState,
    /// Holds the workflows and the audit log; removed when the test ends.
    _dir: TempDir,
}

/// Configures a [`TestApp`] before it starts.
pub struct TestAppBuilder {
    env: BTreeMap<String, String>,
    workflows: Vec<(String, Value)>,
    /// Definition files written as they are: `(file name, text)`.
    files: Vec<(String, String)>,
    dev: bool,
    scripts: Option<PathBuf>,
}

/// One HTTP answer, read whole.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
}

impl Reply {
    /// The body as JSON; panics (with the body) when it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}); status {}: {}",
                self.status, self.text
            )
        })
    }

    /// Asserts the status and the body's `code`, and returns the body.
    #[track_caller]
    pub fn expect(&self, status: u16, code: &str) -> Value {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text);
        let body = self.json();
        assert_eq!(body["code"], code, "body: {body}");
        body
    }

    /// Asserts a status (no `code` expected, as on success) and returns the JSON body.
    #[track_caller]
    pub fn expect_ok(&self, status: u16) -> Value {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text);
        self.json()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl TestAppBuilder {
    /// `GOVERNANCE_ENABLED`.
    pub fn governance(self, enabled: bool) -> Self {
        self.env("GOVERNANCE_ENABLED", if enabled { "true" } else { "false" })
    }

    /// Sets (or overrides) one environment variable of the server's configuration.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.insert(key.to_owned(), value.to_owned());
        self
    }

    /// Adds `workflows/<name>.json` with `definition`.
    pub fn workflow(mut self, name: &str, definition: Value) -> Self {
        self.workflows.push((name.to_owned(), definition));
        self
    }

    /// Adds `workflows/<file_name>` with `text` as it is (a YAML definition, a broken file).
    pub fn workflow_file(mut self, file_name: &str, text: &str) -> Self {
        self.files.push((file_name.to_owned(), text.to_owned()));
        self
    }

    /// Copies these files into `workflows/scripts/` (permissions kept), for command steps.
    pub fn scripts_from(mut self, dir: &std::path::Path) -> Self {
        self.scripts = Some(dir.to_owned());
        self
    }

    /// Development mode (`--dev`).
    pub fn dev(mut self, dev: bool) -> Self {
        self.dev = dev;
        self
    }

    pub async fn spawn(self) -> TestApp {
        let dir = tempfile::tempdir().expect("tempdir");
        let workflows = dir.path().join("workflows");
        std::fs::create_dir_all(&workflows).expect("workflows dir");
        std::fs::create_dir_all(dir.path().join("logs")).expect("logs dir");
        let mut files = vec![
            ("noop".to_owned(), json!({"steps": []})),
            (
                "with-steps".to_owned(),
                json!({"steps": [{"id": "build", "command": ["false"]}]}),
            ),
        ];
        files.extend(self.workflows);
        if let Some(source) = &self.scripts {
            let target = workflows.join("scripts");
            std::fs::create_dir_all(&target).expect("scripts dir");
            for entry in std::fs::read_dir(source).expect("read scripts") {
                let path = entry.expect("script entry").path();
                std::fs::copy(&path, target.join(path.file_name().expect("file name")))
                    .expect("copy script");
            }
        }
        for (name, definition) in files {
            std::fs::write(
                workflows.join(format!("{name}.json")),
                serde_json::to_vec_pretty(&definition).expect("workflow json"),
            )
            .expect("write workflow");
        }
        for (file_name, text) in &self.files {
            std::fs::write(workflows.join(file_name), text).expect("write workflow file");
        }

        let mut vars = BTreeMap::new();
        vars.insert("JWT_SECRET".to_owned(), TEST_SECRET.to_owned());
        vars.insert(
            "WORKFLOWS_DIR".to_owned(),
            workflows.to_string_lossy().into_owned(),
        );
        vars.insert(
            "AUDIT_LOG_PATH".to_owned(),
            dir.path()
                .join("logs/audit.jsonl")
                .to_string_lossy()
                .into_owned(),
        );
        // Nothing listens here: /status probes fail fast instead of finding a stray local service.
        vars.insert("LLM_HOST".to_owned(), "127.0.0.1".to_owned());
        vars.insert("LLM_PORT".to_owned(), "9".to_owned());
        vars.insert("OPENCLAW_URL".to_owned(), "http://127.0.0.1:9".to_owned());
        vars.extend(self.env);
        let audit_path = PathBuf::from(&vars["AUDIT_LOG_PATH"]);

        let config = Config::from_lookup(
            |name| vars.get(name).cloned(),
            Overrides {
                host: Some("127.0.0.1".to_owned()),
                port: Some(0),
                dev: self.dev,
            },
        )
        .expect("test configuration is valid");
        let keys = JwtKeys::new(
            config.auth.jwt_secret.expose().as_bytes(),
            config.auth.jwt_algorithm,
        );
        let app = Application::build(config).await.expect("server starts");
        let address = format!("http://{}", app.local_addr());
        let state = app.state().clone();
        tokio::spawn(app.run_until(std::future::pending()));
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("http client");
        TestApp {
            address,
            client,
            audit_path,
            workflows_dir: workflows.clone(),
            keys,
            state,
            _dir: dir,
        }
    }
}

impl TestApp {
    pub fn builder() -> TestAppBuilder {
        TestAppBuilder {
            env: BTreeMap::new(),
            workflows: Vec::new(),
            files: Vec::new(),
            dev: false,
            scripts: None,
        }
    }

    /// A server with the defaults: governance on, the two standard workflows.
    pub async fn spawn() -> TestApp {
        TestApp::builder().spawn().await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// A valid token for `actor_email` with `role`, good for an hour.
    pub fn token(&self, actor_email: &str, role: &str) -> String {
        self.keys
            .mint(actor_email, role, Some(3600))
            .expect("mint token")
    }

    /// A token for the actor of the default request.
    pub fn jake(&self) -> String {
        self.token(JAKE, "admin")
    }

    /// POSTs `body` as JSON, with `Authorization: Bearer <token>` when given.
    pub async fn post_json(&self, path: &str, body: &Value, token: Option<&str>) -> Reply {
        let mut headers = vec![("content-type", "application/json".to_owned())];
        if let Some(token) = token {
            headers.push(("authorization", format!("Bearer {token}")));
        }
        let bytes = serde_json::to_vec(body).expect("serialize body");
        self.post_raw(path, bytes, &headers).await
    }

    /// POSTs raw bytes with exactly the given headers.
    pub async fn post_raw(
        &self,
        path: &str,
        body: impl Into<reqwest::Body>,
        headers: &[(&str, String)],
    ) -> Reply {
        let mut request = self.client.post(self.url(path)).body(body);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        Reply::read(request.send().await.expect("request sent")).await
    }

    /// GETs `path`, with `Authorization: Bearer <token>` when given.
    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        let mut request = self.client.get(self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        Reply::read(request.send().await.expect("request sent")).await
    }

    /// POSTs a governed run request as jake, with optional extra headers.
    pub async fn execute(&self, body: &Value, extra: &[(&str, String)]) -> Reply {
        let mut headers = vec![
            ("content-type", "application/json".to_owned()),
            ("authorization", format!("Bearer {}", self.jake())),
        ];
        headers.extend(extra.iter().cloned());
        self.post_raw(
            "/workflows/governed/execute",
            serde_json::to_vec(body).expect("serialize body"),
            &headers,
        )
        .await
    }

    /// Every line of the audit log as JSON (none when the file does not exist).
    pub fn audit_lines(&self) -> Vec<Value> {
        match std::fs::read_to_string(&self.audit_path) {
            Ok(text) => text
                .lines()
                .map(|line| serde_json::from_str(line).expect("audit line is JSON"))
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => panic!("cannot read the audit log: {e}"),
        }
    }

    /// The audit records of one trace id, in order.
    pub fn audit_for(&self, trace_id: &str) -> Vec<Value> {
        self.audit_lines()
            .into_iter()
            .filter(|line| line["trace_id"] == trace_id)
            .collect()
    }

    /// Verifies the audit log the way `sustainbot audit verify` does.
    pub fn verify_audit(&self) -> Report {
        verify_path(&self.audit_path).expect("audit log readable")
    }
}

impl Reply {
    async fn read(response: reqwest::Response) -> Reply {
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.expect("response body");
        Reply {
            status,
            headers,
            text,
        }
    }
}

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
