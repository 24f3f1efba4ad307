//! The runs registry: what is queued, running and recently finished, for `GET /runs`, cancellation
//! and graceful shutdown. The audit trail is the permanent record; this is the live view, bounded.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use tokio::sync::{broadcast, watch};

use crate::auth::Principal;
use crate::sync::lock;
use crate::workflow::{RunObserver, StepReport};

/// Finished runs kept for `GET /runs` (the audit trail keeps everything).
const KEEP_FINISHED: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    PendingApproval,
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
    Rejected,
}

impl RunStatus {
    pub fn is_active(self) -> bool {
        matches!(
            self,
            RunStatus::PendingApproval | RunStatus::Queued | RunStatus::Running
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::PendingApproval => "pending_approval",
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
            RunStatus::Rejected => "rejected",
        }
    }
}

struct State {
    status: RunStatus,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    current_step: Option<String>,
    steps: Vec<StepReport>,
    outcome: Option<String>,
    error: Option<String>,
    cancelled_by: Option<String>,
    /// Who asked, when a person did (over HTTP), for the record of a withdrawn approval request.
    canceller: Option<Principal>,
    /// The policy rule that allowed the canceller to (see `auth::policy`).
    cancel_rule: Option<u32>,
}

/// One run, shared by the task that executes it and the endpoints that watch it.
pub struct Run {
    pub trace_id: String,
    pub workflow: String,
    pub drag_mode: String,
    /// The accountable human's email (bound to the token), if any.
    pub actor: Option<String>,
    pub created_at: DateTime<Utc>,
    state: Mutex<State>,
    cancel: watch::Sender<bool>,
    /// Made when someone first watches, dropped when the run ends: most runs are never watched,
    /// and a channel's buffer is not free.
    events: Mutex<Option<broadcast::Sender<RunEvent>>>,
}

/// What `GET /runs/{trace_id}/events` streams.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum RunEvent {
    Status { status: RunStatus },
    StepStarted { id: String },
    StepFinished { step: StepReport },
}

impl RunEvent {
    pub fn name(&self) -> &'static str {
        match self {
            RunEvent::Status { .. } => "status",
            RunEvent::StepStarted { .. } => "step_started",
            RunEvent::StepFinished { .. } => "step_finished",
        }
    }
}

