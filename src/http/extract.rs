//! Extractors: the trace id, the authenticated caller, and JSON bodies with our error model.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRef, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use serde_json::Value;

use super::connections::BodyTimedOut;
use super::error::ApiError;
use super::AppState;
use crate::auth::{authenticate, token_from_header, Principal, TokenRefusal};
use crate::metrics::ByOutcome;
use crate::trace::TraceId;

/// The request's trace id, set by the edge middleware.
impl<S: Send + Sync> FromRequestParts<S> for TraceId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<TraceId>()
            .cloned()
            .unwrap_or_else(TraceId::random))
    }
}

/// The caller, proven by a JWT in the `Authorization` header (signed with `JWT_SECRET`, or by the
/// identity provider), or by an API key there (a bearer value beginning `sbk_`) or in `X-API-Key`
/// (see `apikeys.rs`).
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
        let metrics = &state.metrics;
        if let Some(key) = super::apikeys::presented(&parts.headers)? {
            let principal = super::apikeys::authenticate(&state, key)?;
            return admitted(&state, principal);
        }
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
            metrics.token_refused("missing_token");
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "AUTH_REQUIRED",
                "Authorization header required",
            ));
        };
        let token = value
            .to_str()
            .ok()
            .map(token_from_header)
            .filter(|token| !token.is_empty());
        let verified = match token {
            Some(token) => {
                authenticate(&state.keys, state.identity_provider.as_deref(), token).await
            }
            None => Err(TokenRefusal::Invalid),
        };
        match verified {
            Ok(principal) => {
                metrics
                    .jwt_validations
                    .inc(&ByOutcome { outcome: "success" });
                admitted(&state, principal)
            }
            Err(refusal) => {
                metrics.token_refused(refusal.failure_type());
                Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    refusal.code(),
                    refusal.message(),
                ))
            }
        }
    }
}

/// An authenticated caller, let in: the request's log lines name who called, and the principal's
/// rate limit applies (an API key's is its owner's).
fn admitted(state: &AppState, principal: Principal) -> Result<AuthUser, ApiError> {
    tracing::Span::current().record("actor", principal.actor.as_deref());
    if let Some(limiter) = &state.rate_limits.principal {
        let key = principal.actor.as_deref().map(crate::identity::canonical);
        if let Err(after) = limiter.check(key.as_deref().unwrap_or("")) {
            tracing::info!("rate limited (principal)");
            return Err(super::rate_limit::refused("principal", after));
        }
    }
    Ok(AuthUser(principal))
}

/// A JSON body read with our error model: over the limit is 413 `PAYLOAD_TOO_LARGE`, anything
/// that is not JSON (including JSON nested deeper than the parser's limit) is 400
/// `VALIDATION_ERROR`. `None` for an empty (or white-space) body; a literal `null` is `Some`, a
/// value of the wrong shape for the endpoint to refuse.
#[derive(Debug, Clone)]
pub struct JsonBody(pub Option<Value>);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(unreadable)?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// Why a body could not be read: too large (413), late (408: the connection layer's body timeout)
/// or broken off (400).
pub fn unreadable(rejection: BytesRejection) -> ApiError {
    if let Some(timed_out) = BodyTimedOut::in_chain(&rejection) {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "REQUEST_TIMEOUT",
            format!(
                "Request body not received within {} s",
                timed_out.0.as_secs()
            ),
        )
    } else if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            "Request body too large (max 1 MiB)",
        )
    } else {
        ApiError::validation(format!("Request body could not be read: {rejection}"))
    }
}

/// Reads `bytes` as JSON; `None` for white space alone.
pub fn parse_json(bytes: &[u8]) -> Result<Option<Value>, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    // A key twice in one object is refused: `workflow_name` twice must not run whichever came last.
    crate::strict_json::from_slice(bytes)
        .map(Some)
        .map_err(|e| ApiError::validation(format!("Request body is not valid JSON: {e}")))
}
