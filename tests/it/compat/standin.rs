//! The stand-in Ollama and OpenClaw of the replay: the same answers as the recorder's
//! `scripts/compat/standin.py`, so our server meets the world the original met.

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::helpers::serve;

const ANSWER: &str =
    "Options include a blue-green switch and a rolling update; trade-offs are cost and time.";
/// OpenClaw answers 500 to a submitted workflow with this `name`.
const REJECTED_WORKFLOW: &str = "legacy-rejected";

type Calls = Arc<Mutex<Vec<Value>>>;

/// The stand-in on a loopback port, with the bodies posted to `/api/workflows/execute`.
pub struct StandIn {
    pub port: u16,
    calls: Calls,
}

impl StandIn {
    pub async fn start() -> StandIn {
        let calls = Calls::default();
        let app = Router::new()
            .route(
                "/api/tags",
                get(|| async {
                    Json(json!({"models": [{"name": "llama2:latest", "model": "llama2:latest"}]}))
                }),
            )
            .route(
                "/api/generate",
                post(|| async { Json(json!({"model": "llama2", "response": ANSWER, "done": true})) }),
            )
            .route(
                "/api/chat",
                post(|| async {
                    Json(json!({"model": "llama2", "message": {"role": "assistant", "content": ANSWER}, "done": true}))
                }),
            )
            .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
            .route("/api/workflows/execute", post(submit))
            .with_state(Arc::clone(&calls));
        StandIn {
            port: serve(app).await.port(),
            calls,
        }
    }

    /// Forgets the submissions so far.
    pub fn clear(&self) {
        self.calls.lock().expect("calls lock").clear();
    }

    /// The bodies posted to OpenClaw since the last [`StandIn::clear`].
    pub fn calls(&self) -> Vec<Value> {
        self.calls.lock().expect("calls lock").clone()
    }
}

async fn submit(State(calls): State<Calls>, body: String) -> (StatusCode, Json<Value>) {
    let body: Value = serde_json::from_str(&body).unwrap_or(Value::String(body));
    calls.lock().expect("calls lock").push(body.clone());
    if body["workflow"]["name"] == REJECTED_WORKFLOW {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"error": "rejected by the stand-in"})),
        )
    } else {
        (
            StatusCode::ACCEPTED,
            Json(json!({"execution_id": body["execution_id"], "status": "accepted"})),
        )
    }
}
