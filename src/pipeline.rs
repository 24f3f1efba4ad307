//! The governance gate: the one execution pipeline every entry point (HTTP, Slack, CLI) goes through.
//!
//! parse -> validate -> authorize -> audit the intent (durable) -> run -> audit the outcome -> report.
//! Every refusal of an identified caller is audited too. Nothing runs unless its `started` record is
//! durable; when the audit trail cannot record, the gate refuses (fail closed).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::audit::{AuditLog, Outcome, Record, RunRecord};
use crate::auth::Principal;
use crate::governance::{summary, GovernanceRequest, IdentityMismatch, Rejection};
use crate::metrics::{drag_mode_label, Metrics};
use crate::runs::{Run, RunRegistry, RunStatus};
use crate::workflow::{self, InvalidName, Runner, StepReport, Workflow, WorkflowRegistry};

/// Why the gate refused a run, or could not record it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GateError {
    #[error("Request body required")]
    BodyRequired,
    /// The body could not be read as JSON (or was too large); `code` is the edge's code for it.
    #[error("{message}")]
    Unreadable { code: &'static str, message: String },
    #[error("{}", .0.headline())]
    Invalid(Rejection),
    #[error("AIM actor email '{}' does not match the authenticated identity '{}'", .0.declared, .0.authenticated)]
    ActorMismatch(IdentityMismatch),
    #[error("{0}")]
    InvalidName(InvalidName),
    #[error("Workflow not found: {0}")]
    WorkflowNotFound(String),
    #[error("DRAG mode '{mode}' is not allowed for this workflow (allowed: {allowed})")]
    DragModeNotAllowed { mode: String, allowed: String },
    #[error("Role '{role}' may not run this workflow (allowed: {allowed})")]
    ForbiddenRole { role: String, allowed: String },
    #[error("Invalid parameters: {}", .0.iter().map(|v| format!("{}: {}", v.field, v.message)).collect::<Vec<_>>().join("; "))]
    InvalidParameters(Vec<crate::governance::Violation>),
    #[error("This workflow requires approval by a second human ({roles}); approve it over HTTP (POST /runs/{{trace_id}}/approve), not from here")]
    ApprovalRequired { roles: String },
    #[error("{0}")]
    ApprovalRefused(String),
    #[error("The approval request expired at {0}")]
    ApprovalExpired(String),
    #[error("{0}")]
    NotPending(String),
    #[error("Trace id '{0}' belongs to a run that is still queued, running or waiting for approval; use a new trace id")]
    TraceInUse(String),
    #[error("Too many runs in progress and waiting; try again shortly")]
    TooManyRuns,
    #[error("The run was cancelled before it started")]
    Cancelled,
    #[error("Ungoverned execution is disabled: POST /workflows/governed/execute with an AIM declaration (actor, input, mission) and a DRAG mode")]
    GovernanceRequired,
    #[error("{0}")]
    AuditUnavailable(String),
}

impl GateError {
    /// The stable machine code.
    pub fn code(&self) -> &'static str {
        match self {
            GateError::BodyRequired | GateError::InvalidName(_) => "VALIDATION_ERROR",
            GateError::Unreadable { code, .. } => code,
            GateError::Invalid(rejection) => rejection.code(),
            GateError::ActorMismatch(_) => "ACTOR_MISMATCH",
            GateError::WorkflowNotFound(_) => "WORKFLOW_NOT_FOUND",
            GateError::GovernanceRequired => "GOVERNANCE_REQUIRED",
            GateError::TooManyRuns => "TOO_MANY_RUNS",
            GateError::Cancelled => "CANCELLED",
            GateError::DragModeNotAllowed { .. } => "DRAG_MODE_NOT_ALLOWED",
            GateError::ForbiddenRole { .. } => "FORBIDDEN_ROLE",
            GateError::InvalidParameters(_) => "INVALID_PARAMETERS",
            GateError::ApprovalRequired { .. } => "APPROVAL_REQUIRED",
            GateError::ApprovalRefused(_) => "APPROVAL_REFUSED",
            GateError::ApprovalExpired(_) => "APPROVAL_EXPIRED",
            GateError::NotPending(_) => "RUN_NOT_PENDING",
            GateError::TraceInUse(_) => "TRACE_ID_IN_USE",
            GateError::AuditUnavailable(_) => "AUDIT_UNAVAILABLE",
        }
    }

    /// How the refusal is recorded: a problem with the declaration is `rejected`; a problem with the
    /// named workflow is a `failure`, as the contract has it.
    fn outcome(&self) -> Outcome {
        match self {
            GateError::InvalidName(_)
            | GateError::WorkflowNotFound(_)
            | GateError::AuditUnavailable(_) => Outcome::Failure,
            _ => Outcome::Rejected,
        }
    }
}

/// A request to run, from any entry point.
pub struct RunRequest {
    pub trace_id: String,
    pub principal: Principal,
    /// The governance request body; `None` when the body was empty.
    pub body: Option<Value>,
}

