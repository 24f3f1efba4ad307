//! Who hears about runs: listeners the gate tells when a run ends and when a run starts waiting
//! for a second human (Slack's notifications and approval messages). Called on the run's task
//! once the fact is on the record; a listener must not block (it hands delivery to a task of its
//! own).

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{GateError, RunReport};

/// Hears about runs. Both methods have empty defaults.
pub trait Listener: Send + Sync {
    /// A run that was admitted has ended: finished (successfully or not, or cancelled), or was
    /// refused after admission (queue full, approval missing, audit unavailable, denied, expired).
    fn finished(&self, _run: &Finished<'_>) {}

    /// A run waits for a second human's decision (its `requested` record is durable).
    fn approval_requested(&self, _request: &ApprovalRequested) {}
}

/// A run that ended.
pub struct Finished<'a> {
    pub trace_id: &'a str,
    pub workflow_name: &'a str,
    /// The accountable human's email.
    pub actor: Option<&'a str>,
    /// The DRAG mode, or `ungoverned`.
    pub drag_mode: &'a str,
    pub result: &'a Result<RunReport, GateError>,
}

/// A run waiting for a decision.
#[derive(Debug, Clone)]
pub struct ApprovalRequested {
    pub trace_id: String,
    pub workflow_name: String,
    /// The requester's email.
    pub requested_by: Option<String>,
    pub approver_roles: Vec<String>,
    pub expires_at: DateTime<Utc>,
    /// The request as it will run (workflow, AIM, DRAG mode, parameters).
    pub request: Value,
}
