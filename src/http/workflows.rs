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
use utoipa::{OpenApi, ToSchema};

use super::openapi::refusals::refusals;
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

#[derive(OpenApi)]
#[openapi(paths(list, reload, governed_execute, ungoverned_execute))]
pub(super) struct Api;

refusals!(
    /// The errors of `GET /workflows`.
    ListRefusals,
    Plain,
    ["AUTH_REQUIRED", "INVALID_TOKEN"]
);

refusals!(
    /// The errors of `POST /workflows/reload`.
    ReloadRefusals,
    Plain,
    ["AUTH_REQUIRED", "INVALID_TOKEN", "FORBIDDEN_ROLE"]
);

refusals!(
    /// The errors of `POST /workflows/governed/execute`.
    GovernedRefusals,
    GovernedRun,
    [
        "GOVERNANCE_ERROR",
        "GOVERNANCE_VALIDATION_FAILED",
        "DRAG_MODE_NOT_ALLOWED",
        "INVALID_PARAMETERS",
        "AUTH_REQUIRED",
        "INVALID_TOKEN",
        "ACTOR_MISMATCH",
        "FORBIDDEN_ROLE",
        "WORKFLOW_NOT_FOUND",
        "TRACE_ID_IN_USE",
        "CANCELLED",
        "PAYLOAD_TOO_LARGE",
        "PARAMETERS_TOO_LARGE",
        "TOO_MANY_RUNS",
        "AUDIT_UNAVAILABLE",
        "SHUTTING_DOWN",
    ]
);

refusals!(
    /// The errors of `POST /workflows/{name}/execute`.
    UngovernedRefusals,
    Run,
    [
        "GOVERNANCE_REQUIRED",
        "INVALID_PARAMETERS",
        "AUTH_REQUIRED",
        "INVALID_TOKEN",
        "FORBIDDEN_ROLE",
        "WORKFLOW_NOT_FOUND",
        "TRACE_ID_IN_USE",
        "APPROVAL_REQUIRED",
        "CANCELLED",
        "PAYLOAD_TOO_LARGE",
        "PARAMETERS_TOO_LARGE",
        "TOO_MANY_RUNS",
        "EXECUTION_FAILED",
        "AUDIT_UNAVAILABLE",
        "SHUTTING_DOWN",
    ]
);

/// `GET /workflows`.
#[derive(Serialize, ToSchema)]
struct WorkflowList {
    count: usize,
    workflows: Vec<String>,
    /// After a reload: the files that did not load, and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    invalid: Option<Vec<LoadProblem>>,
}

/// The loaded workflows' names.
#[utoipa::path(get, path = "/workflows", operation_id = "list_workflows", tag = "workflows", security(("bearer" = [])),
    responses((status = 200, description = "The workflows, by name.", body = WorkflowList),
        ListRefusals))]
async fn list(State(state): State<AppState>, _user: AuthUser) -> Json<WorkflowList> {
    let workflows = state.gate.workflows().names();
    Json(WorkflowList {
        count: workflows.len(),
        workflows,
        invalid: None,
    })
}

/// Reads `WORKFLOWS_DIR` and the policy file again.
///
/// Admins only (under a policy file: the `reload` action). Also done on SIGHUP and when the files
/// change. The answer lists the files that did not load (a policy file that no longer loads among
/// them: the policy in force stays as it was).
#[utoipa::path(post, path = "/workflows/reload", operation_id = "reload_workflows", tag = "workflows", security(("bearer" = [])),
    responses((status = 200, description = "Reloaded; `invalid` names the files that did not \
        load, and why.", body = WorkflowList), ReloadRefusals))]
async fn reload(
    State(state): State<AppState>,
    AuthUser(principal): AuthUser,
) -> Result<Json<WorkflowList>, ApiError> {
    may(&state.gate.policy(), &principal, Action::ReloadWorkflows).map_err(ApiError::forbidden)?;
    let gate = state.gate.clone();
    let policy = tokio::task::spawn_blocking(move || {
        gate.workflows().reload();
        gate.policy_store().reload()
    })
    .await
    .map_err(|_| ApiError::internal())?;
    let registry = state.gate.workflows();
    tracing::info!(by = ?principal.actor, count = registry.len(), "workflows reloaded");
    let mut invalid = registry.problems();
    // A policy file that no longer loads is named with the files that did not load.
    if let (Err(reason), Some(path)) = (policy, state.gate.policy_store().path()) {
        invalid.push(LoadProblem {
            file: path.to_owned(),
            reason,
        });
    }
    let workflows = registry.names();
    Ok(Json(WorkflowList {
        count: workflows.len(),
        workflows,
        invalid: Some(invalid),
    }))
}

/// `202 Accepted` for a run that goes on without the caller.
#[derive(Serialize, ToSchema)]
struct Accepted {
    accepted: bool,
    trace_id: String,
    /// `queued` (asked for asynchronously) or `pending_approval` (the workflow needs a second
    /// human's approval).
    #[schema(example = "queued")]
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

/// Runs a workflow through the governance gate.
///
/// The AIM declaration is validated and bound to the token's identity, the workflow's policy
/// checked, the intent recorded before anything runs and the outcome after. Every refusal of an
/// identified caller is on the audit trail. Asynchronous with `"async": true` or
/// `Prefer: respond-async` (202, then `GET /runs/{trace_id}`); a workflow that requires approval
/// answers 202 `pending_approval`.
#[utoipa::path(post, path = "/workflows/governed/execute", operation_id = "governed_execute", tag = "workflows",
    security(("bearer" = [])),
    params(("Prefer" = Option<String>, Header,
        description = "`respond-async`: answer 202 once the run is accepted.")),
    request_body = crate::http::openapi::GovernanceRequestBody,
    responses(
        (status = 200, description = "The run succeeded.", body = crate::pipeline::RunReport),
        (status = 202, description = "Accepted: queued (asynchronous) or waiting for approval; \
            `Location` is the run's status URL.", body = Accepted,
            headers(("Location" = String, description = "The run's `GET /runs/{trace_id}`."))),
        GovernedRefusals))]
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
#[derive(Serialize, ToSchema)]
struct UngovernedRun {
    success: bool,
    workflow: String,
    outcome: Option<String>,
    trace_id: String,
    steps: Vec<StepReport>,
}

/// The original's ungoverned path.
///
/// With governance enabled nothing runs without an AIM
/// declaration: the refusal names the governed endpoint and is audited. With governance disabled
/// (development only) the workflow runs with the body as its parameters, through the gate like any
/// other run (parameter schema, pool, `/runs`), on the record as `"governed": false`.
#[utoipa::path(post, path = "/workflows/{name}/execute", operation_id = "ungoverned_execute", tag = "workflows",
    security(("bearer" = [])),
    params(("name" = String, Path, description = "The workflow's name.")),
    request_body(content = Option<Object>, description = "The run's parameters (governance \
        disabled only)."),
    responses(
        (status = 200, description = "The ungoverned run succeeded (governance disabled only).",
            body = UngovernedRun),
        UngovernedRefusals))]
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
