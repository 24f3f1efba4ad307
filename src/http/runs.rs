//! `GET /runs`, `GET /runs/{trace_id}`, `POST /runs/{trace_id}/cancel`: the live view of runs.
//! Admins and auditors see every run; anyone else sees the runs they are the accountable human of.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, OpenApi, ToSchema};

use super::openapi::refusals::refusals;
use super::{ApiError, AppState, AuthUser, JsonBody};
use crate::auth::{may, Action, Principal};
use crate::pipeline::{Found, Gate, GateError};
use crate::runs::{Run, RunEvent, RunFilter, RunView};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/runs", get(list))
        .route("/runs/{trace_id}", get(show))
        .route("/runs/{trace_id}/events", get(events))
        .route("/runs/{trace_id}/cancel", post(cancel))
        .route("/runs/{trace_id}/approve", post(approve))
        .route("/runs/{trace_id}/deny", post(deny))
        .route("/runs/{trace_id}/override", post(override_output))
}

#[derive(OpenApi)]
#[openapi(paths(list, show, events, cancel, approve, deny, override_output))]
pub(super) struct Api;

refusals!(
    /// The errors of `GET /runs`.
    ListRefusals,
    Plain,
    ["AUTH_REQUIRED", "INVALID_TOKEN"]
);

refusals!(
    /// The errors of `GET /runs/{trace_id}` and its events.
    ShowRefusals,
    Plain,
    ["AUTH_REQUIRED", "INVALID_TOKEN", "NOT_FOUND"]
);

refusals!(
    /// The errors of `POST /runs/{trace_id}/cancel`.
    CancelRefusals,
    Plain,
    ["AUTH_REQUIRED", "INVALID_TOKEN", "FORBIDDEN_ROLE", "NOT_FOUND", "RUN_FINISHED", "AUDIT_UNAVAILABLE"]
);

refusals!(
    /// The errors of `POST /runs/{trace_id}/approve` and `/deny`.
    DecisionRefusals,
    Plain,
    [
        "AUTH_REQUIRED",
        "INVALID_TOKEN",
        "FORBIDDEN_ROLE",
        "APPROVAL_REFUSED",
        "RUN_NOT_PENDING",
        "APPROVAL_EXPIRED",
        "PAYLOAD_TOO_LARGE",
        "TOO_MANY_RUNS",
        "AUDIT_UNAVAILABLE",
        "SHUTTING_DOWN",
    ]
);

refusals!(
    /// The errors of `POST /runs/{trace_id}/override`.
    OverrideRefusals,
    Plain,
    ["AUTH_REQUIRED", "INVALID_TOKEN", "FORBIDDEN_ROLE", "NOT_FOUND", "PAYLOAD_TOO_LARGE", "AUDIT_UNAVAILABLE"]
);

/// The filters of `GET /runs`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Runs with this status only.
    #[param(value_type = Option<crate::runs::RunStatus>)]
    status: Option<String>,
    /// The workflow's name.
    workflow: Option<String>,
    /// The accountable human's email (admins and auditors; others see only their own runs).
    actor: Option<String>,
    /// At most this many (default 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
}

/// `GET /runs`.
#[derive(Serialize, ToSchema)]
struct RunList {
    count: usize,
    runs: Vec<RunView>,
}

/// Queued, running and recent runs, newest first.
///
/// Admins and auditors see every run; anyone else the runs they are the accountable human of.
#[utoipa::path(get, path = "/runs", operation_id = "list_runs", tag = "runs", security(("bearer" = [])), params(ListQuery),
    responses((status = 200, description = "The runs, newest first.", body = RunList),
        ListRefusals))]
async fn list(
    State(state): State<AppState>,
    AuthUser(principal): AuthUser,
    Query(query): Query<ListQuery>,
) -> Result<Json<RunList>, ApiError> {
    let limit = match query.limit.as_deref() {
        None | Some("") => 100,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| ApiError::validation("limit must be a whole number from 1 to 1000"))?,
    };
    const STATUSES: [&str; 7] = [
        "pending_approval",
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
        )));
    }
    let actor = if may(&state.gate.policy(), &principal, Action::SeeAllRuns).is_ok() {
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
    let runs = state.gate.list_runs(&filter, limit).await;
    Ok(Json(RunList {
        count: runs.len(),
        runs,
    }))
}

