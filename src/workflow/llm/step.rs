//! An `llm` step as a definition holds it, and how it runs: its prompt filled in, the completion
//! asked for, and in draft and research modes its text held to options, not decisions.

use serde_json::Value;

use super::{generate, LlmEndpoint, LlmOutcome, LlmSpec};
use crate::governance::filter::{check_output, PhraseList};
use crate::governance::DragMode;
use crate::workflow::context::StepContext;
use crate::workflow::fields::Problems;
use crate::workflow::report::StepReport;
use crate::workflow::template::{fill_templates, Names};

/// A model completion. The prompt may embed templates anywhere (it is text for a model, never a
/// command).
#[derive(Debug, Clone, PartialEq)]
pub struct LlmStep {
    /// The completion as defined, the prompt's templates unfilled.
    pub completion: LlmSpec,
}

impl LlmStep {
    /// Reads the step's `llm` object (see [`LlmSpec::parse`]) and checks what its prompt's
    /// templates name; each problem is added with its path under `path`.
    pub(in crate::workflow) fn parse(
        value: &Value,
        path: &str,
        names: &Names<'_>,
        p: &mut Problems,
    ) -> Option<LlmStep> {
        match LlmSpec::parse(value) {
            Ok(completion) => {
                // A prompt goes to a model: no secret may go into one.
                names.check_embedded(&completion.prompt, &format!("{path}.llm.prompt"), false, p);
                Some(LlmStep { completion })
            }
            Err(problems) => {
                p.add_each(path, problems);
                None
            }
        }
    }

    /// Asks `endpoint` for the completion and reports it, checked against `phrases` in draft and
    /// research modes.
    pub(in crate::workflow) async fn run(
        &self,
        context: StepContext<'_>,
        endpoint: &LlmEndpoint,
        phrases: &PhraseList,
    ) -> StepReport {
        let mut spec = self.completion.clone();
        // Prose for a model: a value that cannot be found becomes empty text. (Every template names
        // something: the definition was checked at load.)
        if let Ok(prompt) = fill_templates(&spec.prompt, |arg| {
            Ok(context.scope.resolve(arg).unwrap_or_default())
        }) {
            spec.prompt = prompt;
        }
        spec.timeout = spec.timeout.min(context.timeout);
        // The endpoint's API key is redacted by `generate` itself.
        let limits = context.output_limits(Vec::new());
        let request = generate(
            context.http.get(),
            endpoint,
            &spec,
            &limits,
            context.cancellation,
        );
        match tokio::time::timeout(context.timeout, request).await {
            Ok(outcome) => report(context.id, outcome, context.drag_mode, phrases),
            Err(_) => StepReport::timed_out(context.id, "llm", context.started, context.timeout),
        }
    }
}

/// An `llm` step's report; in draft and research modes its text must present options, not
/// decisions: prescriptive phrases fail the step, naming each phrase and its byte span.
fn report(
    id: &str,
    outcome: LlmOutcome,
    drag_mode: Option<DragMode>,
    phrases: &PhraseList,
) -> StepReport {
    let violations = match (&outcome.error, drag_mode) {
        (None, Some(mode)) => check_output(&outcome.text, mode, phrases),
        _ => Vec::new(),
    };
    let error = outcome.error.clone().or_else(|| {
        (!violations.is_empty()).then(|| {
            let found: Vec<String> = violations
                .iter()
                .map(|v| format!("'{}' at bytes {}..{}", v.phrase, v.start, v.end))
                .collect();
            format!(
                "prescriptive language in {} output: {} (present options, not decisions)",
                drag_mode.map_or("", DragMode::as_str),
                found.join(", ")
            )
        })
    });
    StepReport {
        id: id.to_owned(),
        kind: "llm",
        success: error.is_none(),
        exit_code: None,
        http_status: None,
        timed_out: false,
        duration_seconds: outcome.duration.as_secs_f64(),
        stdout: outcome.text,
        stderr: String::new(),
        truncated: outcome.truncated,
        error,
        violations,
        code: None,
    }
}
