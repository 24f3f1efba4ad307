//! Extractors: the trace id, the authenticated caller, and JSON bodies with our error model.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use serde_json::Value;

use super::error::ApiError;
use super::AppState;
use crate::auth::{token_from_header, Principal};

/// The request's trace id: the client's `X-Trace-ID` or a new UUID v4 (set by the edge middleware).
#[derive(Debug, Clone)]
pub struct TraceId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for TraceId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(trace_of(parts))
    }
}

fn trace_of(parts: &Parts) -> TraceId {
    parts
        .extensions
        .get::<TraceId>()
        .cloned()
        .unwrap_or_else(|| TraceId(uuid::Uuid::new_v4().to_string()))
}

/// The caller, proven by a JWT in the `Authorization` header.
#[derive(Debug, Clone)]
pub struct AuthUser(pub Principal);

impl<S> FromRequestParts<S> for AuthUser
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = AppState::from_ref(state);
        let trace = trace_of(parts);
        let metrics = &state.metrics;
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
            metrics.authentication_failures.inc(&["missing_token"]);
            metrics.jwt_validations.inc(&["failure"]);
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "AUTH_REQUIRED",
                "Authorization header required",
            )
            .with_trace(&trace.0));
        };
        let claims = value
            .to_str()
            .ok()
            .map(token_from_header)
            .filter(|token| !token.is_empty())
            .and_then(|token| {
                state
                    .keys
                    .verify(token)
                    .map_err(|e| tracing::info!(error = %e, "token refused"))
                    .ok()
            });
        match claims {
            Some(claims) => {
                metrics.jwt_validations.inc(&["success"]);
                Ok(AuthUser(Principal::from(claims)))
            }
            None => {
                metrics.authentication_failures.inc(&["invalid_token"]);
                metrics.jwt_validations.inc(&["failure"]);
                Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "INVALID_TOKEN",
                    "Invalid or expired token",
                )
                .with_trace(&trace.0))
            }
        }
    }
}

/// Reads a JSON body. `Ok(None)` for an empty body; a body over the limit is 413, anything that is
/// not JSON (including JSON nested deeper than the parser's limit) is 400.
pub fn json_body(body: Result<Bytes, BytesRejection>) -> Result<Option<Value>, ApiError> {
    let bytes = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PAYLOAD_TOO_LARGE",
                "Request body too large (max 1 MiB)",
            )
        } else {
            ApiError::validation(format!("Request body could not be read: {rejection}"))
        }
    })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| ApiError::validation(format!("Request body is not valid JSON: {e}")))
}
