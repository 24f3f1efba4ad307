//! What one step did: the record every step kind returns, the runner reports and the audit trail
//! keeps.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::governance::filter::Violation;

/// What one step did.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct StepReport {
    pub id: String,
    pub kind: &'static str,
    pub success: bool,
    pub exit_code: Option<i32>,
    /// For `http` and `openclaw` steps: the response status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    /// For AI output in draft and research modes: the prescriptive phrases found.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub violations: Vec<Violation>,
    pub timed_out: bool,
    pub duration_seconds: f64,
    pub stdout: String,
    pub stderr: String,
    pub truncated: bool,
    pub error: Option<String>,
    /// A more specific code for the run's failure than `WORKFLOW_FAILED`, when this step knows one
    /// (`OPENCLAW_UNAVAILABLE`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<&'static str>,
}

impl StepReport {
    /// A step of `kind` that failed before it had any output.
    pub(super) fn failed(
        id: &str,
        kind: &'static str,
        started: Instant,
        error: String,
    ) -> StepReport {
        StepReport {
            id: id.to_owned(),
            kind,
            success: false,
            exit_code: None,
            http_status: None,
            violations: Vec::new(),
            timed_out: false,
            duration_seconds: started.elapsed().as_secs_f64(),
            stdout: String::new(),
            stderr: String::new(),
            truncated: false,
            error: Some(error),
            code: None,
        }
    }

    /// A step of `kind` that ran out of time.
    pub(super) fn timed_out(
        id: &str,
        kind: &'static str,
        started: Instant,
        limit: Duration,
    ) -> StepReport {
        let mut report = StepReport::failed(
            id,
            kind,
            started,
            format!("timed out after {} s", limit.as_secs()),
        );
        report.timed_out = true;
        report
    }
}