fn time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl Run {
    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    pub fn status(&self) -> RunStatus {
        self.state().status
    }

    fn emit(&self, event: RunEvent) {
        let events = lock(&self.events);
        if let Some(sender) = events.as_ref() {
            // No subscriber left is fine: events are for whoever watches now.
            let _ = sender.send(event);
        }
    }

    pub fn set_status(&self, status: RunStatus) {
        self.state().status = status;
        self.emit(RunEvent::Status { status });
    }

    pub fn set_running(&self) {
        {
            let mut state = self.state();
            state.status = RunStatus::Running;
            state.started_at = Some(Utc::now());
        }
        self.emit(RunEvent::Status {
            status: RunStatus::Running,
        });
    }

    /// Live events from now on (take a [`Run::view`] first for what already happened). `None`
    /// once the run has ended.
    pub fn subscribe(&self) -> Option<broadcast::Receiver<RunEvent>> {
        let state = self.state();
        if !state.status.is_active() {
            return None;
        }
        let mut events = lock(&self.events);
        Some(
            events
                .get_or_insert_with(|| broadcast::channel(64).0)
                .subscribe(),
        )
    }

    /// Records the end of the run (once; later calls are ignored).
    pub fn finish(&self, status: RunStatus, outcome: Option<String>, error: Option<String>) {
        let mut state = self.state();
        if state.status.is_active() {
            state.status = status;
            state.finished_at = Some(Utc::now());
            state.outcome = outcome;
            state.error = error;
            state.current_step = None;
            drop(state);
            self.emit(RunEvent::Status { status });
            // Receivers see the end of the stream after the final status.
            lock(&self.events).take();
        }
    }

    /// A finished step's report.
    pub fn step(&self, id: &str) -> Option<StepReport> {
        self.state().steps.iter().find(|s| s.id == id).cloned()
    }

    /// Asks the run to stop; `false` when it had already finished.
    pub fn cancel(&self, by: &str) -> bool {
        self.cancel_with(by, None)
    }

    /// [`Run::cancel`] on a person's request.
    pub fn cancel_as(&self, by: &str, principal: &Principal) -> bool {
        self.cancel_with(by, Some((principal.clone(), None)))
    }

    /// [`Run::cancel_as`], allowed by policy rule `rule` (see `auth::policy`).
    pub fn cancel_allowed_by(&self, by: &str, principal: &Principal, rule: Option<u32>) -> bool {
        self.cancel_with(by, Some((principal.clone(), rule)))
    }

    fn cancel_with(&self, by: &str, canceller: Option<(Principal, Option<u32>)>) -> bool {
        let mut state = self.state();
        if !state.status.is_active() {
            return false;
        }
        state.cancelled_by = Some(by.to_owned());
        let (principal, rule) = match canceller {
            Some((principal, rule)) => (Some(principal), rule),
            None => (None, None),
        };
        state.canceller = principal;
        state.cancel_rule = rule;
        drop(state);
        self.cancel.send_replace(true);
        true
    }

    /// The person who cancelled the run, if a person did.
    pub fn canceller(&self) -> Option<Principal> {
        self.state().canceller.clone()
    }

    /// The policy rule that allowed the person who cancelled the run.
    pub fn cancel_rule(&self) -> Option<u32> {
        self.state().cancel_rule
    }

    /// Turns true when the run is asked to stop.
    pub fn cancellation(&self) -> watch::Receiver<bool> {
        self.cancel.subscribe()
    }

    pub fn cancelled_by(&self) -> Option<String> {
        self.state().cancelled_by.clone()
    }

    /// The run as the API shows it (`GET /runs/{trace_id}` with its steps, `GET /runs` without).
    pub fn view(&self, with_steps: bool) -> RunView {
        let state = self.state();
        RunView {
            trace_id: self.trace_id.clone(),
            workflow_name: self.workflow.clone(),
            drag_mode: self.drag_mode.clone(),
            actor: self.actor.clone(),
            status: state.status,
            created_at: time(&self.created_at),
            started_at: state.started_at.as_ref().map(time),
            finished_at: state.finished_at.as_ref().map(time),
            current_step: state.current_step.clone(),
            outcome: state.outcome.clone(),
            error: state.error.clone(),
            cancelled_by: state.cancelled_by.clone(),
            steps: with_steps.then(|| state.steps.clone()),
        }
    }
}

/// A run as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RunView {
    pub trace_id: String,
    pub workflow_name: String,
    /// `ungoverned` for a run of the ungoverned path.
    pub drag_mode: String,
    pub actor: Option<String>,
    pub status: RunStatus,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub current_step: Option<String>,
    pub outcome: Option<String>,
    pub error: Option<String>,
    pub cancelled_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps: Option<Vec<StepReport>>,
}

/// The runner reports each step to the run, for `GET /runs` and its events, and stops when the run
/// is cancelled.
impl RunObserver for Run {
    fn step_started(&self, id: &str) {
        self.state().current_step = Some(id.to_owned());
        self.emit(RunEvent::StepStarted { id: id.to_owned() });
    }

    fn step_finished(&self, report: &StepReport) {
        {
            let mut state = self.state();
            state.current_step = None;
            state.steps.push(report.clone());
        }
        self.emit(RunEvent::StepFinished {
            step: report.clone(),
        });
    }

    fn cancellation(&self) -> watch::Receiver<bool> {
        Run::cancellation(self)
    }
}

/// Filters for `GET /runs`.
#[derive(Debug, Default, Clone)]
pub struct RunFilter {
    pub status: Option<String>,
    pub workflow: Option<String>,
    pub actor: Option<String>,
}

/// The live runs and the most recent finished ones.
#[derive(Default)]
pub struct RunRegistry {
    runs: Mutex<VecDeque<Arc<Run>>>,
}

