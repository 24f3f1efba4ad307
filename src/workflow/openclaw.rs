//! An `openclaw` step: submission to the OpenClaw orchestrator (`OPENCLAW_URL`), as the original
//! server did.
//!
//! The outcome is honest: an orchestrator that cannot be reached fails the step with
//! `OPENCLAW_UNAVAILABLE` (the original answered success, "executed locally", without doing
//! anything), and so does an answer other than 200 or 202, or a 2xx body that says the submission
//! failed.

use std::time::Duration;

use serde_json::{Map, Value};

use super::context::StepContext;
use super::fields::Problems;
use super::http_step::{self, Body, HttpSpec};
use super::report::StepReport;

/// The most an orchestrator has to accept a submission (the original's 30 s).
const SUBMIT_TIMEOUT: Duration = Duration::from_secs(30);

/// The code of a run whose submission never reached the orchestrator.
pub const OPENCLAW_UNAVAILABLE: &str = "OPENCLAW_UNAVAILABLE";

/// The longest text of an orchestrator's own failure message kept in the step's error.
const MAX_REASON_CHARS: usize = 300;

/// What the step posts to `OPENCLAW_URL/api/workflows/execute` (its `openclaw_body` key).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OpenClawBody {
    /// `{"workflow": NAME, "definition": <openclaw>, "parameters", "execution_id"}` (the default).
    #[default]
    Definition,
    /// The original server's body, `{"workflow": <openclaw>, "parameters", "execution_id"}`: what
    /// a legacy workflow file, and its migrated definition, posts.
    Original,
}

/// The step's object, sent as the workflow's payload.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenClawStep {
    /// An object (checked at load).
    pub payload: Value,
    pub body: OpenClawBody,
}

impl OpenClawStep {
    /// Reads the step's `openclaw` key, which must be an object, and its `openclaw_body`
    /// (`"definition"`, the default, or `"original"`).
    pub(super) fn parse(step: &Map<String, Value>, path: &str, p: &mut Problems) -> OpenClawStep {
        let payload = step.get("openclaw").cloned().unwrap_or(Value::Null);
        if !payload.is_object() {
            p.add(&format!("{path}.openclaw"), "must be an object");
        }
        let body = match step.get("openclaw_body") {
            None | Some(Value::Null) => OpenClawBody::Definition,
            Some(Value::String(s)) if s == "definition" => OpenClawBody::Definition,
            Some(Value::String(s)) if s == "original" => OpenClawBody::Original,
            Some(_) => {
                p.add(
                    &format!("{path}.openclaw_body"),
                    "must be \"definition\" or \"original\"",
                );
                OpenClawBody::Definition
            }
        };
        OpenClawStep { payload, body }
    }

    /// The JSON body the step posts for a run of `workflow` with `parameters`, whose execution id
    /// is the run's trace id.
    pub fn request_body(
        &self,
        workflow: &str,
        parameters: &Map<String, Value>,
        trace_id: &str,
    ) -> Value {
        match self.body {
            OpenClawBody::Definition => serde_json::json!({
                "workflow": workflow, "definition": self.payload,
                "parameters": parameters, "execution_id": trace_id,
            }),
            OpenClawBody::Original => serde_json::json!({
                "workflow": self.payload, "parameters": parameters, "execution_id": trace_id,
            }),
        }
    }

    /// Submits the workflow, its payload and parameters to the orchestrator at `base_url`, once
    /// (a POST is not repeated: the orchestrator may have started it).
    pub(super) async fn run(&self, context: StepContext<'_>, base_url: &str) -> StepReport {
        let body = self.request_body(context.workflow, context.scope.parameters, context.trace_id);
        let mut spec = HttpSpec {
            method: "POST".to_owned(),
            url: format!("{}/api/workflows/execute", base_url.trim_end_matches('/')),
            headers: vec![("content-type".to_owned(), "application/json".to_owned())],
            body: Some(Body::Json(body)),
            expect_status: Some(vec![200, 202]),
            timeout: context.timeout.min(SUBMIT_TIMEOUT),
            retries: 0,
            backoff: Duration::from_millis(200),
        };
        // With traces exported, the submission continues the run's trace.
        crate::trace::otel::inject(&mut spec.headers);
        let limits = context.output_limits(Vec::new());
        let outcome =
            http_step::run(context.http.get(), &spec, &limits, context.cancellation).await;
        // No response at all (refused, unresolvable, timed out, a URL that cannot be used), and
        // not because the run was cancelled: the orchestrator is not there.
        let unreachable = outcome.status.is_none() && outcome.error.as_deref() != Some("cancelled");
        let reported = outcome
            .success()
            .then(|| reported_failure(&outcome.body))
            .flatten();
        let mut report = http_step::report(context.id, "openclaw", outcome);
        if unreachable {
            let cause = report.error.take().unwrap_or_default();
            report.error = Some(format!("OpenClaw is unreachable (OPENCLAW_URL): {cause}"));
            report.code = Some(OPENCLAW_UNAVAILABLE);
        } else if let Some(reason) = reported {
            report.success = false;
            report.error = Some(format!("OpenClaw reported a failure: {reason}"));
        }
        report
    }
}