fn visible(
    state: &AppState,
    principal: &Principal,
    trace_id: &str,
) -> Result<std::sync::Arc<Run>, ApiError> {
    Ok(state.gate.visible_run(principal, trace_id)?)
}

/// One run, with its steps.
#[utoipa::path(get, path = "/runs/{trace_id}", operation_id = "get_run", tag = "runs", security(("bearer" = [])),
    params(("trace_id" = String, Path, description = "The run's trace id.")),
    responses((status = 200, description = "The run.", body = crate::runs::RunView),
        ShowRefusals))]
async fn show(
    State(state): State<AppState>,
    AuthUser(principal): AuthUser,
    Path(trace_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let view = match state.gate.find_run(&principal, &trace_id).await? {
        Found::Here(run) => serde_json::to_value(run.view(true)).unwrap_or(Value::Null),
        // Another instance owns it: its row (steps once it has ended).
        Found::Shared(row) => row.view_with_steps(),
    };
    Ok(Json(view))
}

/// `POST /runs/{trace_id}/cancel`.
#[derive(Serialize, ToSchema)]
struct Cancelling {
    trace_id: String,
    status: &'static str,
    cancelled_by: String,
}

/// Stops a queued or running run, or withdraws one waiting for approval.
///
/// Its accountable human or an admin. A running command step's whole process group is killed;
/// the outcome is recorded as `cancelled`.
#[utoipa::path(post, path = "/runs/{trace_id}/cancel", operation_id = "cancel_run", tag = "runs", security(("bearer" = [])),
    params(("trace_id" = String, Path, description = "The run's trace id.")),
    responses((status = 200, description = "The run is being stopped.", body = Cancelling),
        CancelRefusals))]
async fn cancel(
    State(state): State<AppState>,
    AuthUser(principal): AuthUser,
    Path(trace_id): Path<String>,
) -> Result<Json<Cancelling>, ApiError> {
    let by = state.gate.cancel(&principal, &trace_id).await?;
    Ok(Json(Cancelling {
        trace_id,
        status: "cancelling",
        cancelled_by: by,
    }))
}

/// The optional body of a decision.
fn reason(body: Option<Value>) -> Result<Option<String>, ApiError> {
    match body {
        None => Ok(None),
        Some(Value::Object(map)) => match map.get("reason") {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) if !text.trim().is_empty() => {
                Ok(Some(text.trim().to_owned()))
            }
            Some(_) => Err(ApiError::validation("reason must be a non-empty string")),
        },
        Some(_) => Err(ApiError::validation("body must be a JSON object")),
    }
}

/// `POST /runs/{trace_id}/approve`.
#[derive(Serialize, ToSchema)]
struct Approved {
    trace_id: String,
    status: &'static str,
    approved_by: Option<String>,
    status_url: String,
}

/// `POST /runs/{trace_id}/deny`.
#[derive(Serialize, ToSchema)]
struct Denied {
    trace_id: String,
    status: &'static str,
    denied_by: Option<String>,
}

/// A second human approves a run waiting for approval: it is queued and runs.
#[utoipa::path(post, path = "/runs/{trace_id}/approve", operation_id = "approve_run", tag = "runs", security(("bearer" = [])),
    params(("trace_id" = String, Path, description = "The run's trace id.")),
    request_body(content = Option<crate::http::openapi::Decision>,
        description = "Optional: why."),
    responses((status = 202, description = "Approved: the run is queued.", body = Approved),
        DecisionRefusals))]
async fn approve(
    State(state): State<AppState>,
    AuthUser(principal): AuthUser,
    Path(trace_id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<Approved>), ApiError> {
    let reason = reason(body)?;
    state
        .gate
        .decide(&trace_id, &principal, true, reason)
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Approved {
            status: "queued",
            approved_by: principal.actor,
            status_url: format!("/runs/{trace_id}"),
            trace_id,
        }),
    ))
}

/// A second human denies a run waiting for approval (a reason is required).
#[utoipa::path(post, path = "/runs/{trace_id}/deny", operation_id = "deny_run", tag = "runs", security(("bearer" = [])),
    params(("trace_id" = String, Path, description = "The run's trace id.")),
    request_body = crate::http::openapi::Decision,
    responses((status = 200, description = "Denied: the run ends as `rejected`.", body = Denied),
        DecisionRefusals))]