impl RunRegistry {
    fn runs(&self) -> MutexGuard<'_, VecDeque<Arc<Run>>> {
        lock(&self.runs)
    }

    /// Adds a queued run.
    pub fn register(
        &self,
        trace_id: &str,
        workflow: &str,
        drag_mode: &str,
        actor: Option<String>,
    ) -> Arc<Run> {
        let (cancel, _) = watch::channel(false);
        let run = Arc::new(Run {
            trace_id: trace_id.to_owned(),
            workflow: workflow.to_owned(),
            drag_mode: drag_mode.to_owned(),
            actor,
            created_at: Utc::now(),
            state: Mutex::new(State {
                status: RunStatus::Queued,
                started_at: None,
                finished_at: None,
                current_step: None,
                steps: Vec::new(),
                outcome: None,
                error: None,
                cancelled_by: None,
                canceller: None,
                cancel_rule: None,
            }),
            cancel,
            events: Mutex::new(None),
        });
        let mut runs = self.runs();
        runs.push_back(Arc::clone(&run));
        // Forget the oldest finished runs beyond the bound (active ones always stay). Done in bulk
        // once the list is twice the bound, so registering stays O(1) amortised.
        if runs.len() > 2 * KEEP_FINISHED {
            let finished = runs.iter().filter(|r| !r.status().is_active()).count();
            let mut excess = finished.saturating_sub(KEEP_FINISHED);
            runs.retain(|r| {
                if excess > 0 && !r.status().is_active() {
                    excess -= 1;
                    false
                } else {
                    true
                }
            });
        }
        run
    }

    /// The most recent run with this trace id.
    pub fn get(&self, trace_id: &str) -> Option<Arc<Run>> {
        self.runs()
            .iter()
            .rev()
            .find(|r| r.trace_id == trace_id)
            .cloned()
    }

    /// Forgets this run (the shared store holds it now: its state is read there).
    pub fn forget(&self, run: &Arc<Run>) {
        self.runs().retain(|r| !Arc::ptr_eq(r, run));
    }

    /// Runs matching `filter`, newest first.
    pub fn list(&self, filter: &RunFilter, limit: usize) -> Vec<RunView> {
        self.runs()
            .iter()
            .rev()
            .filter(|r| {
                filter
                    .status
                    .as_deref()
                    .is_none_or(|s| r.status().as_str() == s)
            })
            .filter(|r| filter.workflow.as_deref().is_none_or(|w| r.workflow == w))
            .filter(|r| {
                filter.actor.as_deref().is_none_or(|a| {
                    r.actor
                        .as_deref()
                        .is_some_and(|actor| crate::identity::same(actor, a))
                })
            })
            .take(limit)
            .map(|r| r.view(false))
            .collect()
    }

    /// Runs queued or running now (not those parked for approval).
    pub fn working(&self) -> Vec<Arc<Run>> {
        self.runs()
            .iter()
            .filter(|r| matches!(r.status(), RunStatus::Queued | RunStatus::Running))
            .cloned()
            .collect()
    }

    /// Runs not finished: waiting for approval, queued or running.
    pub fn active(&self) -> Vec<Arc<Run>> {
        self.runs()
            .iter()
            .filter(|r| r.status().is_active())
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_moves_from_queued_to_running_to_finished_once() {
        let registry = RunRegistry::default();
        let run = registry.register("t1", "noop", "execute", Some("a@b".into()));
        assert_eq!(run.status(), RunStatus::Queued);
        run.set_running();
        run.finish(RunStatus::Succeeded, Some("done".into()), None);
        run.finish(RunStatus::Failed, None, Some("late".into()));
        assert_eq!(run.status(), RunStatus::Succeeded);
        assert!(!run.cancel("x"), "a finished run cannot be cancelled");
        assert_eq!(
            registry.get("t1").unwrap().view(true).status,
            RunStatus::Succeeded
        );
    }

    #[test]
    fn cancelling_signals_the_run() {
        let registry = RunRegistry::default();
        let run = registry.register("t1", "noop", "execute", None);
        let signal = run.cancellation();
        assert!(run.cancel("admin@x"));
        assert!(*signal.borrow());
        assert_eq!(run.cancelled_by().as_deref(), Some("admin@x"));
    }

    #[test]
    fn old_finished_runs_are_forgotten_but_active_ones_kept() {
        let registry = RunRegistry::default();
        let active = registry.register("active", "w", "execute", None);
        for i in 0..2 * KEEP_FINISHED + 10 {
            registry
                .register(&format!("t{i}"), "w", "execute", None)
                .finish(RunStatus::Succeeded, None, None);
        }
        assert!(registry.get("active").is_some());
        assert!(registry.get("t0").is_none());
        assert_eq!(registry.active().len(), 1);
        drop(active);
        let filter = RunFilter {
            status: Some("succeeded".into()),
            ..RunFilter::default()
        };
        assert_eq!(registry.list(&filter, 5).len(), 5);
    }
}
