//! `GET /workflows`, `POST /workflows/reload`, `POST /workflows/governed/execute`,
//! `POST /workflows/{name}/execute`: thin adapters onto the gate's [`Gate::submit`].
//!
//! [`Gate::submit`]: crate::pipeline::Gate::submit

use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use serde_json::Value;

use super::{ApiError, AppState, AuthUser, JsonBody};
use crate::auth::{may, Action};
use crate::pipeline::{GateError, RequestBody, RunRequest, Submitted, Unreadable, Wait};
use crate::trace::TraceId;
use crate::workflow::{LoadProblem, StepReport};

pub fn router() -> Router<AppState> {
    let runs = Router::new()
        .route("/workflows/governed/execute", post(governed_execute))
        .route("/workflows/{name}/execute", post(ungoverned_execute))
        .route_layer(middleware::from_fn(unsuccessful));
    Router::new()
        .route("/workflows", get(list))
        .route("/workflows/reload", post(reload))
        .merge(runs)
}

/// `GET /workflows`.
#[derive(Serialize)]
struct WorkflowList {
    count: usize,
    workflows: Vec<String>,
    /// After a reload: the files that did not load, and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    invalid: Option<Vec<LoadProblem>>,
}

async fn list(State(state): State<AppState>, _user: AuthUser) -> Json<WorkflowList> {
    let workflows = state.gate.workflows().names();
    Json(WorkflowList {
        count: workflows.len(),
        workflows,
        invalid: None,
    })
}

/// Reads `WORKFLOWS_DIR` again (admins only). Also done on SIGHUP and when the files change.
async fn reload(
    State(state): State<AppState>,
    AuthUser(principal): AuthUser,
) -> Result<Json<WorkflowList>, ApiError> {
    may(&principal, Action::ReloadWorkflows).map_err(ApiError::forbidden)?;
    let gate = state.gate.clone();
    tokio::task::spawn_blocking(move || gate.workflows().reload())
        .await
        .map_err(|_| ApiError::internal())?;
    let registry = state.gate.workflows();
    tracing::info!(by = ?principal.actor, count = registry.len(), "workflows reloaded");
    let workflows = registry.names();
    Ok(Json(WorkflowList {
        count: workflows.len(),
        workflows,
        invalid: Some(registry.problems()),
    }))
}

/// `202 Accepted` for a run that goes on without the caller.
#[derive(Serialize)]
struct Accepted {
    accepted: bool,
    trace_id: String,
    status: &'static str,
    status_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    cancel_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    approve_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    deny_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<String>,
}

impl IntoResponse for Accepted {
    fn into_response(self) -> Response {
        let location = [(header::LOCATION, self.status_url.clone())];
        (StatusCode::ACCEPTED, location, Json(self)).into_response()
    }
}

/// The run endpoints' error bodies carry `"success": false` beside `error` and `code`, as the
/// original's did (whatever refused: the token, the body, the gate).
async fn unsuccessful(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    if let Some(error) = response.extensions_mut().get_mut::<ApiError>() {
        error.extra.insert("success".into(), Value::Bool(false));
    }
    response
}

/// A refusal by the gate, saying whether it is on the audit trail (as the original's
/// `audit_logged`): every refusal of an identified caller is, unless the trail could not record.
fn refused(error: GateError) -> ApiError {
    let logged = !matches!(
        error,
        GateError::AuditUnavailable(_) | GateError::Internal(_)
    );
    ApiError::from(error).with("audit_logged", Value::Bool(logged))
}

/// A body the edge could not read, for the gate to refuse on the record.
fn unreadable(error: ApiError) -> Unreadable {
    Unreadable {
        code: error.code,
        message: error.message,
    }
}

/// Asynchronous on request: `"async": true` in the body or `Prefer: respond-async`.
fn wants_async(body: Option<&Value>, headers: &HeaderMap) -> bool {
    body.is_some_and(|b| b.get("async") == Some(&Value::Bool(true)))
        || headers
            .get_all("prefer")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| {
                v.split(',')
                    .any(|p| p.trim().eq_ignore_ascii_case("respond-async"))
            })
}

