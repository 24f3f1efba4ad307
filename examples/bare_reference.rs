//! The benchmark's reference points, with no governance, no middleware and no audit:
//!
//! - `POST /parse`: a bare axum endpoint that parses the same JSON body as `/governance/validate`
//!   and answers a small JSON object;
//! - `POST /spawn`: the floor of a one-step workflow run, an endpoint that only spawns `true` in its
//!   own process group, waits for it and answers 200.
//! - `POST /spawn-durable`: the write-ahead floor, the same spawn between two durable appends
//!   (a 300-byte line written and `fdatasync`ed on a blocking thread, before the child starts and
//!   after it ends), as a governed run must do at least; no hashing, no governance.
//!
//! `scripts/bench.sh` runs it beside the server so both are measured in the same run.
//!
//!     cargo run --release --example bare_reference -- 127.0.0.1:5392 /tmp/durable.jsonl

use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

async fn parse(Json(body): Json<Value>) -> Json<Value> {
    Json(json!({"valid": body.is_object()}))
}

async fn spawn() -> StatusCode {
    let status = tokio::process::Command::new("true")
        .process_group(0)
        .status()
        .await;
    match status {
        Ok(status) if status.success() => StatusCode::OK,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The file `/spawn-durable` appends to, beside the server's audit log in the benchmark.
static DURABLE: std::sync::OnceLock<std::sync::Arc<std::sync::Mutex<std::fs::File>>> =
    std::sync::OnceLock::new();

async fn append_durably() -> std::io::Result<()> {
    use std::io::Write;
    let Some(file) = DURABLE.get().cloned() else {
        return Err(std::io::Error::other("no durable file given"));
    };
    tokio::task::spawn_blocking(move || {
        let mut file = file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut line = [b'x'; 300];
        line[299] = b'\n';
        file.write_all(&line)?;
        file.sync_data()
    })
    .await
    .map_err(std::io::Error::other)?
}

async fn spawn_durable() -> StatusCode {
    if append_durably().await.is_err() {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    let spawned = spawn().await;
    if spawned != StatusCode::OK || append_durably().await.is_err() {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    StatusCode::OK
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:5392".to_owned());
    if let Some(path) = std::env::args().nth(2) {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        let _ = DURABLE.set(std::sync::Arc::new(std::sync::Mutex::new(file)));
    }
    let listener = tokio::net::TcpListener::bind(&address).await?;
    let app = Router::new()
        .route("/parse", post(parse))
        .route("/spawn", post(spawn))
        .route("/spawn-durable", post(spawn_durable));
    axum::serve(listener, app).await
}
