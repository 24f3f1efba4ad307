//! The governance gate: the one way to run a workflow. HTTP, Slack and the command line submit
//! [`RunRequest`]s to [`Gate::submit`]; nothing else can start a run.
//!
//! parse -> validate -> authorize -> audit the intent (durable) -> run -> audit the outcome -> report.
//! Every refusal of an identified caller is audited too. Nothing runs unless its `started` record is
//! durable; when the audit trail cannot record, the gate refuses (fail closed). Runs execute in
//! tasks the gate owns (a client that goes away cannot cut a run between its records), so shutdown
//! is close-then-wait: [`Gate::drain`] (in `drain.rs`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

mod approvals;
mod drain;
mod error;
mod listen;
mod notices;
mod pool;
mod prepare;
mod records;
mod report;
mod run;
mod shared;
mod traces;

use approvals::Pending;
use pool::Pool;

pub use drain::Draining;
pub use error::GateError;
pub use listen::{ApprovalRequested, Finished, Listener};
pub use records::is_empty_body;
pub use report::{RunReport, RUN_FAILURES};
pub use run::Prepared;
pub use shared::Found;

use crate::audit::{AuditStore, Record};
use crate::auth::policy::PolicyStore;
use crate::auth::{may, Action, Policy, Principal, Target};
use crate::cluster::Cluster;
use crate::metrics::{ByWorkflow, GateState, Metrics};
use crate::runs::{Run, RunRegistry};
use crate::sync::lock;
use crate::trace::TraceId;
use crate::workflow::{Runner, StepReport, WorkflowRegistry};

/// Whether `principal` is the run's accountable human.
pub fn owns(principal: &Principal, run: &Run) -> bool {
    match (&principal.actor, &run.actor) {
        (Some(who), Some(actor)) => crate::identity::same(who, actor),
        _ => false,
    }
}

/// The run an action on `run` is about, as the policy sees it.
pub fn target_of(run: &Run) -> Target<'_> {
    Target {
        workflow: &run.workflow,
        drag_mode: run.drag_mode.parse().ok(),
    }
}

/// How a submitted run ended, in the words of its request's log lines.
fn ended(result: &Result<RunReport, GateError>) -> &'static str {
    match result {
        Ok(report) if report.success => "success",
        Ok(report) if report.cancelled => "cancelled",
        Ok(_) => "failure",
        Err(refusal) => refused_as(refusal),
    }
}

/// How a refused (or stopped) run ended: as its record says, or `cancelled`.
fn refused_as(refusal: &GateError) -> &'static str {
    match refusal {
        GateError::Cancelled => "cancelled",
        other => other.outcome().as_str(),
    }
}

/// A request to run, from any entry point.
pub struct RunRequest {
    /// Parsed where the request entered (`X-Trace-ID`) or made there.
    pub trace_id: TraceId,
    pub principal: Principal,
    pub body: RequestBody,
    /// Whether a second human can decide the run from where it came (HTTP and Slack: yes). When
    /// not (the command line), a workflow that requires approval is refused `APPROVAL_REQUIRED`.
    pub approvable: bool,
}

/// What the entry point read of the request.
pub enum RequestBody {
    /// A governance request (AIM declaration, DRAG mode, workflow, parameters); `None` when empty.
    Governed(Result<Option<Value>, Unreadable>),
    /// The original's ungoverned run (`POST /workflows/{name}/execute`, `--run NAME` without a
    /// request): the workflow by name and its parameters. Refused while governance is enabled;
    /// otherwise it runs like any other, on the record as `"governed": false`.
    Ungoverned {
        workflow_name: String,
        parameters: Result<Option<Value>, Unreadable>,
    },
}

/// A body that could not be read as JSON; `code` is the edge's code for it.
#[derive(Debug, Clone)]
pub struct Unreadable {
    pub code: &'static str,
    pub message: String,
}

/// How long the caller waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Until the run ends (or waits for approval).
    Outcome,
    /// Until the run is accepted: queued (or waiting for approval); it goes on without the caller.
    Acceptance,
}

/// What became of a submitted run.
#[derive(Debug)]
pub enum Submitted {
    /// The run ended; the report says how.
    Finished(RunReport),
    /// The run is queued and goes on by itself (`Wait::Acceptance`).
    Queued { trace_id: String },
    /// The run waits for a second human's decision until `expires_at`.
    AwaitingApproval {
        trace_id: String,
        expires_at: DateTime<Utc>,
    },
}