/// What a run that went through the gate produced.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub trace_id: String,
    pub workflow_name: String,
    pub success: bool,
    /// The runner's description of what happened (success).
    pub outcome: Option<String>,
    /// Why the run failed (failure).
    pub error: Option<String>,
    pub audit_logged: bool,
    pub governance_summary: String,
    pub duration_seconds: f64,
    /// What each step did (outputs capped and redacted).
    pub steps: Vec<StepReport>,
    /// Stopped by a cancellation.
    pub cancelled: bool,
    /// The failure's code (`WORKFLOW_FAILED`, `PRESCRIPTIVE_LANGUAGE`, `CANCELLED`); `None` on success.
    pub code: Option<&'static str>,
}

/// How many runs may execute and wait at once.
#[derive(Debug, Clone, Copy)]
pub struct RunLimits {
    pub workers: usize,
    pub queue: usize,
}

/// The worker pool: a global limit, a per-workflow limit, and a bounded number of waiting runs.
struct Pool {
    workers: Arc<Semaphore>,
    queue: usize,
    waiting: AtomicUsize,
    per_workflow: Mutex<HashMap<String, Arc<Semaphore>>>,
}

/// Held while a run executes.
struct Slot {
    _worker: OwnedSemaphorePermit,
    _workflow: Option<OwnedSemaphorePermit>,
}

impl Pool {
    /// Waits for a worker (and a slot of the workflow's own limit); `None` when the queue is full.
    async fn admit(&self, workflow: &str, limit: Option<u64>) -> Option<Slot> {
        let per_workflow = limit.map(|limit| {
            let permits = usize::try_from(limit)
                .unwrap_or(usize::MAX)
                .min(Semaphore::MAX_PERMITS);
            let mut map = self
                .per_workflow
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            Arc::clone(
                map.entry(workflow.to_owned())
                    .or_insert_with(|| Arc::new(Semaphore::new(permits))),
            )
        });
        // Fast path: free capacity right now.
        if let Ok(worker) = Arc::clone(&self.workers).try_acquire_owned() {
            match &per_workflow {
                None => {
                    return Some(Slot {
                        _worker: worker,
                        _workflow: None,
                    })
                }
                Some(own) => {
                    if let Ok(own) = Arc::clone(own).try_acquire_owned() {
                        return Some(Slot {
                            _worker: worker,
                            _workflow: Some(own),
                        });
                    }
                }
            }
        }
        // Otherwise wait, if there is room to wait. The guard leaves the queue however the wait
        // ends (admitted, or the run was cancelled and this future dropped).
        struct Waiting<'a>(&'a AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        let waiting = Waiting(&self.waiting);
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.queue {
            return None;
        }
        let own = match &per_workflow {
            Some(own) => Arc::clone(own).acquire_owned().await.ok(),
            None => None,
        };
        let worker = Arc::clone(&self.workers).acquire_owned().await.ok();
        drop(waiting);
        Some(Slot {
            _worker: worker?,
            _workflow: own,
        })
    }
}

/// The gate. Cheap to clone.
#[derive(Clone)]
pub struct Gate {
    audit: Option<AuditLog>,
    workflows: Arc<WorkflowRegistry>,
    runner: Runner,
    metrics: Arc<Metrics>,
    pool: Arc<Pool>,
    runs: Arc<RunRegistry>,
    approvals: Arc<Mutex<HashMap<String, Pending>>>,
}

