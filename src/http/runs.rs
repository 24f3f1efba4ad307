//! `GET /runs`, `GET /runs/{trace_id}`, `POST /runs/{trace_id}/cancel`: the live view of runs.
//! Admins and auditors see every run; anyone else sees the runs they are the accountable human of.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{ApiError, AppState, AuthUser, TraceId};
use crate::auth::Principal;
use crate::runs::{Run, RunFilter};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/runs", get(list))
        .route("/runs/{trace_id}", get(show))
        .route("/runs/{trace_id}/cancel", post(cancel))
}

fn sees_everything(principal: &Principal) -> bool {
    matches!(principal.role.as_str(), "admin" | "auditor")
}

/// Whether `principal` may see (and, for its own runs, cancel) `run`.
fn owns(principal: &Principal, run: &Run) -> bool {
    match (&principal.actor, &run.actor) {
        (Some(who), Some(actor)) => who.eq_ignore_ascii_case(actor),
        _ => false,
    }
}

#[derive(Deserialize)]
struct ListQuery {
    status: Option<String>,
    workflow: Option<String>,
    actor: Option<String>,
    limit: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    trace: TraceId,
    AuthUser(principal): AuthUser,
    Query(query): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = match query.limit.as_deref() {
        None | Some("") => 100,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| {
                ApiError::validation("limit must be a whole number from 1 to 1000")
                    .with_trace(&trace.0)
            })?,
    };
    const STATUSES: [&str; 6] = [
        "queued",
        "running",
        "succeeded",
        "failed",
        "cancelled",
        "rejected",
    ];
    if let Some(status) = query.status.as_deref().filter(|s| !STATUSES.contains(s)) {
        return Err(ApiError::validation(format!(
            "status '{status}' is not one of {}",
            STATUSES.join(", ")
        ))
        .with_trace(&trace.0));
    }
    let actor = if sees_everything(&principal) {
        query.actor
    } else {
        // Everyone else sees only their own runs.
        Some(principal.actor.clone().unwrap_or_default())
    };
    let filter = RunFilter {
        status: query.status,
        workflow: query.workflow,
        actor,
    };
    let runs = state.gate.runs().list(&filter, limit);
    Ok(Json(json!({"count": runs.len(), "runs": runs})))
}

fn visible(
    state: &AppState,
    principal: &Principal,
    trace_id: &str,
    trace: &TraceId,
) -> Result<std::sync::Arc<Run>, ApiError> {
    state
        .gate
        .runs()
        .get(trace_id)
        .filter(|run| sees_everything(principal) || owns(principal, run))
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", format!("No run {trace_id} is known here (GET /audit/entries/{trace_id} has the permanent record)")).with_trace(&trace.0))
}

async fn show(
    State(state): State<AppState>,
    trace: TraceId,
    AuthUser(principal): AuthUser,
    Path(trace_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(
        visible(&state, &principal, &trace_id, &trace)?.view(true),
    ))
}

/// Stops a queued or running run: its accountable human or an admin. A running command step's
/// whole process group is killed; the outcome is recorded as `cancelled`.
async fn cancel(
    State(state): State<AppState>,
    trace: TraceId,
    AuthUser(principal): AuthUser,
    Path(trace_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let run = visible(&state, &principal, &trace_id, &trace)?;
    if !(principal.role == "admin" || owns(&principal, &run)) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "FORBIDDEN_ROLE",
            "Only the run's accountable human or an admin may cancel it",
        )
        .with_trace(&trace.0));
    }
    let by = principal
        .actor
        .clone()
        .unwrap_or_else(|| principal.role.clone());
    if !run.cancel(&by) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "RUN_FINISHED",
            format!("Run {trace_id} has already finished"),
        )
        .with_trace(&trace.0));
    }
    tracing::info!(trace_id, by, "run cancellation requested");
    Ok(Json(
        json!({"trace_id": trace_id, "status": "cancelling", "cancelled_by": by}),
    ))
}
