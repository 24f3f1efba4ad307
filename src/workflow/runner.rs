//! Runs a workflow's steps, in order, for real. The governance pipeline calls [`Runner::run`] only
//! after the run's intent is durable, and records whatever it returns.
//!
//! The runner keeps the order of the steps, their deadlines, cancellation and the reports; what
//! each step does is its kind's business (`command`, `http_step`, `llm`, `openclaw`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use tokio::sync::watch;
use tracing::field::Empty;
use tracing::Instrument;

use super::context::{HttpClient, Scope, StepContext};
use super::definition::Workflow;
use super::llm::LlmEndpoint;
use super::report::StepReport;
use super::secrets::{EnvSecrets, SecretSource};
use super::step::StepKind;
use crate::governance::filter::PhraseList;
use crate::governance::DragMode;
use crate::trace::otel::SPANS;

/// A step's time limit when neither it nor its workflow sets one.
const DEFAULT_STEP_TIMEOUT: Duration = Duration::from_secs(300);
/// The most of each text a step returns (a stream, a response body, a model's answer) that is kept.
const MAX_OUTPUT_BYTES: usize = 64 * 1024;

/// A run that finished.
#[derive(Debug, Clone, PartialEq)]
pub struct RunOutput {
    /// A one-line description of what happened (the contract's `outcome`).
    pub outcome: String,
    pub steps: Vec<StepReport>,
}

/// A run that failed; the steps that ran, the failing one last.
#[derive(Debug, Clone, PartialEq)]
pub struct RunFailure {
    pub error: String,
    pub steps: Vec<StepReport>,
    /// The run stopped because someone cancelled it (or the server is shutting down).
    pub cancelled: bool,
    /// A more specific code than `WORKFLOW_FAILED` (`PRESCRIPTIVE_LANGUAGE`, `OPENCLAW_UNAVAILABLE`).
    pub code: Option<&'static str>,
}

/// What follows a run as it goes: told of each step as it starts and as it ends, and holding the
/// switch that stops the run. The runs registry's live `Run` is one.
pub trait RunObserver: Sync {
    /// The step `id` starts.
    fn step_started(&self, id: &str);
    /// A step ended, as `report` says.
    fn step_finished(&self, report: &StepReport);
    /// Turns true when the run is asked to stop (the running step is stopped too: a command's
    /// process group is killed).
    fn cancellation(&self) -> watch::Receiver<bool>;
}

/// Executes workflows.
#[derive(Debug, Clone)]
pub struct Runner {
    /// Where relative programs are found, and the working directory of command steps.
    workflows_dir: PathBuf,
    services: Arc<Services>,
    /// Where steps' secrets come from.
    secrets: Arc<dyn SecretSource>,
}

/// What steps talk to.
#[derive(Debug, Clone)]
pub struct Services {
    /// The client of `http`, `llm` and `openclaw` steps.
    pub http: HttpClient,
    pub llm: LlmEndpoint,
    /// The prescriptive-language filter's phrases, for AI output in draft and research modes.
    pub phrases: Arc<PhraseList>,
    pub openclaw_url: String,
    /// What `{{ server.url }}` stands for: this server's own base URL, `http://host:port` without a
    /// trailing slash (the bound listener's, or the configured one when there is no listener).
    pub server_url: String,
    /// The user command steps run as (`None`: the server's own); see `COMMAND_RUN_AS`.
    pub run_as: Option<crate::workflow::command::RunAs>,
}

impl Runner {
    /// A runner whose steps read their secrets from the server's environment (see
    /// [`Runner::with_secrets`]).
    pub fn new(workflows_dir: PathBuf, services: Services) -> Runner {
        Runner {
            workflows_dir,
            services: Arc::new(services),
            secrets: Arc::new(EnvSecrets),
        }
    }

    /// The runner with its steps' secrets read from `secrets`.
    pub fn with_secrets(self, secrets: Arc<dyn SecretSource>) -> Runner {
        Runner { secrets, ..self }
    }

