//! What a run that went through the gate produced, and its one serialization: the body of the
//! HTTP answer and the command line's output alike.

use serde::{Serialize, Serializer};
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};

use crate::workflow::StepReport;

/// What a run that went through the gate produced.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RunReport {
    pub success: bool,
    pub trace_id: String,
    pub workflow_name: String,
    /// The runner's description of what happened (success).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// Why the run failed (failure).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The failure's code (`WORKFLOW_FAILED`, `PRESCRIPTIVE_LANGUAGE`, `OPENCLAW_UNAVAILABLE`,
    /// `CANCELLED`); `None` on success.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = failure_code)]
    pub code: Option<&'static str>,
    pub audit_logged: bool,
    pub governance_summary: String,
    /// Seconds from admission to the outcome; shown to the hundredth.
    #[serde(serialize_with = "hundredths")]
    pub duration_seconds: f64,
    /// What each step did (outputs capped and redacted).
    pub steps: Vec<StepReport>,
    /// Stopped by a cancellation.
    #[serde(skip)]
    pub cancelled: bool,
}

/// The codes a failed run's report carries.
pub const RUN_FAILURES: [&str; 4] = [
    "WORKFLOW_FAILED",
    "PRESCRIPTIVE_LANGUAGE",
    "OPENCLAW_UNAVAILABLE",
    "CANCELLED",
];

/// The schema of [`RunReport::code`]: one of the run failures' codes.
fn failure_code() -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(RUN_FAILURES))
        .description(Some(
            "`WORKFLOW_FAILED` (a step failed), `PRESCRIPTIVE_LANGUAGE` (AI output in draft or \
             research mode gave decisions), `OPENCLAW_UNAVAILABLE` (an `openclaw` step could not \
             reach `OPENCLAW_URL`), `CANCELLED` (stopped by a cancellation).",
        ))
        .into()
}

fn hundredths<S: Serializer>(seconds: &f64, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64((seconds * 100.0).round() / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(success: bool) -> RunReport {
        RunReport {
            success,
            trace_id: "t-1".to_owned(),
            workflow_name: "noop".to_owned(),
            outcome: success.then(|| "done".to_owned()),
            error: (!success).then(|| "it broke".to_owned()),
            code: (!success).then_some("WORKFLOW_FAILED"),
            audit_logged: true,
            governance_summary: "summary".to_owned(),
            duration_seconds: 0.123_456,
            steps: Vec::new(),
            cancelled: false,
        }
    }

    #[test]
    fn a_success_has_its_outcome_and_a_failure_its_error_and_code() {
        let ok = serde_json::to_value(report(true)).unwrap();
        assert_eq!(ok["outcome"], "done");
        assert!(
            ok.get("error").is_none() && ok.get("code").is_none(),
            "{ok}"
        );
        assert_eq!(ok["duration_seconds"], 0.12);
        let failed = serde_json::to_value(report(false)).unwrap();
        assert_eq!(failed["code"], "WORKFLOW_FAILED");
        assert_eq!(failed["error"], "it broke");
        assert!(failed.get("outcome").is_none(), "{failed}");
        assert!(failed.get("cancelled").is_none(), "{failed}");
    }
}
