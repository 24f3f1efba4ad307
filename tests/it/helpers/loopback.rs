//! Small servers on loopback for steps to call, and the workflow that calls one.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode, Uri};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

/// Serves `app` on a free loopback port for the rest of the test; its address.
pub async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let address = listener.local_addr().expect("local address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    address
}

/// A loopback server that answers every request with its path and query, and the `x-name` header
/// after a `|` (`-` without one); it counts the requests it got.
pub struct EchoServer {
    /// `http://127.0.0.1:<port>`
    pub base: String,
    count: Arc<AtomicUsize>,
}

impl EchoServer {
    pub async fn start() -> EchoServer {
        let count = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&count);
        let app = Router::new().fallback(move |uri: Uri, headers: HeaderMap| {
            seen.fetch_add(1, Ordering::SeqCst);
            async move {
                let name = headers
                    .get("x-name")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-")
                    .to_owned();
                format!("{uri}|{name}")
            }
        });
        EchoServer {
            base: format!("http://{}", serve(app).await),
            count,
        }
    }

    /// How many requests reached it.
    pub fn requests(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }
}

/// A workflow of one `http` step, `call`, with `spec` (`url`, `headers`, `body`, ...).
pub fn http_workflow(spec: Value) -> Value {
    json!({"steps": [{"id": "call", "http": spec}]})
}

/// A stand-in for OpenClaw: `POST /api/workflows/execute` answers `status` with `answer` and keeps
/// every body it was sent.
pub struct FakeOpenClaw {
    /// `http://127.0.0.1:<port>`, for `OPENCLAW_URL`.
    pub base: String,
    received: Arc<Mutex<Vec<Value>>>,
}

impl FakeOpenClaw {
    /// Accepts every submission as the orchestrator does: 202 `{"status": "submitted"}`.
    pub async fn accepting() -> FakeOpenClaw {
        FakeOpenClaw::answering(202, json!({"status": "submitted"})).await
    }

    pub async fn answering(status: u16, answer: Value) -> FakeOpenClaw {
        let received = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&received);
        let status = StatusCode::from_u16(status).expect("a status code");
        let app = Router::new().route(
            "/api/workflows/execute",
            post(move |Json(body): Json<Value>| async move {
                sustainbot::sync::lock(&kept).push(body);
                (status, Json(answer))
            }),
        );
        FakeOpenClaw {
            base: format!("http://{}", serve(app).await),
            received,
        }
    }

    /// The bodies it was sent, in order.
    pub fn received(&self) -> Vec<Value> {
        sustainbot::sync::lock(&self.received).clone()
    }
}