async fn deny(
    State(state): State<AppState>,
    AuthUser(principal): AuthUser,
    Path(trace_id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Json<Denied>, ApiError> {
    let Some(reason) = reason(body)? else {
        return Err(ApiError::validation(
            "A denial needs a reason: {\"reason\": \"...\"}",
        ));
    };
    state
        .gate
        .decide(&trace_id, &principal, false, Some(reason))
        .await?;
    Ok(Json(Denied {
        trace_id,
        status: "rejected",
        denied_by: principal.actor,
    }))
}

/// A run's events, as they happen.
///
/// Server-sent events: `run` (the whole run so far), then `status`, `step_started` and
/// `step_finished` (with the step's output) as they happen, until the run ends. When the server
/// shuts down, a `shutdown` event says when runs still going will be cancelled; the stream goes on
/// to the run's end (its last `status`), and ends at the latest once the server has drained its
/// runs, so that no watcher holds the server up.
#[utoipa::path(get, path = "/runs/{trace_id}/events", operation_id = "run_events", tag = "runs", security(("bearer" = [])),
    params(("trace_id" = String, Path, description = "The run's trace id.")),
    responses((status = 200, description = "Server-sent events: `run` (a `RunView`), then \
        `status`, `step_started`, `step_finished` (a `StepReport`) and `lagged` (events a slow \
        reader missed), until the run ends.", content_type = "text/event-stream", body = String),
        ShowRefusals))]
async fn events(
    State(state): State<AppState>,
    AuthUser(principal): AuthUser,
    Path(trace_id): Path<String>,
) -> Result<Sse<impl futures_util::Stream<Item = Result<Event, std::convert::Infallible>>>, ApiError>
{
    let run = match state.gate.find_run(&principal, &trace_id).await? {
        Found::Here(run) => run,
        Found::Shared(row) => {
            // Another instance runs it: its row now, then what that instance publishes.
            let snapshot = Event::default()
                .event("run")
                .data(row.view_with_steps().to_string());
            let rest =
                futures_util::StreamExt::map(state.gate.follow_shared(*row), |(name, data)| {
                    Ok(Event::default().event(name).data(data))
                });
            let stream =
                futures_util::StreamExt::chain(futures_util::stream::iter([Ok(snapshot)]), rest);
            return Ok(
                Sse::new(futures_util::StreamExt::boxed(stream)).keep_alive(KeepAlive::default())
            );
        }
    };
    // Subscribe before the snapshot, so nothing falls between them.
    let live = run.subscribe();
    let snapshot = Event::default()
        .event("run")
        .data(serde_json::to_string(&run.view(true)).unwrap_or_default());
    let first = futures_util::stream::iter([Ok(snapshot)]);
    // Nothing to follow when the run had already ended.
    let follow = live.map(|live| Follow {
        live,
        gate: state.gate.clone(),
        announced: false,
    });
    let rest = futures_util::stream::unfold(follow, |follow| async move {
        let (event, more) = follow?.next().await?;
        Some((Ok(event), more))
    });
    let stream = futures_util::StreamExt::chain(first, rest);
    Ok(Sse::new(futures_util::StreamExt::boxed(stream)).keep_alive(KeepAlive::default()))
}

/// A run followed over server-sent events.
struct Follow {
    live: tokio::sync::broadcast::Receiver<RunEvent>,
    gate: Gate,
    /// Whether the `shutdown` event went out.
    announced: bool,
}

impl Follow {
    /// The next event, and the follower when more may come.
    async fn next(mut self) -> Option<(Event, Option<Follow>)> {
        use tokio::sync::broadcast::error::RecvError;
        enum Next {
            Shutdown,
            Live(Result<RunEvent, RecvError>),
            Drained,
        }
        let next = {
            let draining = self.gate.draining();
            tokio::select! {
                biased;
                () = draining.began(), if !self.announced => Next::Shutdown,
                received = self.live.recv() => Next::Live(received),
                () = draining.over() => Next::Drained,
            }
        };
        match next {
            Next::Shutdown => {
                self.announced = true;
                let cancel_at = self
                    .gate
                    .draining()
                    .cancel_at()
                    .map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
                let data = serde_json::json!({
                    "event": "shutdown",
                    "reason": "the server is shutting down: runs still going at cancel_at are cancelled",
                    "cancel_at": cancel_at,
                });
                let sse = Event::default().event("shutdown").data(data.to_string());
                Some((sse, Some(self)))
            }
            Next::Live(Ok(event)) => {
                let finished = matches!(&event, RunEvent::Status { status } if !status.is_active());
                let data = serde_json::to_string(&event).unwrap_or_default();
                let sse = Event::default().event(event.name()).data(data);
                Some((sse, (!finished).then_some(self)))
            }
            // A slow reader missed events: say so and go on.
            Next::Live(Err(RecvError::Lagged(missed))) => {
                let sse = Event::default()
                    .event("lagged")
                    .data(format!("{{\"missed\":{missed}}}"));
                Some((sse, Some(self)))
            }
            Next::Live(Err(RecvError::Closed)) | Next::Drained => None,
        }
    }
}