/// Why an accepted submission's answer says it failed: a JSON object with `"success": false`, or
/// a `status` of `failed`, `failure`, `error` or `rejected` (any case). `None` for anything else,
/// including a body that is not JSON.
pub(super) fn reported_failure(body: &str) -> Option<String> {
    let Ok(Value::Object(answer)) = serde_json::from_str::<Value>(body) else {
        return None;
    };
    let status = answer.get("status").and_then(Value::as_str);
    let failed_status = status.is_some_and(|s| {
        ["failed", "failure", "error", "rejected"].contains(&s.to_ascii_lowercase().as_str())
    });
    if answer.get("success") != Some(&Value::Bool(false)) && !failed_status {
        return None;
    }
    let message = ["error", "message"]
        .iter()
        .find_map(|key| answer.get(*key).and_then(Value::as_str))
        .map(|text| text.chars().take(MAX_REASON_CHARS).collect::<String>());
    Some(match (status, message) {
        (Some(status), Some(message)) => format!("status \"{status}\": {message}"),
        (Some(status), None) if failed_status => format!("status \"{status}\""),
        (_, Some(message)) => message,
        _ => "\"success\": false".to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn step(definition: Value) -> Result<OpenClawStep, Vec<String>> {
        let Value::Object(step) = definition else {
            panic!("a step is an object")
        };
        let mut p = Problems::default();
        let parsed = OpenClawStep::parse(&step, "steps[0]", &mut p);
        if p.0.is_empty() {
            Ok(parsed)
        } else {
            Err(p.0)
        }
    }

    #[test]
    fn the_default_body_names_the_workflow_and_carries_the_payload_as_definition() {
        let submit = step(json!({"openclaw": {"queue": "fast"}})).unwrap();
        let parameters = json!({"env": "staging"}).as_object().cloned().unwrap();
        assert_eq!(
            submit.request_body("deploy", &parameters, "trace-1"),
            json!({"workflow": "deploy", "definition": {"queue": "fast"},
                   "parameters": {"env": "staging"}, "execution_id": "trace-1"})
        );
    }

    #[test]
    fn the_original_body_is_the_payload_as_workflow_and_nothing_else() {
        let original = json!({"name": "example-workflow",
                              "steps": [{"type": "task", "name": "step1"}]});
        let submit = step(json!({"openclaw": original, "openclaw_body": "original"})).unwrap();
        assert_eq!(submit.body, OpenClawBody::Original);
        let body = submit.request_body("example", &Map::new(), "trace-2");
        assert_eq!(
            body,
            json!({"workflow": original, "parameters": {}, "execution_id": "trace-2"})
        );
    }

    #[test]
    fn openclaw_body_is_definition_or_original() {
        assert_eq!(
            step(json!({"openclaw": {}, "openclaw_body": "definition"}))
                .unwrap()
                .body,
            OpenClawBody::Definition
        );
        assert_eq!(
            step(json!({"openclaw": {}, "openclaw_body": "legacy"})).unwrap_err(),
            ["steps[0].openclaw_body: must be \"definition\" or \"original\""]
        );
    }

    #[test]
    fn an_answer_saying_failure_is_a_failure() {
        assert_eq!(
            reported_failure(r#"{"success": false, "error": "unknown task type"}"#).as_deref(),
            Some("unknown task type")
        );
        assert_eq!(
            reported_failure(r#"{"status": "FAILED"}"#).as_deref(),
            Some("status \"FAILED\"")
        );
        assert_eq!(
            reported_failure(r#"{"status": "rejected", "message": "queue full"}"#).as_deref(),
            Some("status \"rejected\": queue full")
        );
        assert_eq!(
            reported_failure(r#"{"success": false}"#).as_deref(),
            Some("\"success\": false")
        );
    }

    #[test]
    fn any_other_answer_is_not_a_reported_failure() {
        for body in [
            r#"{"status": "submitted", "execution_id": "x"}"#,
            r#"{"success": true}"#,
            r#"{"status": "queued", "error": null}"#,
            "accepted",
            "",
            "[]",
        ] {
            assert_eq!(reported_failure(body), None, "{body}");
        }
    }
}
