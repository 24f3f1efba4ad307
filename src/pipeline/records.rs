//! What the gate writes on the audit trail about a run: the record of a run or a refusal, built
//! from whatever of the request could be read, and the steps' summary.

use std::sync::Arc;

use serde_json::{Map, Value};
use tracing::field::Empty;
use tracing::Instrument;

use super::{Gate, GateError};
use crate::audit::{AuditError, Outcome, Record, RunRecord};
use crate::auth::Principal;
use crate::db::Change;
use crate::governance::GovernanceRequest;
use crate::metrics::{drag_mode_label, AuditEntry, ByDragMode};
use crate::trace::otel::SPANS;
use crate::workflow::StepReport;

/// The most of one member (`aim`, `parameters`) a run record keeps; larger ones are recorded by
/// size and hash (the run itself gets them whole).
const MEMBER_LIMIT: usize = 16 * 1024;

/// The audit trail's view of the steps: what ran and how it ended, with hashes of the outputs
/// (the outputs themselves go to the caller, not into the permanent record).
pub(super) fn step_summaries(steps: &[StepReport]) -> Value {
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
pub(super) fn record_view(request: &GovernanceRequest) -> Value {
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

/// The record's view of an ungoverned run: its workflow and parameters.
pub(super) fn ungoverned_view(workflow_name: &str, parameters: Map<String, Value>) -> Value {
    serde_json::json!({
        "parameters": parameters,
        "workflow_name": workflow_name,
    })
}

/// A run record holding whatever of `body` could be read; `governed` says which path the request
/// came by (never read from the body: a client cannot mark its own request).
#[allow(clippy::too_many_arguments)]
pub(super) fn run_record(
    governed: bool,
    trace_id: &str,
    principal: &Principal,
    body: &Value,
    outcome: Outcome,
    error: Option<String>,
    code: Option<&'static str>,
    duration_seconds: Option<f64>,
) -> Record {
    // A record keeps whatever could be read, but never more than MEMBER_LIMIT of it per member
    // (refused or run): an identified caller must not fill the audit disk with megabytes.
    let bounded = |value: Value| -> Value {
        let bytes = serde_json::to_vec(&value).unwrap_or_default();
        if bytes.len() <= MEMBER_LIMIT {
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
        governed: (!governed).then_some(false),
        policy_rule: None,
    })
}

/// `record` naming the policy rule that decided its run (see `docs/audit-format.md`).
pub(super) fn ruled(mut record: Record, policy_rule: Option<u32>) -> Record {
    if let Record::Run(run) = &mut record {
        run.policy_rule = policy_rule;
    }
    record
}

/// Writing the gate's records: refusals, and any record with the shared state's change.
impl Gate {
    /// Records a refusal; returns the refusal, or `AuditUnavailable` when it could not be recorded.
    /// `governed` says which path the request came by.
    pub(super) async fn refuse(
        &self,
        governed: bool,
        trace_id: &str,
        principal: &Principal,
        body: &Value,
        refusal: GateError,
    ) -> GateError {
        self.refuse_ruled(governed, trace_id, principal, body, refusal, None, None)
            .await
    }

    /// [`Gate::refuse`] of a run the policy was asked about: `policy_rule` is its verdict; with a
    /// shared store, `change` ends the run's row with the record.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn refuse_ruled(
        &self,
        governed: bool,
        trace_id: &str,
        principal: &Principal,
        body: &Value,
        refusal: GateError,
        policy_rule: Option<u32>,
        change: Option<Arc<dyn Change>>,
    ) -> GateError {
        tracing::info!(trace_id, code = refusal.code(), reason = %refusal, "run refused");
        let code = refusal.code();
        let record = run_record(
            governed,
            trace_id,
            principal,
            body,
            refusal.outcome(),
            Some(refusal.to_string()),
            Some(code),
            None,
        );
        let record = ruled(record, policy_rule);
        match self
            .record_with(record, drag_mode_label(body), change)
            .await
        {
            Ok(_) => refusal,
            Err(unavailable) => unavailable,
        }
    }

    pub(super) async fn record(
        &self,
        record: Record,
        drag_mode: &'static str,
    ) -> Result<(), GateError> {
        self.record_with(record, drag_mode, None).await.map(|_| ())
    }

    /// Appends `record`, and with a shared store applies `change` in the same transaction. `false`:
    /// the change's guard did not hold (another instance changed the run first), and nothing was
    /// appended.
    pub(super) async fn record_with(
        &self,
        record: Record,
        drag_mode: &'static str,
        change: Option<Arc<dyn Change>>,
    ) -> Result<bool, GateError> {
        let outcome = match &record {
            Record::Run(run) => run.outcome.as_str(),
            _ => "other",
        };
        let span = tracing::info_span!(
            target: SPANS,
            "audit.append",
            sustainbot.audit.kind = record.kind(),
            sustainbot.audit.outcome = outcome,
            sustainbot.audit.seq = Empty,
            otel.status_code = Empty,
        );
        let appended = match change {
            Some(change) => self.audit.append_with(record, change),
            None => self.audit.append(record),
        }
        .instrument(span.clone())
        .await;
        match &appended {
            Ok(receipt) => span.record("sustainbot.audit.seq", i64::try_from(receipt.seq).ok()),
            Err(_) => span.record("otel.status_code", "error"),
        };
        match appended {
            Ok(_) => {
                // As the original counted: one entry per run outcome. The write-ahead `started`
                // records and the approval decisions are counted apart, so that a dashboard
                // summing entries by outcome does not count a run twice.
                let metrics = &self.metrics;
                match outcome {
                    "started" => metrics.audit_intent_records.inc(&ByDragMode { drag_mode }),
                    "other" => metrics.audit_other_records.inc(&ByDragMode { drag_mode }),
                    _ => metrics
                        .audit_log_entries
                        .inc(&AuditEntry { outcome, drag_mode }),
                }
                Ok(true)
            }
            Err(AuditError::Conflict(why)) => {
                tracing::info!(why, "not recorded: another instance changed the run first");
                Ok(false)
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
