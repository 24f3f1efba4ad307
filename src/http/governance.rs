//! `POST /governance/validate` (pre-flight, no authentication, as the original) and
//! `POST /governance/filter` (the prescriptive-language filter as a service).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::Value;
use utoipa::{OpenApi, ToSchema};

use super::openapi::refusals::refusals;
use super::{ApiError, AppState, JsonBody};
use crate::governance::filter::check_output;
use crate::governance::{summary, DragMode, GovernanceRequest, Violation, ViolationKind};
use crate::metrics::Detection;
use crate::pipeline::is_empty_body;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/governance/validate", post(validate))
        .route("/governance/filter", post(filter))
}

#[derive(OpenApi)]
#[openapi(paths(validate, filter))]
pub(super) struct Api;

refusals!(
    /// The errors of `POST /governance/validate`.
    ValidateRefusals,
    Validate,
    ["GOVERNANCE_ERROR", "GOVERNANCE_VALIDATION_FAILED", "PAYLOAD_TOO_LARGE"]
);

refusals!(
    /// The errors of `POST /governance/filter`.
    FilterRefusals,
    Plain,
    ["PAYLOAD_TOO_LARGE"]
);

/// `POST /governance/validate` for a valid request.
#[derive(Serialize, ToSchema)]
struct Validated {
    valid: bool,
    summary: String,
    drag_mode: DragMode,
    actor: String,
}

/// `POST /governance/filter`.
#[derive(Serialize, ToSchema)]
struct Filtered {
    /// No forbidden phrase found (always `true` when not checked).
    valid: bool,
    /// Whether the mode forbids prescriptive language (draft and research do).
    checked: bool,
    drag_mode: DragMode,
    violations: Vec<crate::governance::filter::Violation>,
}

/// Pre-flight: is this AIM/DRAG declaration acceptable?
///
/// No authentication, as the original. The summary is the original's text, line for line.
#[utoipa::path(post, path = "/governance/validate", operation_id = "validate_governance", tag = "governance",
    request_body = crate::http::openapi::GovernanceRequestBody,
    responses((status = 200, description = "The declaration is acceptable.", body = Validated),
        ValidateRefusals))]
async fn validate(
    State(state): State<AppState>,
    JsonBody(body): JsonBody,
) -> Result<Json<Validated>, ApiError> {
    let body = match body {
        Some(body) if !is_empty_body(&body) => body,
        _ => return Err(ApiError::validation("Request body required")),
    };
    match GovernanceRequest::parse(&body) {
        Ok(request) => Ok(Json(Validated {
            valid: true,
            summary: summary(&request),
            drag_mode: request.drag_mode,
            actor: request.aim.actor().name().to_owned(),
        })),
        Err(rejection) => {
            state.metrics.validation_failure(&rejection, &body);
            Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                rejection.code(),
                rejection.headline(),
            )
            .with_errors(rejection.violations)
            .with("valid", Value::Bool(false)))
        }
    }
}

/// Checks AI output for prescriptive language.
///
/// `{"text", "drag_mode"}` -> `{"valid", "checked", "drag_mode", "violations": [{"phrase", "start", "end"}]}`
/// with byte offsets into `text`. Grunt and execute output is not checked (`checked: false`).
#[utoipa::path(post, path = "/governance/filter", operation_id = "filter_output", tag = "governance",
    request_body = crate::http::openapi::FilterRequest,
    responses((status = 200, description = "The phrases found, if any.", body = Filtered),
        FilterRefusals))]
async fn filter(
    State(state): State<AppState>,
    JsonBody(body): JsonBody,
) -> Result<Json<Filtered>, ApiError> {
    let Some(Value::Object(body)) = body else {
        return Err(ApiError::validation(
            "Request body must be a JSON object with text and drag_mode",
        ));
    };
    let mut problems = Vec::new();
    let text = match body.get("text") {
        Some(Value::String(text)) => Some(text.as_str()),
        Some(_) => {
            problems.push(violation("text", "must be a string"));
            None
        }
        None => {
            problems.push(violation("text", "field required"));
            None
        }
    };
    let mode = match body.get("drag_mode").and_then(Value::as_str) {
        Some(mode) => mode
            .parse::<DragMode>()
            .map_err(|e| problems.push(violation("drag_mode", &e.to_string())))
            .ok(),
        None => {
            problems.push(violation("drag_mode", "field required (a string)"));
            None
        }
    };
    let (Some(text), Some(mode)) = (text, mode) else {
        let headline = format!(
            "Invalid filter request: {}: {}",
            problems[0].field, problems[0].message
        );
        return Err(ApiError::validation(headline).with_errors(problems));
    };
    let violations = check_output(text, mode, &state.phrases);
    for found in &violations {
        state
            .metrics
            .prescriptive_language_detections
            .inc(&Detection {
                drag_mode: mode.as_str(),
                phrase_type: found.phrase.clone(),
            });
    }
    Ok(Json(Filtered {
        valid: violations.is_empty(),
        checked: mode.forbids_prescriptive_language(),
        drag_mode: mode,
        violations,
    }))
}

fn violation(field: &str, message: &str) -> Violation {
    Violation {
        field: field.to_owned(),
        message: message.to_owned(),
        kind: ViolationKind::Shape,
    }
}