/// How many runs may execute and wait at once.
#[derive(Debug, Clone, Copy)]
pub struct RunLimits {
    pub workers: usize,
    pub queue: usize,
    /// Runs that may wait for approval at once (they are held in memory until a decision).
    pub waiting_for_approval: usize,
    /// The most bytes of JSON a run's parameters may take.
    pub max_parameter_bytes: usize,
}

/// The gate. Cheap to clone.
#[derive(Clone)]
pub struct Gate {
    audit: Arc<dyn AuditStore>,
    workflows: Arc<WorkflowRegistry>,
    /// Who may do what (`POLICY_PATH`, or the built-in rules); reloaded with the workflows.
    policy: Arc<PolicyStore>,
    runner: Runner,
    metrics: Arc<Metrics>,
    pool: Arc<Pool>,
    runs: Arc<RunRegistry>,
    approvals: Arc<Mutex<HashMap<String, Pending>>>,
    /// Who each trace id belongs to (finished runs' too): see `traces.rs`.
    trace_owners: Arc<traces::TraceOwners>,
    /// Runs that may wait for approval at once.
    approvals_max: usize,
    /// The most bytes of JSON a run's parameters may take.
    max_parameter_bytes: usize,
    /// `GOVERNANCE_ENABLED=false`: the ungoverned path is open (development only).
    ungoverned_allowed: bool,
    /// Every run's task: shutdown closes it and waits.
    tasks: TaskTracker,
    /// Where a shutdown is, for those who follow runs.
    draining: Arc<Draining>,
    /// Told when runs end and when they wait for approval.
    listeners: Arc<std::sync::RwLock<Vec<Arc<dyn Listener>>>>,
    /// With PostgreSQL: the runs, queue and approvals shared with the other instances.
    cluster: Option<Arc<Cluster>>,
    /// Shared approval requests being decided here now (one decision at a time per run).
    deciding: Arc<Mutex<std::collections::HashSet<String>>>,
}

impl Gate {
    /// `ungoverned_allowed` opens the original's ungoverned path (`GOVERNANCE_ENABLED=false`).
    pub fn new(
        audit: Arc<dyn AuditStore>,
        workflows: Arc<WorkflowRegistry>,
        runner: Runner,
        metrics: Arc<Metrics>,
        limits: RunLimits,
        ungoverned_allowed: bool,
    ) -> Gate {
        let pool = Pool::new(limits.workers, limits.queue);
        Gate {
            audit,
            workflows,
            policy: Arc::new(PolicyStore::built_in()),
            runner,
            metrics,
            pool: Arc::new(pool),
            runs: Arc::new(RunRegistry::default()),
            approvals: Arc::new(Mutex::new(HashMap::new())),
            trace_owners: Arc::default(),
            approvals_max: limits.waiting_for_approval,
            max_parameter_bytes: limits.max_parameter_bytes,
            ungoverned_allowed,
            tasks: TaskTracker::new(),
            draining: Arc::default(),
            listeners: Arc::default(),
            cluster: None,
            deciding: Arc::default(),
        }
    }

    /// Shares runs, the queue and approvals with the other instances on the same database (the
    /// audit store must be the database's too).
    pub fn with_cluster(mut self, cluster: Arc<Cluster>) -> Gate {
        self.cluster = Some(cluster);
        self
    }

