//! `GET /workflows`, `POST /workflows/governed/execute`, `POST /workflows/{name}/execute`.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::extract::json_body;
use super::{ApiError, AppState, AuthUser, TraceId};
use crate::pipeline::{GateError, RunRequest};
use crate::workflow;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/workflows", get(list))
        .route("/workflows/governed/execute", post(governed_execute))
        .route("/workflows/reload", post(reload))
        .route("/workflows/{name}/execute", post(ungoverned_execute))
}

async fn list(State(state): State<AppState>, _user: AuthUser) -> Json<Value> {
    let names = state.gate.workflows().names();
    Json(json!({"count": names.len(), "workflows": names}))
}

/// Reads `WORKFLOWS_DIR` again (admins only). Also done on SIGHUP and when the files change.
async fn reload(
    State(state): State<AppState>,
    trace: TraceId,
    AuthUser(principal): AuthUser,
) -> Result<Json<Value>, ApiError> {
    if principal.role != "admin" {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "FORBIDDEN_ROLE",
            "Reloading workflows needs role admin",
        )
        .with_trace(&trace.0));
    }
    let gate = state.gate.clone();
    tokio::task::spawn_blocking(move || gate.workflows().reload())
        .await
        .map_err(|_| ApiError::internal().with_trace(&trace.0))?;
    let workflows = state.gate.workflows();
    tracing::info!(by = ?principal.actor, count = workflows.len(), "workflows reloaded");
    let names = workflows.names();
    Ok(Json(
        json!({"count": names.len(), "workflows": names, "invalid": workflows.problems()}),
    ))
}

async fn governed_execute(
    State(state): State<AppState>,
    trace: TraceId,
    AuthUser(principal): AuthUser,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = match json_body(body) {
        Ok(body) => body,
        // An identified caller's unreadable request is a refusal like any other: on the record.
        Err(unreadable) => {
            let refusal = state
                .gate
                .refuse_unreadable(&trace.0, &principal, unreadable.code, unreadable.message)
                .await;
            return Err(ApiError::from(refusal).with_trace(&trace.0));
        }
    };
    // Asynchronous on request: `"async": true` in the body or `Prefer: respond-async`.
    let wants_async = body
        .as_ref()
        .is_some_and(|b| b.get("async") == Some(&Value::Bool(true)))
        || headers
            .get_all("prefer")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| {
                v.split(',')
                    .any(|p| p.trim().eq_ignore_ascii_case("respond-async"))
            });
    let request = RunRequest {
        trace_id: trace.0.clone(),
        principal,
        body,
    };
    // The run goes on in its own task: a client that disconnects must not cut it between its
    // `started` record and its outcome.
    let gate = state.gate.clone();
    let (answer, answered) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        match gate.prepare(request).await {
            Err(refused) => {
                let _ = answer.send(Err(refused));
            }
            Ok(prepared) if prepared.approval().is_some() => {
                let trace_id = prepared.trace_id().to_owned();
                let _ = answer.send(
                    prepared
                        .hold_for_approval()
                        .await
                        .map(|expires| Err((trace_id, expires))),
                );
            }
            Ok(prepared) if wants_async => {
                let _ = answer.send(Ok(Ok(None)));
                let _ = prepared.run().await;
            }
            Ok(prepared) => {
                let _ = answer.send(prepared.run().await.map(|report| Ok(Some(report))));
            }
        }
    });
    let report = match answered.await {
        Ok(Ok(Ok(Some(report)))) => report,
        Ok(Ok(Err((trace_id, expires_at)))) => {
            let status_url = format!("/runs/{trace_id}");
            let body = json!({
                "accepted": true,
                "trace_id": trace_id,
                "status": "pending_approval",
                "status_url": status_url,
                "approve_url": format!("{status_url}/approve"),
                "deny_url": format!("{status_url}/deny"),
                "expires_at": expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            });
            return Ok((
                StatusCode::ACCEPTED,
                [(header::LOCATION, status_url)],
                Json(body),
            )
                .into_response());
        }
        Ok(Ok(Ok(None))) => {
            let status_url = format!("/runs/{}", trace.0);
            let body = json!({
                "accepted": true,
                "trace_id": trace.0,
                "status": "queued",
                "status_url": status_url,
                "cancel_url": format!("{status_url}/cancel"),
            });
            return Ok((
                StatusCode::ACCEPTED,
                [(header::LOCATION, status_url)],
                Json(body),
            )
                .into_response());
        }
        Ok(Err(refused)) => return Err(ApiError::from(refused).with_trace(&trace.0)),
        Err(_) => {
            tracing::error!("governed run task ended without an answer");
            return Err(ApiError::internal().with_trace(&trace.0));
        }
    };
    let duration = (report.duration_seconds * 100.0).round() / 100.0;
    let response = if report.success {
        (
            StatusCode::OK,
            Json(json!({
                "success": true,
                "trace_id": report.trace_id,
                "outcome": report.outcome,
                "audit_logged": report.audit_logged,
                "governance_summary": report.governance_summary,
                "duration_seconds": duration,
                "workflow_name": report.workflow_name,
                "steps": report.steps,
            })),
        )
    } else {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({
                "success": false,
                "trace_id": report.trace_id,
                "error": report.error,
                "code": report.code.unwrap_or("WORKFLOW_FAILED"),
                "audit_logged": report.audit_logged,
                "governance_summary": report.governance_summary,
                "duration_seconds": duration,
                "workflow_name": report.workflow_name,
                "steps": report.steps,
            })),
        )
    };
    Ok(response.into_response())
}

/// The original's ungoverned endpoint. With governance enabled nothing runs without an AIM
/// declaration: the refusal names the governed endpoint and is audited. With governance disabled
/// (development only) the workflow runs with the body as its parameters, unaudited, as the original.
async fn ungoverned_execute(
    State(state): State<AppState>,
    trace: TraceId,
    AuthUser(principal): AuthUser,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let with_trace = |e: ApiError| e.with_trace(&trace.0);
    if state.config.governance_enabled {
        let refusal = state
            .gate
            .refuse_ungoverned(&trace.0, &principal, &name)
            .await;
        return Err(with_trace(refusal.into()));
    }
    workflow::validate_name(&name).map_err(|e| with_trace(GateError::InvalidName(e).into()))?;
    let parameters = match json_body(body).map_err(with_trace)? {
        None => serde_json::Map::new(),
        Some(Value::Object(map)) => map,
        Some(_) => {
            return Err(with_trace(ApiError::validation(
                "Request body must be a JSON object",
            )))
        }
    };
    let Some(definition) = state.gate.workflows().get(&name) else {
        return Err(with_trace(GateError::WorkflowNotFound(name).into()));
    };
    match state
        .gate
        .runner()
        .run(&definition, &parameters, &trace.0, None, None)
        .await
    {
        Ok(output) => Ok(Json(json!({
            "success": true, "workflow": name, "outcome": output.outcome, "trace_id": trace.0, "steps": output.steps,
        }))),
        Err(failure) => Err(with_trace(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "EXECUTION_FAILED",
            format!("Failed to execute '{name}': {}", failure.error),
        ))),
    }
}