    /// Runs `workflow` with checked `parameters`. Steps run in order; the first failure stops the
    /// run. The workflow's `timeout_seconds` bounds the whole run. With an observer, each step is
    /// reported to it as it starts and ends, and its cancellation stops the run (killing a running
    /// command's process group).
    pub async fn run(
        &self,
        workflow: &Workflow,
        parameters: &Map<String, Value>,
        trace_id: &str,
        drag_mode: Option<DragMode>,
        live: Option<&dyn RunObserver>,
    ) -> Result<RunOutput, RunFailure> {
        if workflow.steps.is_empty() {
            return Ok(RunOutput {
                outcome: format!("Workflow '{}' has no steps: nothing to do", workflow.name),
                steps: Vec::new(),
            });
        }
        let deadline = workflow
            .timeout_seconds
            .map(|s| Instant::now() + Duration::from_secs(s));
        let cancellation = live.map(RunObserver::cancellation);
        let is_cancelled = || cancellation.as_ref().is_some_and(|c| *c.borrow());
        let mut reports: Vec<StepReport> = Vec::with_capacity(workflow.steps.len());
        for step in &workflow.steps {
            if is_cancelled() {
                return Err(RunFailure {
                    error: format!(
                        "Workflow '{}' was cancelled before step '{}'",
                        workflow.name, step.id
                    ),
                    steps: reports,
                    cancelled: true,
                    code: None,
                });
            }
            if let Some(live) = live {
                live.step_started(&step.id);
            }
            let started = Instant::now();
            let limit = step
                .timeout_seconds
                .map_or(DEFAULT_STEP_TIMEOUT, Duration::from_secs);
            let limit = match deadline {
                Some(deadline) => limit.min(deadline.saturating_duration_since(started)),
                None => limit,
            };
            let context = StepContext {
                id: &step.id,
                workflow: &workflow.name,
                trace_id,
                drag_mode,
                scope: Scope {
                    parameters,
                    earlier: &reports,
                    server_url: &self.services.server_url,
                    secrets: self.secrets.as_ref(),
                },
                timeout: limit,
                started,
                cancellation: cancellation.clone(),
                max_output_bytes: MAX_OUTPUT_BYTES,
                http: &self.services.http,
                workflows_dir: &self.workflows_dir,
                run_as: self.services.run_as,
            };
            let services = &self.services;
            // The trace's span of the step (an `http` step's request carries its context).
            let span = tracing::info_span!(
                target: SPANS,
                "step",
                otel.name = format!("step {}", step.id),
                sustainbot.step.id = %step.id,
                sustainbot.step.kind = Empty,
                sustainbot.step.timed_out = Empty,
                process.exit.code = Empty,
                http.response.status_code = Empty,
                otel.status_code = Empty,
            );
            let report = async {
                match &step.kind {
                    StepKind::Command(command) => command.run(context).await,
                    StepKind::Http(http) => http.run(context).await,
                    StepKind::Llm(llm) => llm.run(context, &services.llm, &services.phrases).await,
                    StepKind::OpenClaw(openclaw) => {
                        openclaw.run(context, &services.openclaw_url).await
                    }
                }
            }
            .instrument(span.clone())
            .await;
            span.record("sustainbot.step.kind", report.kind)
                .record("sustainbot.step.timed_out", report.timed_out)
                .record("process.exit.code", report.exit_code)
                .record(
                    "http.response.status_code",
                    report.http_status.map(i64::from),
                );
            if !report.success {
                span.record("otel.status_code", "error");
            }
            drop(span);
            let failed = !report.success;
            if let Some(live) = live {
                live.step_finished(&report);
            }
            reports.push(report);
            if failed {
                let last = reports.last().map(describe_failure).unwrap_or_default();
                let cancelled = is_cancelled();
                let error = if cancelled {
                    format!("Workflow '{}' was cancelled: {last}", workflow.name)
                } else if deadline.is_some_and(|d| Instant::now() >= d) {
                    format!(
                        "Workflow '{}' timed out after {} s: {last}",
                        workflow.name,
                        workflow.timeout_seconds.unwrap_or(0)
                    )
                } else {
                    format!("Workflow '{}' failed: {last}", workflow.name)
                };
                let code = reports.last().and_then(|r| {
                    r.code
                        .or_else(|| (!r.violations.is_empty()).then_some("PRESCRIPTIVE_LANGUAGE"))
                });
                return Err(RunFailure {
                    error,
                    steps: reports,
                    cancelled,
                    code,
                });
            }
        }
        Ok(RunOutput {
            outcome: format!(
                "Workflow '{}' completed: {} step(s) succeeded",
                workflow.name,
                reports.len()
            ),
            steps: reports,
        })
    }
}

fn describe_failure(report: &StepReport) -> String {
    format!(
        "step '{}' ({}) {}",
        report.id,
        report.kind,
        report.error.as_deref().unwrap_or("failed")
    )
}

#[cfg(test)]
mod tests;