/// A person replaced a step's output.
#[derive(Deserialize, ToSchema)]
#[schema(as = Override)]
struct OverrideBody {
    /// The step's id.
    #[schema(required = true, nullable = false)]
    step: Option<String>,
    /// What the person put in its place (kept by the caller; the record has its SHA-256).
    #[schema(required = true, nullable = false)]
    replacement: Option<String>,
    /// Why (not empty).
    #[schema(required = true, nullable = false, min_length = 1)]
    reason: Option<String>,
}

/// `POST /runs/{trace_id}/override`.
#[derive(Serialize, ToSchema)]
struct OverrideRecorded {
    trace_id: String,
    step: String,
    recorded: bool,
    audit_seq: u64,
    before_sha256: String,
    after_sha256: String,
}

/// Records that a person replaced a step's output.
///
/// Human override tracking: a person replaced or edited a step's (typically an AI's) output. The
/// audit trail records who, which step, the SHA-256 of the output before and of the replacement, and
/// why; the replacement itself stays with the caller.
#[utoipa::path(post, path = "/runs/{trace_id}/override", operation_id = "override_step_output", tag = "runs", security(("bearer" = [])),
    params(("trace_id" = String, Path, description = "The run's trace id.")),
    request_body = OverrideBody,
    responses((status = 200, description = "On the record.", body = OverrideRecorded),
        OverrideRefusals))]
async fn override_output(
    State(state): State<AppState>,
    AuthUser(principal): AuthUser,
    Path(trace_id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Json<OverrideRecorded>, ApiError> {
    let Some(body) = body else {
        return Err(ApiError::validation(
            "Request body required: {\"step\", \"replacement\", \"reason\"}",
        ));
    };
    let body: OverrideBody = serde_json::from_value(body)
        .map_err(|e| ApiError::validation(format!("Invalid override: {e}")))?;
    let (Some(step_id), Some(replacement), Some(reason)) = (
        body.step,
        body.replacement,
        body.reason.filter(|r| !r.trim().is_empty()),
    ) else {
        return Err(ApiError::validation(
            "step, replacement and a non-empty reason are required",
        ));
    };
    let run = state
        .gate
        .runs()
        .get(&trace_id)
        .ok_or_else(|| GateError::RunNotFound(trace_id.clone()))?;
    let own = crate::pipeline::owns(&principal, &run);
    let target = crate::pipeline::target_of(&run);
    let granted = match may(
        &state.gate.policy(),
        &principal,
        Action::Override { own, target },
    ) {
        Ok(granted) => granted,
        // A run the caller may not even see is not theirs to hear about.
        Err(_) if visible(&state, &principal, &trace_id).is_err() => {
            return Err(GateError::RunNotFound(trace_id).into())
        }
        Err(forbidden) => return Err(ApiError::forbidden(forbidden)),
    };
    crate::auth::apikey::in_person(&principal, "record an override")
        .map_err(ApiError::forbidden)?;
    let step = run.step(&step_id).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!("Run {trace_id} has no finished step '{step_id}'"),
        )
    })?;
    let receipt = state
        .gate
        .record_override(
            &run,
            &step,
            &principal,
            &replacement,
            &reason,
            granted.policy_rule(),
        )
        .await?;
    Ok(Json(OverrideRecorded {
        trace_id,
        step: step_id,
        recorded: true,
        audit_seq: receipt.seq,
        before_sha256: crate::audit::format::sha256_tagged(step.stdout.as_bytes()),
        after_sha256: crate::audit::format::sha256_tagged(replacement.as_bytes()),
    }))
}