    /// The shared run state, with PostgreSQL.
    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.cluster.as_ref()
    }

    /// The gate under a policy file's rules instead of the built-in ones.
    pub fn with_policy(mut self, policy: Arc<PolicyStore>) -> Gate {
        self.policy = policy;
        self
    }

    /// The policy in force now: what every [`may`] of the gate's callers is asked under.
    pub fn policy(&self) -> Policy {
        self.policy.current()
    }

    /// Where the policy comes from, to reload it and report on it.
    pub fn policy_store(&self) -> &PolicyStore {
        &self.policy
    }

    /// Adds a listener for runs' ends and approval requests (Slack's notifications).
    pub fn listen(&self, listener: Arc<dyn Listener>) {
        crate::sync::write(&self.listeners).push(listener);
    }

    fn tell(&self, each: impl Fn(&dyn Listener)) {
        for listener in crate::sync::read(&self.listeners).iter() {
            each(listener.as_ref());
        }
    }

    pub fn audit(&self) -> &Arc<dyn AuditStore> {
        &self.audit
    }

    pub fn workflows(&self) -> &WorkflowRegistry {
        &self.workflows
    }

    /// The live runs.
    pub fn runs(&self) -> &RunRegistry {
        &self.runs
    }

    /// The pool, the approvals and the audit sink right now (what the gauges show).
    pub fn state(&self) -> GateState {
        let (workers, queue_capacity) = self.pool.limits();
        let (approvals_waiting, next_expiry) = self.approvals_outlook();
        GateState {
            runs_queued: self.pool.queued(),
            runs_executing: self.pool.executing(),
            queue_capacity,
            workers,
            approvals_waiting,
            next_approval_expiry: next_expiry.map_or(0, |t| t.timestamp()),
            audit_sink_healthy: self.audit.status().healthy,
        }
    }

    /// Submits a run: checks it (refusals are audited), then parks it for approval when its
    /// workflow asks for one, or queues it and, with [`Wait::Outcome`], waits for its end. The run
    /// executes in a task of the gate's: a caller that goes away does not cut it.
    pub async fn submit(&self, request: RunRequest, wait: Wait) -> Result<Submitted, GateError> {
        if self.tasks.is_closed() {
            // Draining: nothing new starts (a Slack click or a slow handler may still arrive).
            let (governed, view) = match &request.body {
                RequestBody::Governed(Ok(Some(body))) => (true, body.clone()),
                RequestBody::Governed(_) => (true, Value::Null),
                RequestBody::Ungoverned { workflow_name, .. } => {
                    (false, serde_json::json!({ "workflow_name": workflow_name }))
                }
            };
            let trace_id = request.trace_id.as_str().to_owned();
            return Err(self
                .refuse(
                    governed,
                    &trace_id,
                    &request.principal,
                    &view,
                    GateError::ShuttingDown,
                )
                .await);
        }
        let gate = self.clone();
        let (answer, answered) = tokio::sync::oneshot::channel();
        self.tasks.spawn(
            async move {
                let approvable = request.approvable;
                // The request's span, when there is one (its entry point named the actor): its
                // log lines say for which workflow in which mode, and how it ended.
                let asked = tracing::Span::current();
                let mut prepared = match gate.validate(request).await {
                    Ok(prepared) => prepared,
                    Err(refused) => {
                        asked.record("outcome", refused_as(&refused));
                        let _ = answer.send(Err(refused));
                        return;
                    }
                };
                asked.record("workflow", prepared.definition.name.as_str());
                asked.record("drag_mode", prepared.mode_label());
                if approvable && prepared.may_wait_for_approval() {
                    let trace_id = prepared.trace_id().to_owned();
                    let parked = prepared.hold_for_approval().await;
                    let outcome = match &parked {
                        Ok(_) => "pending_approval",
                        Err(refused) => refused_as(refused),
                    };
                    asked.record("outcome", outcome);
                    let _ = answer.send(parked.map(|expires_at| Submitted::AwaitingApproval {
                        trace_id,
                        expires_at,
                    }));
                } else if wait == Wait::Acceptance {
                    // Admission is decided before the answer: "queued" is the truth, and a full
                    // queue is a 429 here as for a waiting caller.
                    if !prepared.reserve() {
                        let refused = prepared.refuse_as(GateError::TooManyRuns).await;
                        asked.record("outcome", refused_as(&refused));
                        let _ = answer.send(Err(refused));
                        return;
                    }
                    // Shared: accepted in the database before the answer, so that the run runs
                    // once on some instance even if this one dies now.
                    if let Err(refusal) = prepared.accept_shared().await {
                        let refused = prepared.refuse_as(refusal).await;
                        asked.record("outcome", refused_as(&refused));
                        let _ = answer.send(Err(refused));
                        return;
                    }
                    let trace_id = prepared.trace_id().to_owned();
                    asked.record("outcome", "queued");
                    let _ = answer.send(Ok(Submitted::Queued { trace_id }));
                    let _ = prepared.run().await;
                } else {
                    let result = prepared.run().await;
                    asked.record("outcome", ended(&result));
                    let _ = answer.send(result.map(Submitted::Finished));
                }
            }
            .in_current_span(),
        );
        answered.await.unwrap_or_else(|_| {
            tracing::error!(
                "a run's task ended without an answer; the audit trail has what was recorded"
            );
            Err(GateError::Internal("Internal server error".to_owned()))
        })
    }

    /// Runs an approved run in a task of the gate's, in a span of its own trace id (it follows
    /// from the decision's request, whose trace id is the decider's), at the root of its trace.
    fn spawn_run(&self, prepared: Prepared) {
        // A trace of its own (exported traces link it to the decision's).
        let span =
            tracing::info_span!(parent: None, "approved_run", trace_id = %prepared.trace_id());
        span.follows_from(tracing::Span::current());
        self.tasks.spawn(
            async move {
                let _ = prepared.run().await;
            }
            .instrument(span),
        );
    }

    /// A run the caller may see: their own, or any for auditors and admins.
    pub fn visible_run(
        &self,
        principal: &Principal,
        trace_id: &str,
    ) -> Result<Arc<Run>, GateError> {
        self.runs
            .get(trace_id)
            .filter(|run| {
                let own = owns(principal, run);
                may(&self.policy(), principal, Action::SeeRun { own }).is_ok()
            })
            .ok_or_else(|| GateError::RunNotFound(trace_id.to_owned()))
    }

    /// Stops a queued or running run, or withdraws one waiting for approval (on the record): its
    /// accountable human or an admin. Answers who cancelled, as the run shows it.
    pub async fn cancel(&self, principal: &Principal, trace_id: &str) -> Result<String, GateError> {
        let run = match self.runs.get(trace_id) {
            Some(run) => run,
            None if self.cluster.is_some() => match self.find_run(principal, trace_id).await? {
                Found::Here(run) => run,
                Found::Shared(row) => return self.cancel_shared(principal, *row).await,
            },
            None => return Err(GateError::RunNotFound(trace_id.to_owned())),
        };
        let own = owns(principal, &run);
        let target = target_of(&run);
        let granted = match may(&self.policy(), principal, Action::CancelRun { own, target }) {
            Ok(granted) => granted,
            // A run the caller may not even see is not theirs to hear about.
            Err(_) if self.visible_run(principal, trace_id).is_err() => {
                return Err(GateError::RunNotFound(trace_id.to_owned()))
            }
            Err(forbidden) => return Err(forbidden.into()),
        };
        let by = principal
            .actor
            .clone()
            .unwrap_or_else(|| principal.role.to_string());
        if !run.cancel_allowed_by(&by, principal, granted.policy_rule()) {
            return Err(GateError::RunFinished(trace_id.to_owned()));
        }
        // Shared: the request is in the run's row too, so that whoever owns it next honours it.
        if let Some(cluster) = self.cluster.clone() {
            let (trace_id, by, who) = (
                trace_id.to_owned(),
                by.clone(),
                serde_json::to_value(principal).unwrap_or(Value::Null),
            );
            tokio::spawn(async move {
                if let Err(e) = cluster.request_cancel(&trace_id, &by, &who).await {
                    tracing::warn!(trace_id, error = %e, "cannot note the cancellation in the run's row");
                }
            });
        }
        // A run waiting for approval is withdrawn on the record (nothing happens for other runs; one
        // whose approval request is being parked right now is withdrawn by the parking instead).
        self.withdraw(trace_id, principal).await?;
        tracing::info!(trace_id, by, "run cancellation requested");
        Ok(by)
    }

    /// Records that `by` replaced or edited the output of `step` of run `trace_id`; `policy_rule`
    /// is the policy rule that allowed it.
    pub async fn record_override(
        &self,
        run: &Run,
        step: &StepReport,
        by: &Principal,
        after: &str,
        reason: &str,
        policy_rule: Option<u32>,
    ) -> Result<crate::audit::Receipt, GateError> {
        let record = Record::Override {
            trace_id: run.trace_id.clone(),
            workflow_name: run.workflow.clone(),
            step: step.id.clone(),
            actor: by.clone(),
            before_sha256: crate::audit::format::sha256_tagged(step.stdout.as_bytes()),
            after_sha256: crate::audit::format::sha256_tagged(after.as_bytes()),
            reason: reason.to_owned(),
            policy_rule,
        };
        let receipt = self.audit.append(record).await.map_err(|_| {
            GateError::AuditUnavailable("The override could not be recorded".to_owned())
        })?;
        self.metrics.human_overrides.inc(&ByWorkflow {
            workflow_name: run.workflow.clone(),
        });
        Ok(receipt)
    }

    /// Refuses, on the record, a caller who is not mapped to an accountable human (an anonymous
    /// human is not accountable): `principal` names them as well as their client can, `body` is
    /// what they asked for. Returns the refusal, or `AuditUnavailable`.
    pub async fn refuse_unknown(
        &self,
        trace_id: &TraceId,
        principal: &Principal,
        body: &Value,
        why: String,
    ) -> GateError {
        self.refuse(
            true,
            trace_id.as_str(),
            principal,
            body,
            GateError::UnknownUser(why),
        )
        .await
    }
}