impl Gate {
    /// `audit` is `None` when governance auditing is disabled (development only).
    pub fn new(
        audit: Option<AuditLog>,
        workflows: Arc<WorkflowRegistry>,
        runner: Runner,
        metrics: Arc<Metrics>,
        limits: RunLimits,
    ) -> Gate {
        let pool = Pool {
            workers: Arc::new(Semaphore::new(
                limits.workers.clamp(1, Semaphore::MAX_PERMITS),
            )),
            queue: limits.queue,
            waiting: AtomicUsize::new(0),
            per_workflow: Mutex::new(HashMap::new()),
        };
        Gate {
            audit,
            workflows,
            runner,
            metrics,
            pool: Arc::new(pool),
            runs: Arc::new(RunRegistry::default()),
            approvals: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    pub fn audit(&self) -> Option<&AuditLog> {
        self.audit.as_ref()
    }

    pub fn workflows(&self) -> &WorkflowRegistry {
        &self.workflows
    }

    pub fn runner(&self) -> &Runner {
        &self.runner
    }

    /// Runs one governed request end to end.
    pub async fn execute(&self, request: RunRequest) -> Result<RunReport, GateError> {
        self.prepare(request).await?.run().await
    }

    /// Everything before a run may queue: parse, validate, bind the identity, check the workflow
    /// and its policy. Refusals are audited. The accepted run is registered as `queued`.
    pub async fn prepare(&self, request: RunRequest) -> Result<Prepared, GateError> {
        self.prepare_counted(request, true).await
    }

    /// [`Gate::prepare`]; `count` says whether the request counts in `aim_requests_total` (not
    /// when a restart re-checks a request counted when it came).
    async fn prepare_counted(
        &self,
        request: RunRequest,
        count: bool,
    ) -> Result<Prepared, GateError> {
        let RunRequest {
            trace_id,
            principal,
            body,
        } = request;
        let body = match body {
            Some(body) if !is_empty_body(&body) => body,
            _ => {
                return Err(self
                    .refuse(&trace_id, &principal, &Value::Null, GateError::BodyRequired)
                    .await)
            }
        };
        let mut governed = match GovernanceRequest::parse(&body) {
            Ok(governed) => governed,
            Err(rejection) => {
                self.metrics.validation_failure(&rejection, &body);
                return Err(self
                    .refuse(&trace_id, &principal, &body, GateError::Invalid(rejection))
                    .await);
            }
        };
        if count {
            let known_name = self
                .workflows
                .get(&governed.workflow_name)
                .map(|w| w.name.clone());
            self.metrics.aim_requests.inc(&[
                governed.drag_mode.as_str(),
                // The token's role, not the declaration's free text: labels must stay a bounded set.
                principal.role.as_str(),
                known_name.as_deref().unwrap_or("unknown"),
            ]);
        }
        if let Some(identity) = &principal.actor {
            if let Err(mismatch) = governed.aim.bind_identity(identity) {
                return Err(self
                    .refuse(
                        &trace_id,
                        &principal,
                        &body,
                        GateError::ActorMismatch(mismatch),
                    )
                    .await);
            }
        }
        // From here on the record carries the declaration as bound (email filled in from the token).
        let readable = record_view(&governed);
        if let Err(invalid) = workflow::validate_name(&governed.workflow_name) {
            return Err(self
                .refuse(
                    &trace_id,
                    &principal,
                    &readable,
                    GateError::InvalidName(invalid),
                )
                .await);
        }
        let Some(definition) = self.workflows.get(&governed.workflow_name) else {
            let missing = GateError::WorkflowNotFound(governed.workflow_name.clone());
            return Err(self.refuse(&trace_id, &principal, &readable, missing).await);
        };
        // The workflow's own policy: DRAG modes, roles, parameters, approval.
        if let Some(allowed) = &definition.drag_modes {
            if !allowed.contains(&governed.drag_mode) {
                let refusal = GateError::DragModeNotAllowed {
                    mode: governed.drag_mode.to_string(),
                    allowed: allowed
                        .iter()
                        .map(|m| m.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                };
                return Err(self.refuse(&trace_id, &principal, &readable, refusal).await);
            }
        }
        if let Some(roles) = &definition.roles {
            if !roles.iter().any(|r| r == &principal.role) {
                let refusal = GateError::ForbiddenRole {
                    role: principal.role.clone(),
                    allowed: roles.join(", "),
                };
                return Err(self.refuse(&trace_id, &principal, &readable, refusal).await);
            }
        }
        let parameters = match definition.check_parameters(&governed.parameters) {
            Ok(parameters) => parameters,
            Err(problems) => {
                let refusal = GateError::InvalidParameters(problems);
                return Err(self.refuse(&trace_id, &principal, &readable, refusal).await);
            }
        };
        // One live run per trace id: the id names the run in /runs, in approvals and on the record.
        let live_already = self
            .runs
            .get(&trace_id)
            .is_some_and(|run| run.status().is_active())
            || lock(&self.approvals)
                .get(&trace_id)
                .is_some_and(|p| !p.expiry_recorded);
        if live_already {
            let refusal = GateError::TraceInUse(trace_id.clone());
            return Err(self.refuse(&trace_id, &principal, &readable, refusal).await);
        }
        // The record shows the parameters the run really uses (defaults filled in).
        let mut readable = readable;
        readable["parameters"] = Value::Object(parameters.clone());
        let governance_summary = summary(&governed);
        let live = self.runs.register(
            &trace_id,
            &definition.name,
            governed.drag_mode.as_str(),
            governed.aim.actor().email().map(str::to_owned),
        );
        Ok(Prepared {
            gate: self.clone(),
            trace_id,
            principal,
            governed,
            definition,
            parameters,
            readable,
            governance_summary,
            live,
            approved: false,
        })
    }
}

/// A governed request that passed every check, registered and waiting to run.
pub struct Prepared {
    gate: Gate,
    trace_id: String,
    principal: Principal,
    governed: GovernanceRequest,
    definition: Arc<Workflow>,
    parameters: Map<String, Value>,
    readable: Value,
    governance_summary: String,
    live: Arc<Run>,
    /// A second human approved it (for workflows that require approval).
    approved: bool,
}

impl Prepared {
    pub fn trace_id(&self) -> &str {
        &self.trace_id
    }

    /// The workflow's approval policy, when a second human must approve before the run.
    pub fn approval(&self) -> Option<&crate::workflow::Approval> {
        self.definition.approval.as_ref().filter(|a| a.required)
    }

    /// Records that the run waits for approval and parks it; a decision resumes or ends it.
    /// Returns when the request expires.
    pub async fn hold_for_approval(self) -> Result<DateTime<Utc>, GateError> {
        let expires_seconds = self.approval().map_or(3600, |a| a.expires_seconds);
        let expires_at = Utc::now()
            + chrono::Duration::seconds(
                i64::try_from(expires_seconds)
                    .unwrap_or(i64::MAX / 2)
                    .min(10 * 365 * 86_400),
            );
        let gate = self.gate.clone();
        let pending = Pending {
            prepared: self,
            expires_at,
            expiry_recorded: false,
        };
        let requester = pending.prepared.principal.clone();
        if let Err(unavailable) = gate
            .record_decision(&pending, "requested", &requester, None)
            .await
        {
            pending
                .prepared
                .live
                .finish(RunStatus::Rejected, None, Some(unavailable.to_string()));
            return Err(unavailable);
        }
        if let Some(pending) = gate.park(pending) {
            // Cancelled while its request was being recorded: withdrawn now, by whoever cancelled.
            let by = pending
                .prepared
                .live
                .canceller()
                .unwrap_or_else(Principal::server);
            let reason = "cancelled while waiting for approval".to_owned();
            let recorded = gate
                .record_decision(&pending, "withdrawn", &by, Some(reason))
                .await;
            pending.prepared.live.finish(
                RunStatus::Cancelled,
                None,
                Some("Cancelled while waiting for approval".to_owned()),
            );
            recorded?;
        }
        Ok(expires_at)
    }

    /// Queues for a worker, writes the intent, runs, writes the outcome. A run that needs approval
    /// and has none is refused here, whatever the entry point.
    pub async fn run(self) -> Result<RunReport, GateError> {
        if let Some(approval) = self.approval().filter(|_| !self.approved) {
            let refusal = GateError::ApprovalRequired {
                roles: approval.approver_roles.join(", "),
            };
            self.live
                .finish(RunStatus::Rejected, None, Some(refusal.to_string()));
            return Err(self
                .gate
                .refuse(&self.trace_id, &self.principal, &self.readable, refusal)
                .await);
        }
        let Prepared {
            gate,
            trace_id,
            principal,
            mut governed,
            definition,
            parameters,
            readable,
            governance_summary,
            live,
            approved: _,
        } = self;
        let this = &gate;
        tracing::info!(trace_id, workflow = governed.workflow_name, actor = governed.aim.actor().name(), mode = %governed.drag_mode, "governed run queued");

        // A worker, within the workflow's own limit; a full queue is refused (429). A run cancelled
        // while it waits leaves the queue at once.
        let mut cancellation = live.cancellation();
        let admitted = tokio::select! {
            slot = this.pool.admit(&definition.name, definition.max_concurrent_runs) => Some(slot),
            _ = cancellation.wait_for(|cancelled| *cancelled) => None,
        };
        let slot = match admitted {
            Some(Some(slot)) => Some(slot),
            Some(None) => {
                live.finish(
                    RunStatus::Rejected,
                    None,
                    Some(GateError::TooManyRuns.to_string()),
                );
                return Err(this
                    .refuse(&trace_id, &principal, &readable, GateError::TooManyRuns)
                    .await);
            }
            None => None,
        };
        if slot.is_none() || live.cancelled_by().is_some() {
            let error = "Cancelled while queued".to_owned();
            let record = run_record(
                &trace_id,
                &principal,
                &readable,
                Outcome::Cancelled,
                Some(error.clone()),
                Some("CANCELLED"),
                None,
            );
            let recorded = this.record(record, governed.drag_mode.as_str()).await;
            live.finish(RunStatus::Cancelled, None, Some(error));
            recorded?;
            return Err(GateError::Cancelled);
        }
        // Durations count from admission: time in the queue is not the run's.
        let started = Instant::now();

        // Write-ahead: the intent is durable before anything runs.
        let intent = run_record(
            &trace_id,
            &principal,
            &readable,
            Outcome::Started,
            None,
            None,
            None,
        );
        if let Err(unavailable) = this.record(intent, governed.drag_mode.as_str()).await {
            live.finish(RunStatus::Rejected, None, Some(unavailable.to_string()));
            return Err(unavailable);
        }
        live.set_running();

        let result = this
            .runner
            .run(
                &definition,
                &parameters,
                &trace_id,
                Some(governed.drag_mode),
                Some(&live),
            )
            .await;
        let duration = started.elapsed().as_secs_f64();
        let mut failure_code = None;
        let (outcome, message, error, steps) = match result {
            Ok(output) => (Outcome::Success, Some(output.outcome), None, output.steps),
            Err(failure) if failure.cancelled => {
                (Outcome::Cancelled, None, Some(failure.error), failure.steps)
            }
            Err(failure) => {
                failure_code = failure.code;
                (Outcome::Failure, None, Some(failure.error), failure.steps)
            }
        };
        for found in steps.iter().flat_map(|s| &s.violations) {
            this.metrics
                .prescriptive_language_detections
                .inc(&[governed.drag_mode.as_str(), &found.phrase]);
        }
        let status = match outcome {
            Outcome::Success => RunStatus::Succeeded,
            Outcome::Cancelled => RunStatus::Cancelled,
            _ => RunStatus::Failed,
        };

        let name = governed.workflow_name.as_str();
        let mode = governed.drag_mode.as_str();
        this.metrics
            .workflow_executions
            .inc(&[name, outcome.as_str()]);
        this.metrics
            .governed_workflow_duration
            .observe(&[name, outcome.as_str(), mode], duration);
        if outcome == Outcome::Failure {
            this.metrics
                .workflow_execution_errors
                .inc(&[name, "run_failed"]);
        }
        let code = match outcome {
            Outcome::Success => None,
            Outcome::Cancelled => Some("CANCELLED"),
            _ => Some(failure_code.unwrap_or("WORKFLOW_FAILED")),
        };
        let mut record = run_record(
            &trace_id,
            &principal,
            &readable,
            outcome,
            error.clone(),
            code,
            Some(duration),
        );
        if let Record::Run(run) = &mut record {
            run.steps = step_summaries(&steps);
        }
        // The live status turns final only once the outcome is on the record.
        if this.record(record, mode).await.is_err() {
            let unavailable = GateError::AuditUnavailable(format!(
                "The run finished but its outcome could not be recorded (its start is on the record as trace {trace_id}); check the run before retrying"
            ));
            live.finish(RunStatus::Failed, message, Some(unavailable.to_string()));
            return Err(unavailable);
        }
        live.finish(status, message.clone(), error.clone());
        Ok(RunReport {
            trace_id,
            workflow_name: std::mem::take(&mut governed.workflow_name),
            success: outcome == Outcome::Success,
            outcome: message,
            error,
            audit_logged: this.audit.is_some(),
            governance_summary,
            duration_seconds: duration,
            cancelled: outcome == Outcome::Cancelled,
            code,
            steps,
        })
    }
}

/// A run parked until a second human decides.
struct Pending {
    prepared: Prepared,
    expires_at: DateTime<Utc>,
    /// The expiry is on the record (by the sweep or a late decision); the entry stays a while so
    /// that late deciders hear "expired" rather than "not pending".
    expiry_recorded: bool,
}

/// How long an expired request is remembered after its expiry was recorded.
const EXPIRED_KEPT: chrono::Duration = chrono::Duration::hours(1);

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl Gate {
    /// Audits an approval decision about a parked run; `requested` carries the request itself.
    async fn record_decision(
        &self,
        pending: &Pending,
        decision: &str,
        actor: &Principal,
        reason: Option<String>,
    ) -> Result<(), GateError> {
        let prepared = &pending.prepared;
        let record = Record::Approval {
            trace_id: prepared.trace_id.clone(),
            workflow_name: prepared.definition.name.clone(),
            decision: decision.to_owned(),
            actor: actor.clone(),
            requested_by: prepared.governed.aim.actor().email().map(str::to_owned),
            reason,
            expires_at: rfc3339(pending.expires_at),
            request: (decision == "requested").then(|| prepared.readable.clone()),
        };
        self.record(record, prepared.governed.drag_mode.as_str())
            .await
    }

    /// Parks a run until a decision; gives it back when it was cancelled meanwhile. The check and
    /// the insertion happen under the lock [`Gate::withdraw`] takes, so a cancel is never missed.
    fn park(&self, pending: Pending) -> Option<Pending> {
        let mut approvals = lock(&self.approvals);
        if pending.prepared.live.cancelled_by().is_some() {
            return Some(pending);
        }
        pending.prepared.live.set_status(RunStatus::PendingApproval);
        let trace_id = pending.prepared.trace_id.clone();
        approvals.insert(trace_id, pending);
        None
    }

    /// A second human's decision on a run waiting for approval. Approved: the run is queued and
    /// returned to be run. A refusal (not an approver, no named human, self-approval) leaves the run
    /// waiting; an expired request ends it. Every decision and refusal is audited, the decider as actor.
    pub async fn decide(
        &self,
        trace_id: &str,
        approver: &Principal,
        approve: bool,
        reason: Option<String>,
    ) -> Result<Option<Prepared>, GateError> {
        let pending = lock(&self.approvals).remove(trace_id);
        let Some(mut pending) = pending else {
            return Err(GateError::NotPending(format!(
                "Run {trace_id} is not waiting for approval"
            )));
        };
        let prepared = &pending.prepared;
        let roles = prepared
            .approval()
            .map(|a| a.approver_roles.clone())
            .unwrap_or_default();
        let requester = prepared.governed.aim.actor().email();
        let same_human = |other: Option<&str>| matches!((approver.actor.as_deref(), other), (Some(a), Some(b)) if a.eq_ignore_ascii_case(b));
        let expired = Utc::now() > pending.expires_at;
        let refusal = if expired {
            Some(GateError::ApprovalExpired(rfc3339(pending.expires_at)))
        } else if !roles.iter().any(|r| r == &approver.role) {
            Some(GateError::ApprovalRefused(format!(
                "Role '{}' may not decide this run (approvers: {})",
                approver.role,
                roles.join(", ")
            )))
        } else if approver.actor.is_none() {
            Some(GateError::ApprovalRefused(
                "A decision needs a named human: the token has no actor".to_owned(),
            ))
        } else if same_human(requester) || same_human(prepared.principal.actor.as_deref()) {
            Some(GateError::ApprovalRefused(
                "Self-approval is refused: a different human must decide".to_owned(),
            ))
        } else {
            None
        };
        let decision = match (&refusal, approve) {
            // The expiry itself is the server's finding, recorded once; a later attempt is refused.
            (Some(_), _) if expired && !pending.expiry_recorded => "expired",
            (Some(_), _) => "refused",
            (None, true) => "approved",
            (None, false) => "denied",
        };
        let (actor, why) = if decision == "expired" {
            let who = approver.actor.as_deref().unwrap_or(&approver.role);
            (
                Principal::server(),
                Some(format!(
                    "nobody decided before the request expired (found when {who} tried to decide)"
                )),
            )
        } else {
            (
                approver.clone(),
                reason
                    .clone()
                    .or_else(|| refusal.as_ref().map(ToString::to_string)),
            )
        };
        let recorded = self.record_decision(&pending, decision, &actor, why).await;
        if let Err(unavailable) = recorded {
            lock(&self.approvals).insert(trace_id.to_owned(), pending);
            return Err(unavailable);
        }
        match refusal {
            Some(refusal) => {
                if expired {
                    pending.prepared.live.finish(
                        RunStatus::Rejected,
                        None,
                        Some(refusal.to_string()),
                    );
                    pending.expiry_recorded = true;
                }
                lock(&self.approvals).insert(trace_id.to_owned(), pending);
                Err(refusal)
            }
            None if approve => {
                let mut prepared = pending.prepared;
                prepared.live.set_status(RunStatus::Queued);
                prepared.approved = true;
                Ok(Some(prepared))
            }
            None => {
                let why = format!(
                    "Denied by {}: {}",
                    approver.actor.as_deref().unwrap_or("?"),
                    reason.unwrap_or_default()
                );
                pending
                    .prepared
                    .live
                    .finish(RunStatus::Rejected, None, Some(why));
                Ok(None)
            }
        }
    }

    /// Ends a run that waits for approval without a decision (it was cancelled), on the record.
    pub async fn withdraw(&self, trace_id: &str, by: &Principal) -> Result<(), GateError> {
        let pending = lock(&self.approvals).remove(trace_id);
        let Some(pending) = pending else {
            return Ok(());
        };
        if pending.expiry_recorded {
            return Ok(());
        }
        let reason = "cancelled while waiting for approval".to_owned();
        if let Err(unavailable) = self
            .record_decision(&pending, "withdrawn", by, Some(reason))
            .await
        {
            lock(&self.approvals).insert(trace_id.to_owned(), pending);
            return Err(unavailable);
        }
        pending.prepared.live.finish(
            RunStatus::Cancelled,
            None,
            Some("Cancelled while waiting for approval".to_owned()),
        );
        Ok(())
    }

    /// Ends the approval requests whose time is up: each gets an `expired` record by the server
    /// (role `system`) and its run turns `rejected`. Requests expired long ago are forgotten.
    /// Returns how many expired now.
    pub async fn expire_approvals(&self) -> usize {
        let now = Utc::now();
        let due: Vec<Pending> = {
            let mut approvals = lock(&self.approvals);
            approvals.retain(|_, p| !(p.expiry_recorded && now - p.expires_at > EXPIRED_KEPT));
            let ids: Vec<String> = approvals
                .iter()
                .filter(|(_, p)| !p.expiry_recorded && now > p.expires_at)
                .map(|(id, _)| id.clone())
                .collect();
            ids.iter().filter_map(|id| approvals.remove(id)).collect()
        };
        let mut expired = 0;
        for mut pending in due {
            let refusal = GateError::ApprovalExpired(rfc3339(pending.expires_at));
            let reason = "nobody decided before the request expired".to_owned();
            if self
                .record_decision(&pending, "expired", &Principal::server(), Some(reason))
                .await
                .is_ok()
            {
                pending.expiry_recorded = true;
                pending
                    .prepared
                    .live
                    .finish(RunStatus::Rejected, None, Some(refusal.to_string()));
                expired += 1;
            }
            // Not recorded (audit unavailable): stays due for the next sweep.
            self.park_as_is(pending);
        }
        expired
    }

    fn park_as_is(&self, pending: Pending) {
        let trace_id = pending.prepared.trace_id.clone();
        lock(&self.approvals).insert(trace_id, pending);
    }

    /// After a restart: parks again every approval request the audit trail shows as requested and
    /// not yet decided, approved, denied, expired or withdrawn, checked again against the current
    /// workflow definitions. A request that no longer passes is refused (audited) and withdrawn on
    /// the record; one whose time ran out while the server was down is recorded as expired.
    /// Returns how many wait again.
    pub async fn restore_approvals(&self) -> Result<usize, GateError> {
        let Some(audit) = &self.audit else {
            return Ok(0);
        };
        let path = audit.status().path;
        // A log that is not a regular file (a device, as in the failure tests) holds nothing to
        // restore, and reading /dev/full would never end.
        if !std::fs::metadata(&path).is_ok_and(|m| m.is_file() || m.is_dir()) {
            return Ok(0);
        }
        let filter = crate::audit::query::Filter {
            kind: Some("approval".to_owned()),
            ..Default::default()
        };
        let page = tokio::task::spawn_blocking(move || {
            crate::audit::query::query(&path, &filter, usize::MAX)
        })
        .await
        .map_err(|e| GateError::AuditUnavailable(e.to_string()))?
        .map_err(|e| GateError::AuditUnavailable(format!("cannot read the audit log: {e}")))?;
        // The last word on each trace: a request stays open until a decision other than `refused`.
        let mut open: HashMap<String, (u64, Value)> = HashMap::new();
        for record in page.entries {
            let Some(trace_id) = record["trace_id"].as_str().map(str::to_owned) else {
                continue;
            };
            match record["decision"].as_str() {
                Some("requested") => {
                    let seq = record["seq"].as_u64().unwrap_or_default();
                    open.insert(trace_id, (seq, record));
                }
                Some("refused") => {}
                _ => {
                    open.remove(&trace_id);
                }
            }
        }
        let mut open: Vec<(String, (u64, Value))> = open.into_iter().collect();
        open.sort_by_key(|(_, (seq, _))| *seq);
        let mut restored = 0;
        for (trace_id, (_, record)) in open {
            let expires_at = record["expires_at"]
                .as_str()
                .and_then(|t| crate::audit::query::parse_timestamp(t).ok());
            let principal = serde_json::from_value::<Principal>(record["actor"].clone());
            let (Some(expires_at), Ok(principal), Some(request)) =
                (expires_at, principal, record.get("request").cloned())
            else {
                tracing::warn!(trace_id, "approval request on the record cannot be restored (written by an older version)");
                continue;
            };
            let mode = request["drag_mode"].as_str().unwrap_or_default().to_owned();
            let prepared = match self
                .prepare_counted(
                    RunRequest {
                        trace_id: trace_id.clone(),
                        principal,
                        body: Some(request),
                    },
                    false,
                )
                .await
            {
                Ok(prepared) if prepared.approval().is_none() => {
                    // The workflow no longer asks for approval: a stale request does not run.
                    let why = "the workflow no longer requires approval; request the run again";
                    prepared
                        .live
                        .finish(RunStatus::Rejected, None, Some(why.to_owned()));
                    self.close_restored(&record, &trace_id, expires_at, &mode, why)
                        .await?;
                    continue;
                }
                Ok(prepared) => prepared,
                Err(GateError::AuditUnavailable(why)) => {
                    return Err(GateError::AuditUnavailable(why))
                }
                Err(refusal) => {
                    // The refusal is audited; close the request on the record too.
                    let why = refusal.to_string();
                    self.close_restored(&record, &trace_id, expires_at, &mode, &why)
                        .await?;
                    continue;
                }
            };
            // Nobody can have cancelled a run that exists only since this start-up.
            let _ = self.park(Pending {
                prepared,
                expires_at,
                expiry_recorded: false,
            });
            restored += 1;
        }
        // Those whose time ran out while the server was down end now, on the record.
        self.expire_approvals().await;
        Ok(restored)
    }

    /// Closes a restored request that no longer passes, as `withdrawn` by the server.
    async fn close_restored(
        &self,
        requested: &Value,
        trace_id: &str,
        expires_at: DateTime<Utc>,
        mode: &str,
        why: &str,
    ) -> Result<(), GateError> {
        let record = Record::Approval {
            trace_id: trace_id.to_owned(),
            workflow_name: requested["workflow_name"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            decision: "withdrawn".to_owned(),
            actor: Principal::server(),
            requested_by: requested["requested_by"].as_str().map(str::to_owned),
            reason: Some(format!(
                "after a restart the request no longer passes: {why}"
            )),
            expires_at: rfc3339(expires_at),
            request: None,
        };
        self.record(record, mode).await
    }

    /// Records that `by` replaced or edited the output of `step` of run `trace_id`.
    pub async fn record_override(
        &self,
        run: &Run,
        step: &StepReport,
        by: &Principal,
        after: &str,
        reason: &str,
    ) -> Result<crate::audit::Receipt, GateError> {
        let record = Record::Override {
            trace_id: run.trace_id.clone(),
            workflow_name: run.workflow.clone(),
            step: step.id.clone(),
            actor: by.clone(),
            before_sha256: crate::audit::format::sha256_tagged(step.stdout.as_bytes()),
            after_sha256: crate::audit::format::sha256_tagged(after.as_bytes()),
            reason: reason.to_owned(),
        };
        let unavailable =
            || GateError::AuditUnavailable("The override could not be recorded".to_owned());
        let audit = self.audit.as_ref().ok_or_else(unavailable)?;
        let receipt = audit.append(record).await.map_err(|_| unavailable())?;
        self.metrics.human_overrides.inc(&[run.workflow.as_str()]);
        Ok(receipt)
    }

    /// The live runs.
    pub fn runs(&self) -> &RunRegistry {
        &self.runs
    }

    /// Asks every queued or running run to stop (graceful shutdown past its bound); each records
    /// `cancelled`. Runs waiting for approval keep their `requested` record and are forgotten.
    pub fn cancel_all(&self, by: &str) -> usize {
        self.runs
            .working()
            .iter()
            .filter(|run| run.cancel(by))
            .count()
    }

    /// Refuses an ungoverned run request (the original's `POST /workflows/{name}/execute`) and
    /// records the refusal.
    pub async fn refuse_ungoverned(
        &self,
        trace_id: &str,
        principal: &Principal,
        workflow_name: &str,
    ) -> GateError {
        let readable = serde_json::json!({ "workflow_name": workflow_name });
        self.refuse(
            trace_id,
            principal,
            &readable,
            GateError::GovernanceRequired,
        )
        .await
    }

    /// Refuses a request whose body could not be read at all, and records the refusal.
    pub async fn refuse_unreadable(
        &self,
        trace_id: &str,
        principal: &Principal,
        code: &'static str,
        message: String,
    ) -> GateError {
        self.refuse(
            trace_id,
            principal,
            &Value::Null,
            GateError::Unreadable { code, message },
        )
        .await
    }

    /// Records a refusal; returns the refusal, or `AuditUnavailable` when it could not be recorded.
    async fn refuse(
        &self,
        trace_id: &str,
        principal: &Principal,
        body: &Value,
        refusal: GateError,
    ) -> GateError {
        tracing::info!(trace_id, code = refusal.code(), reason = %refusal, "governed run refused");
        let code = refusal.code();
        let record = run_record(
            trace_id,
            principal,
            body,
            refusal.outcome(),
            Some(refusal.to_string()),
            Some(code),
            None,
        );
        match self.record(record, drag_mode_label(body)).await {
            Ok(()) => refusal,
            Err(unavailable) => unavailable,
        }
    }

    async fn record(&self, record: Record, drag_mode: &str) -> Result<(), GateError> {
        let Some(audit) = &self.audit else {
            return Ok(());
        };
        let outcome = match &record {
            Record::Run(run) => run.outcome.as_str(),
            _ => "other",
        };
        match audit.append(record).await {
            Ok(_) => {
                self.metrics.audit_log_entries.inc(&[outcome, drag_mode]);
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, "audit record could not be written; refusing");
                Err(GateError::AuditUnavailable(
                    "The audit trail cannot record right now; nothing was run without a record. Try again later.".to_owned(),
                ))
            }
        }
    }
}

/// The most of one refused member (`aim`, `parameters`) kept in its record; larger ones are
/// recorded by size and hash.
const REFUSAL_MEMBER_LIMIT: usize = 16 * 1024;

/// The audit trail's view of the steps: what ran and how it ended, with hashes of the outputs
/// (the outputs themselves go to the caller, not into the permanent record).
fn step_summaries(steps: &[StepReport]) -> Value {
    if steps.is_empty() {
        return Value::Null;
    }
    Value::Array(
        steps
            .iter()
            .map(|s| {
                serde_json::json!({
                    "id": s.id, "kind": s.kind, "success": s.success, "exit_code": s.exit_code,
                    "timed_out": s.timed_out, "duration_seconds": s.duration_seconds, "error": s.error,
                    "stdout_sha256": crate::audit::format::sha256_tagged(s.stdout.as_bytes()),
                    "stderr_sha256": crate::audit::format::sha256_tagged(s.stderr.as_bytes()),
                })
            })
            .collect(),
    )
}

/// `{}`, `[]` and `null` count as no body, as the original's `if not data` did.
pub fn is_empty_body(body: &Value) -> bool {
    match body {
        Value::Null => true,
        Value::Object(map) => map.is_empty(),
        Value::Array(items) => items.is_empty(),
        _ => false,
    }
}

/// The parts of a valid request the audit record shows, as JSON.
fn record_view(request: &GovernanceRequest) -> Value {
    let mut view = Map::new();
    view.insert(
        "workflow_name".into(),
        Value::String(request.workflow_name.clone()),
    );
    view.insert(
        "aim".into(),
        serde_json::to_value(&request.aim).unwrap_or(Value::Null),
    );
    view.insert(
        "drag_mode".into(),
        Value::String(request.drag_mode.as_str().to_owned()),
    );
    view.insert(
        "parameters".into(),
        Value::Object(request.parameters.clone()),
    );
    Value::Object(view)
}

/// A run record holding whatever of `body` could be read.
fn run_record(
    trace_id: &str,
    principal: &Principal,
    body: &Value,
    outcome: Outcome,
    error: Option<String>,
    code: Option<&'static str>,
    duration_seconds: Option<f64>,
) -> Record {
    // A refusal records whatever could be read, but never more than REFUSAL_MEMBER_LIMIT of it per
    // member: an identified caller must not fill the audit disk with refused megabytes.
    let bounded = |value: Value| -> Value {
        if outcome != Outcome::Rejected {
            return value;
        }
        let bytes = serde_json::to_vec(&value).unwrap_or_default();
        if bytes.len() <= REFUSAL_MEMBER_LIMIT {
            return value;
        }
        serde_json::json!({
            "truncated": true,
            "bytes": bytes.len(),
            "sha256": crate::audit::format::sha256_tagged(&bytes),
        })
    };
    let text = |key: &str| {
        body.get(key)
            .and_then(Value::as_str)
            .map(|s| s.chars().take(256).collect::<String>())
    };
    Record::Run(RunRecord {
        trace_id: trace_id.to_owned(),
        aim: bounded(body.get("aim").cloned().unwrap_or(Value::Null)),
        drag_mode: text("drag_mode"),
        workflow_name: text("workflow_name"),
        parameters: bounded(match body.get("parameters") {
            Some(Value::Object(map)) => Value::Object(map.clone()),
            _ => Value::Object(Map::new()),
        }),
        outcome,
        error,
        code,
        duration_seconds,
        principal: Some(principal.clone()),
        steps: Value::Null,
    })
}
