//! The benchmark's reference points, with no governance, no middleware and no audit:
//!
//! - `POST /parse`: a bare axum endpoint that parses the same JSON body as `/governance/validate`
//!   and answers a small JSON object;
//! - `POST /spawn`: the floor of a one-step workflow run, an endpoint that only spawns `true` in its
//!   own process group, waits for it and answers 200.
//!
//! `scripts/bench.sh` runs it beside the server so both are measured in the same run.
//!
//!     cargo run --release --example bare_reference -- 127.0.0.1:5392

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

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:5392".to_owned());
    let listener = tokio::net::TcpListener::bind(&address).await?;
    let app = Router::new()
        .route("/parse", post(parse))
        .route("/spawn", post(spawn));
    axum::serve(listener, app).await
}
