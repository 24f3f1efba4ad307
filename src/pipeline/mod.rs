//! The governance gate: the one execution pipeline every entry point (HTTP, Slack, CLI) goes through.
//!
//! parse -> validate -> authorize -> audit the intent (durable) -> run -> audit the outcome -> report.
//! Every refusal of an identified caller is audited too. Nothing runs unless its `started` record is
//! durable; when the audit trail cannot record, the gate refuses (fail closed).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;

mod approvals;
mod pool;
mod records;
mod run;

use approvals::Pending;
use pool::Pool;
pub use records::is_empty_body;
use records::{record_view, run_record};
pub use run::Prepared;

use crate::audit::{AuditStore, Outcome, Record};
use crate::auth::Principal;
use crate::governance::{summary, GovernanceRequest, IdentityMismatch, Rejection};
use crate::metrics::{drag_mode_label, Metrics};
use crate::runs::{Run, RunRegistry};
use crate::workflow::{self, InvalidName, Runner, StepReport, WorkflowRegistry};

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
    /// Runs that may wait for approval at once (they are held in memory until a decision).
    pub waiting_for_approval: usize,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The gate. Cheap to clone.
#[derive(Clone)]
pub struct Gate {
    audit: Option<Arc<dyn AuditStore>>,
    workflows: Arc<WorkflowRegistry>,
    runner: Runner,
    metrics: Arc<Metrics>,
    pool: Arc<Pool>,
    runs: Arc<RunRegistry>,
    approvals: Arc<Mutex<HashMap<String, Pending>>>,
    /// Runs that may wait for approval at once.
    approvals_max: usize,
}

impl Gate {
    /// `audit` is `None` when governance auditing is disabled (development only).
    pub fn new(
        audit: Option<Arc<dyn AuditStore>>,
        workflows: Arc<WorkflowRegistry>,
        runner: Runner,
        metrics: Arc<Metrics>,
        limits: RunLimits,
    ) -> Gate {
        let pool = Pool::new(limits.workers, limits.queue);
        Gate {
            audit,
            workflows,
            runner,
            metrics,
            pool: Arc::new(pool),
            runs: Arc::new(RunRegistry::default()),
            approvals: Arc::new(Mutex::new(HashMap::new())),
            approvals_max: limits.waiting_for_approval,
        }
    }

    pub fn audit(&self) -> Option<&Arc<dyn AuditStore>> {
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

impl Gate {
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
