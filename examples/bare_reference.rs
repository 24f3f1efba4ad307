//! The benchmark's reference point: a bare axum endpoint that parses the same JSON body as
//! `/governance/validate` and answers a small JSON object. No governance, no middleware, no audit.
//! `scripts/bench.sh` runs it beside the server so both are measured in the same run.
//!
//!     cargo run --release --example bare_reference -- 127.0.0.1:5392

use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

async fn parse(Json(body): Json<Value>) -> Json<Value> {
    Json(json!({"valid": body.is_object()}))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:5392".to_owned());
    let listener = tokio::net::TcpListener::bind(&address).await?;
    axum::serve(listener, Router::new().route("/parse", post(parse))).await
}
