//! Talking to a server over HTTP: a client that knows the server's address and signing key, and
//! the answers it reads, with assertions that state the expected status. Every answer is checked
//! against the API description ([`super::openapi`]) as it is read.

use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use serde_json::Value;
use sustainbot::auth::JwtKeys;

use super::{run_request, JAKE};

/// The path of the governed run endpoint.
pub const GOVERNED: &str = "/workflows/governed/execute";

/// An HTTP client for one server (in-process or a child process).
#[derive(Clone)]
pub struct TestClient {
    /// `http://127.0.0.1:<port>`
    pub address: String,
    pub client: reqwest::Client,
    /// The server's token keys, to mint tokens it accepts.
    pub keys: JwtKeys,
    /// Whether answers are checked against the API description (`true`; a test whose requests
    /// are deliberately outside the description may turn it off).
    pub checked: bool,
}

/// One HTTP answer, read whole.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
}

/// An `x-trace-id` header, for the `extra` headers of [`TestClient::execute`].
pub fn trace(id: &str) -> [(&'static str, String); 1] {
    [("x-trace-id", id.to_owned())]
}

impl TestClient {
    pub fn new(address: String, keys: JwtKeys) -> TestClient {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("http client");
        TestClient {
            address,
            client,
            keys,
            checked: true,
        }
    }

    async fn read(&self, method: &str, response: reqwest::Response) -> Reply {
        let path = response.url().path().to_owned();
        let reply = Reply::read(response).await;
        if self.checked {
            reply.check(method, &path);
        }
        reply
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

    /// POSTs an empty body with `Authorization: Bearer <token>` (a cancel, a reload).
    pub async fn post_empty(&self, path: &str, token: &str) -> Reply {
        self.post_raw(
            path,
            Vec::new(),
            &[("authorization", format!("Bearer {token}"))],
        )
        .await
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
        self.read("POST", request.send().await.expect("request sent"))
            .await
    }

    /// Polls `GET /runs/{trace}` as jake until the run's status is `status`; its answer then.
    /// Fails after `within`.
    pub async fn wait_for_run(&self, trace: &str, status: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let run = self
                .get(&format!("/runs/{trace}"), Some(&self.jake()))
                .await
                .expect_ok(200);
            if run["status"] == status {
                return run;
            }
            assert!(
                Instant::now() < deadline,
                "run {trace} never became {status}: {run}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// GETs `path`, with `Authorization: Bearer <token>` when given.
    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        let mut request = self.client.get(self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        self.read("GET", request.send().await.expect("request sent"))
            .await
    }

    /// POSTs a governed run request as jake, with optional extra headers.
    pub async fn execute(&self, body: &Value, extra: &[(&str, String)]) -> Reply {
        self.execute_as(&self.jake(), body, extra).await
    }

    /// Runs `workflow` with `parameters` in DRAG mode execute, as jake: the contract's request
    /// otherwise.
    pub async fn run_workflow(&self, workflow: &str, parameters: Value) -> Reply {
        self.execute(&run_request(workflow, "execute", parameters), &[])
            .await
    }

    /// POSTs a governed run request with `token`, with optional extra headers.
    pub async fn execute_as(&self, token: &str, body: &Value, extra: &[(&str, String)]) -> Reply {
        let body = serde_json::to_vec(body).expect("serialize body");
        let request = self.governed_request(token, body, extra);
        self.read("POST", request.send().await.expect("request sent"))
            .await
    }

    /// POSTs `body` as it is (labelled JSON) to the governed endpoint as jake.
    pub async fn execute_raw(
        &self,
        body: impl Into<reqwest::Body>,
        extra: &[(&str, String)],
    ) -> Reply {
        let request = self.governed_request(&self.jake(), body, extra);
        self.read("POST", request.send().await.expect("request sent"))
            .await
    }

    /// The governed run request, not sent yet: for callers that expect the server to go away.
    pub fn governed_request(
        &self,
        token: &str,
        body: impl Into<reqwest::Body>,
        extra: &[(&str, String)],
    ) -> reqwest::RequestBuilder {
        let mut request = self
            .client
            .post(self.url(GOVERNED))
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {token}"))
            .body(body);
        for (name, value) in extra {
            request = request.header(*name, value);
        }
        request
    }
}

impl Reply {
    /// Panics when this answer to `method path` is not as the API description documents it.
    #[track_caller]
    pub fn check(&self, method: &str, path: &str) {
        super::openapi::description().check(&super::openapi::Answer {
            method,
            path,
            status: self.status.as_u16(),
            content_type: self.header("content-type"),
            body: &self.text,
        });
    }

    pub async fn read(response: reqwest::Response) -> Reply {
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.expect("response body");
        Reply {
            status,
            headers,
            text,
        }
    }

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
