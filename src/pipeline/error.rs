//! Why the gate refused a run, or could not record it: one enum, each with a stable code.

use crate::audit::Outcome;
use crate::auth::Forbidden;
use crate::governance::{IdentityMismatch, Rejection};
use crate::workflow::InvalidName;

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
    #[error("AIM actor {} '{}' does not match the authenticated identity '{}'", .0.field, .0.declared, .0.authenticated)]
    ActorMismatch(IdentityMismatch),
    #[error("{0}")]
    InvalidName(InvalidName),
    #[error("Workflow not found: {0}")]
    WorkflowNotFound(String),
    #[error("DRAG mode '{mode}' is not allowed for this workflow (allowed: {allowed})")]
    DragModeNotAllowed { mode: String, allowed: String },
    #[error("{0}")]
    ForbiddenRole(Forbidden),
    #[error("Invalid parameters: {}", .0.iter().map(|v| format!("{}: {}", v.field, v.message)).collect::<Vec<_>>().join("; "))]
    InvalidParameters(Vec<crate::governance::Violation>),
    #[error(
        "Parameters too large: {bytes} bytes of JSON (at most {max}; RUN_MAX_PARAMETER_BYTES)"
    )]
    ParametersTooLarge { bytes: usize, max: usize },
    #[error("This workflow requires approval by a second human ({roles}); request it over HTTP (POST /workflows/governed/execute) so that they can decide it (POST /runs/{{trace_id}}/approve)")]
    ApprovalRequired { roles: String },
    #[error("{0}")]
    ApprovalRefused(String),
    #[error("The approval request expired at {0}")]
    ApprovalExpired(String),
    #[error("{0}")]
    NotPending(String),
    /// No run by that trace id is known here, or the caller may not see it.
    #[error("No run {0} is known here (GET /audit/entries/{0} has the permanent record)")]
    RunNotFound(String),
    #[error("Run {0} has already finished")]
    RunFinished(String),
    /// The caller is not mapped to an accountable human (a Slack user not in `SLACK_USERS_FILE`).
    #[error("{0}")]
    UnknownUser(String),
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
    #[error("The server is shutting down; try again when it is back")]
    ShuttingDown,
    /// A run's task ended without an answer (a bug): the audit trail has whatever was recorded.
    #[error("{0}")]
    Internal(String),
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
            GateError::ForbiddenRole(_) => "FORBIDDEN_ROLE",
            GateError::InvalidParameters(_) => "INVALID_PARAMETERS",
            GateError::ParametersTooLarge { .. } => "PARAMETERS_TOO_LARGE",
            GateError::ApprovalRequired { .. } => "APPROVAL_REQUIRED",
            GateError::ApprovalRefused(_) => "APPROVAL_REFUSED",
            GateError::ApprovalExpired(_) => "APPROVAL_EXPIRED",
            GateError::NotPending(_) => "RUN_NOT_PENDING",
            GateError::RunNotFound(_) => "NOT_FOUND",
            GateError::RunFinished(_) => "RUN_FINISHED",
            GateError::UnknownUser(_) => "UNKNOWN_USER",
            GateError::TraceInUse(_) => "TRACE_ID_IN_USE",
            GateError::AuditUnavailable(_) => "AUDIT_UNAVAILABLE",
            GateError::ShuttingDown => "SHUTTING_DOWN",
            GateError::Internal(_) => "INTERNAL_ERROR",
        }
    }

    /// How the refusal is recorded: a problem with the declaration is `rejected`; a problem with the
    /// named workflow is a `failure`, as the contract has it.
    pub(super) fn outcome(&self) -> Outcome {
        match self {
            GateError::InvalidName(_)
            | GateError::WorkflowNotFound(_)
            | GateError::AuditUnavailable(_)
            | GateError::Internal(_) => Outcome::Failure,
            _ => Outcome::Rejected,
        }
    }
}

impl From<Forbidden> for GateError {
    fn from(forbidden: Forbidden) -> GateError {
        GateError::ForbiddenRole(forbidden)
    }
}
