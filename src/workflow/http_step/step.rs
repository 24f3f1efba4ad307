//! An `http` step as a definition holds it, and how it runs: its templates filled in, the secrets
//! it carries redacted from what comes back, the request sent and reported.

use serde_json::Value;

use super::send::{run, HttpOutcome};
use super::spec::HttpSpec;
use crate::workflow::context::{Scope, StepContext};
use crate::workflow::fields::Problems;
use crate::workflow::report::StepReport;
use crate::workflow::template::Names;

/// An HTTP request. The URL (after its host), header values and the body may embed templates;
/// [`HttpSpec::render`] fills them in at run time.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpStep {
    /// The request as defined, templates unfilled.
    pub request: HttpSpec,
}

impl HttpStep {
    /// Reads the step's `http` object (see [`HttpSpec::parse`]) and checks what its templates name;
    /// each problem is added with its path under `path`.
    pub(in crate::workflow) fn parse(
        value: &Value,
        path: &str,
        names: &Names<'_>,
        p: &mut Problems,
    ) -> Option<HttpStep> {
        match HttpSpec::parse(value) {
            Ok(request) => {
                for (key, text) in request.templated_texts() {
                    // A URL is logged: no secret may go into one.
                    let secrets_allowed = key != "url";
                    names.check_embedded(text, &format!("{path}.http.{key}"), secrets_allowed, p);
                }
                Some(HttpStep { request })
            }
            Err(problems) => {
                p.add_each(path, problems);
                None
            }
        }
    }

    /// Sends the request and reports it. A template that cannot be filled in safely fails the
    /// step; nothing is sent then. The step's time bounds all attempts together.
    pub(in crate::workflow) async fn run(&self, context: StepContext<'_>) -> StepReport {
        let mut spec = match self.request.render(|arg| context.scope.resolve(arg)) {
            Ok(spec) => spec,
            Err(e) => return StepReport::failed(context.id, "http", context.started, e),
        };
        spec.timeout = spec.timeout.min(context.timeout);
        // With traces exported, the request continues the run's trace.
        crate::trace::otel::inject(&mut spec.headers);
        // Every secret the request carries is redacted from what comes back.
        let limits = context.output_limits(self.secret_values(&context.scope));
        let request = run(context.http.get(), &spec, &limits, context.cancellation);
        match tokio::time::timeout(context.timeout, request).await {
            Ok(outcome) => report(context.id, "http", outcome),
            Err(_) => StepReport::timed_out(context.id, "http", context.started, context.timeout),
        }
    }

    /// The values of the secrets its templates name (those that are set), in every form they may
    /// come back in.
    fn secret_values(&self, scope: &Scope<'_>) -> Vec<String> {
        self.request
            .secret_names()
            .iter()
            .filter_map(|name| scope.secret(name).ok())
            .flat_map(|value| HttpSpec::redaction_forms(&value))
            .collect()
    }
}

/// The report of a step of `kind` that made one HTTP exchange: the response body as output.
pub(in crate::workflow) fn report(
    id: &str,
    kind: &'static str,
    outcome: HttpOutcome,
) -> StepReport {
    StepReport {
        id: id.to_owned(),
        kind,
        success: outcome.success(),
        exit_code: None,
        http_status: outcome.status,
        timed_out: false,
        duration_seconds: outcome.duration.as_secs_f64(),
        stdout: outcome.body,
        stderr: String::new(),
        truncated: outcome.truncated,
        error: outcome.error,
        violations: Vec::new(),
        code: None,
    }
}
