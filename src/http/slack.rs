//! `POST /slack/events`: the Slack Events API endpoint. Every request must be signed with
//! `SLACK_SIGNING_SECRET`; only an explicit dev mode without a secret accepts unsigned requests.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::Value;

use super::extract::{parse_json, unreadable};
use super::{ApiError, AppState};
use crate::slack;

pub fn router() -> Router<AppState> {
    Router::new().route("/slack/events", post(events))
}

/// An Events API callback, acknowledged.
#[derive(Serialize)]
struct Acknowledged {
    ok: bool,
}

async fn events(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let metrics = &state.metrics;
    let bytes = body.map_err(unreadable)?;
    match &state.config.slack.signing_secret {
        Some(secret) => {
            let header_text = |name: &str| {
                headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
            };
            let verdict = slack::verify(
                secret.expose(),
                header_text("x-slack-request-timestamp"),
                header_text("x-slack-signature"),
                &bytes,
                chrono::Utc::now().timestamp(),
            );
            if let Err(e) = verdict {
                metrics.slack_signature_verifications.inc(&["failure"]);
                tracing::warn!(error = %e, "Slack request refused");
                return Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "INVALID_SIGNATURE",
                    "Invalid signature",
                ));
            }
            metrics.slack_signature_verifications.inc(&["success"]);
        }
        None if state.config.server.dev => {
            tracing::warn!(
                "dev mode: accepting an unsigned Slack request (SLACK_SIGNING_SECRET is not set)"
            );
        }
        None => {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "SLACK_NOT_CONFIGURED",
                "Slack is not configured: set SLACK_SIGNING_SECRET",
            ))
        }
    }
    // Slack signs the raw bytes: the body is read as JSON only once its signature holds.
    let event = match parse_json(&bytes)? {
        Some(Value::Object(event)) => event,
        _ => {
            return Err(ApiError::validation(
                "Slack event body must be a JSON object",
            ))
        }
    };
    // A fixed set of label values: the event type is client-controlled.
    let kind = event
        .get("type")
        .and_then(Value::as_str)
        .filter(|kind| {
            matches!(
                *kind,
                "url_verification" | "event_callback" | "app_rate_limited"
            )
        })
        .unwrap_or("other");
    metrics.slack_events_received.inc(&[kind]);
    if kind == "url_verification" {
        let challenge = event
            .get("challenge")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        return Ok((
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            challenge,
        )
            .into_response());
    }
    Ok(Json(Acknowledged { ok: true }).into_response())
}
