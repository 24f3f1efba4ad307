//! An `openclaw` step: submission to the OpenClaw orchestrator (`OPENCLAW_URL`), as the original
//! server did.

use std::time::Duration;

use serde_json::{Map, Value};

use super::context::StepContext;
use super::fields::Problems;
use super::http_step::{self, Body, HttpSpec};
use super::report::StepReport;

/// The most an orchestrator has to accept a submission.
const SUBMIT_TIMEOUT: Duration = Duration::from_secs(30);

/// The step's object, sent as the workflow's payload.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenClawStep {
    /// An object (checked at load).
    pub payload: Value,
}

impl OpenClawStep {
    /// Reads the step's `openclaw` key, which must be an object.
    pub(super) fn parse(step: &Map<String, Value>, path: &str, p: &mut Problems) -> OpenClawStep {
        let payload = step.get("openclaw").cloned().unwrap_or(Value::Null);
        if !payload.is_object() {
            p.add(&format!("{path}.openclaw"), "must be an object");
        }
        OpenClawStep { payload }
    }

    /// Submits the workflow, its payload and parameters to the orchestrator at `base_url`, once.
    pub(super) async fn run(&self, context: StepContext<'_>, base_url: &str) -> StepReport {
        let body = serde_json::json!({
            "workflow": context.workflow, "definition": self.payload,
            "parameters": context.scope.parameters, "execution_id": context.trace_id,
        });
        let spec = HttpSpec {
            method: "POST".to_owned(),
            url: format!("{}/api/workflows/execute", base_url.trim_end_matches('/')),
            headers: vec![("content-type".to_owned(), "application/json".to_owned())],
            body: Some(Body::Json(body)),
            expect_status: Some(vec![200, 202]),
            timeout: context.timeout.min(SUBMIT_TIMEOUT),
            retries: 0,
            backoff: Duration::from_millis(200),
        };
        let limits = context.output_limits(Vec::new());
        let outcome =
            http_step::run(context.http.get(), &spec, &limits, context.cancellation).await;
        http_step::report(context.id, "openclaw", outcome)
    }
}