async fn governed_execute(
    State(state): State<AppState>,
    trace: TraceId,
    AuthUser(principal): AuthUser,
    headers: HeaderMap,
    body: Result<JsonBody, ApiError>,
) -> Result<Response, ApiError> {
    let started = std::time::Instant::now();
    let body = body.map(|JsonBody(body)| body);
    // For the unknown-workflow answer, which tells the declaration's summary as the original's did.
    let declaration = body.as_ref().ok().cloned().flatten();
    let wait = match &body {
        Ok(body) if wants_async(body.as_ref(), &headers) => Wait::Acceptance,
        _ => Wait::Outcome,
    };
    let request = RunRequest {
        trace_id: trace,
        principal,
        // An identified caller's unreadable request is a refusal like any other: on the record.
        body: RequestBody::Governed(body.map_err(unreadable)),
        approvable: true,
    };
    let submitted = state.gate.submit(request, wait).await.map_err(|error| {
        let summary = match (&error, &declaration) {
            (GateError::WorkflowNotFound(_), Some(body)) => {
                crate::governance::GovernanceRequest::parse(body)
                    .ok()
                    .map(|request| crate::governance::summary(&request))
            }
            _ => None,
        };
        let mut api = refused(error).with(
            "duration_seconds",
            serde_json::json!((started.elapsed().as_secs_f64() * 100.0).round() / 100.0),
        );
        if let Some(summary) = summary {
            api = api.with("governance_summary", Value::String(summary));
        }
        api
    })?;
    Ok(match submitted {
        Submitted::Finished(report) => {
            let status = if report.success {
                StatusCode::OK
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            };
            (status, Json(report)).into_response()
        }
        Submitted::Queued { trace_id } => {
            let status_url = format!("/runs/{trace_id}");
            Accepted {
                accepted: true,
                status: "queued",
                cancel_url: Some(format!("{status_url}/cancel")),
                approve_url: None,
                deny_url: None,
                expires_at: None,
                trace_id,
                status_url,
            }
            .into_response()
        }
        Submitted::AwaitingApproval {
            trace_id,
            expires_at,
        } => {
            let status_url = format!("/runs/{trace_id}");
            Accepted {
                accepted: true,
                status: "pending_approval",
                cancel_url: None,
                approve_url: Some(format!("{status_url}/approve")),
                deny_url: Some(format!("{status_url}/deny")),
                expires_at: Some(expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
                trace_id,
                status_url,
            }
            .into_response()
        }
    })
}

/// The original's answer to an ungoverned run.
#[derive(Serialize)]
struct UngovernedRun {
    success: bool,
    workflow: String,
    outcome: Option<String>,
    trace_id: String,
    steps: Vec<StepReport>,
}

/// The original's ungoverned endpoint. With governance enabled nothing runs without an AIM
/// declaration: the refusal names the governed endpoint and is audited. With governance disabled
/// (development only) the workflow runs with the body as its parameters, through the gate like any
/// other run (parameter schema, pool, `/runs`), on the record as `"governed": false`.
async fn ungoverned_execute(
    State(state): State<AppState>,
    trace: TraceId,
    AuthUser(principal): AuthUser,
    Path(name): Path<String>,
    body: Result<JsonBody, ApiError>,
) -> Result<Json<UngovernedRun>, ApiError> {
    let request = RunRequest {
        trace_id: trace,
        principal,
        body: RequestBody::Ungoverned {
            workflow_name: name.clone(),
            parameters: body
                .map(|JsonBody(parameters)| parameters)
                .map_err(unreadable),
        },
        approvable: false,
    };
    match state
        .gate
        .submit(request, Wait::Outcome)
        .await
        .map_err(refused)?
    {
        Submitted::Finished(report) if report.success => Ok(Json(UngovernedRun {
            success: true,
            workflow: name,
            outcome: report.outcome,
            trace_id: report.trace_id,
            steps: report.steps,
        })),
        Submitted::Finished(report) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "EXECUTION_FAILED",
            format!(
                "Failed to execute '{name}': {}",
                report.error.unwrap_or_default()
            ),
        )),
        // Not approvable and waited for: the gate answers with the outcome.
        Submitted::Queued { .. } | Submitted::AwaitingApproval { .. } => Err(ApiError::internal()),
    }
}
