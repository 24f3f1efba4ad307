//! Runs a workflow's steps, in order, for real. The governance pipeline calls [`Runner::run`] only
//! after the run's intent is durable, and records whatever it returns.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Map, Value};

use std::sync::Arc;

use super::command::{self, CommandSpec};
use super::definition::Workflow;
use super::http_step::{self, Body, HttpOutcome, HttpSpec};
use super::llm::{self, LlmEndpoint, LlmOutcome};
use super::step::{Step, StepKind};
use super::template::{fill_templates, Arg};
use crate::governance::filter::{check_output, PhraseList};
use crate::governance::DragMode;
use crate::runs::Run;

/// A step's time limit when neither it nor its workflow sets one.
const DEFAULT_STEP_TIMEOUT: Duration = Duration::from_secs(300);
/// Output kept per stream of a command step.
const MAX_OUTPUT_BYTES: usize = 64 * 1024;
/// Server environment variables every command step sees (its whole environment otherwise is what
/// the step declares).
const PASSED_ENV: [&str; 5] = ["PATH", "HOME", "LANG", "LC_ALL", "TZ"];

/// What one step did.
#[derive(Debug, Clone, PartialEq, Serialize)]
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
    pub violations: Vec<crate::governance::filter::Violation>,
    pub timed_out: bool,
    pub duration_seconds: f64,
    pub stdout: String,
    pub stderr: String,
    pub truncated: bool,
    pub error: Option<String>,
}

impl StepReport {
    fn failed(step: &Step, started: Instant, error: String) -> StepReport {
        StepReport {
            id: step.id.clone(),
            kind: step.kind.name(),
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
        }
    }
}

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
    /// A more specific code than `WORKFLOW_FAILED` (`PRESCRIPTIVE_LANGUAGE`).
    pub code: Option<&'static str>,
}

/// Executes workflows.
#[derive(Debug, Clone)]
pub struct Runner {
    /// Where relative programs are found, and the working directory of command steps.
    workflows_dir: PathBuf,
    services: Arc<Services>,
}

/// What steps talk to.
#[derive(Debug, Clone)]
pub struct Services {
    /// Built on first use: most servers never run an `http` or `llm` step, and the TLS set-up (root
    /// certificates) costs memory.
    pub http: std::sync::OnceLock<reqwest::Client>,
    pub llm: LlmEndpoint,
    /// The prescriptive-language filter's phrases, for AI output in draft and research modes.
    pub phrases: Arc<PhraseList>,
    pub openclaw_url: String,
    /// What `{{ server.url }}` stands for: this server's own base URL, `http://host:port` without a
    /// trailing slash (the bound listener's, or the configured one when there is no listener).
    pub server_url: String,
}

impl Services {
    /// The shared HTTP client.
    pub fn http(&self) -> &reqwest::Client {
        self.http.get_or_init(|| {
            reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(10))
                // A redirect may not take a step's request to another origin: what a step reaches
                // is what its definition names (templated values are encoded into the URL, and a
                // redirect must not undo that).
                .redirect(reqwest::redirect::Policy::custom(|attempt| {
                    let same_origin = attempt
                        .previous()
                        .first()
                        .is_some_and(|first| first.origin() == attempt.url().origin());
                    if !same_origin {
                        attempt.error("redirect to another origin refused")
                    } else if attempt.previous().len() > 5 {
                        attempt.error("more than 5 redirects")
                    } else {
                        attempt.follow()
                    }
                }))
                .user_agent(concat!("sustainbot/", env!("CARGO_PKG_VERSION")))
                .build()
                // Building fails only when the TLS back end cannot initialise; a default client
                // then reports the problem on each request.
                .unwrap_or_default()
        })
    }
}

impl Runner {
    pub fn new(workflows_dir: PathBuf, services: Services) -> Runner {
        Runner {
            workflows_dir,
            services: Arc::new(services),
        }
    }

    /// An `llm` step's report; in draft and research modes its text must present options, not
    /// decisions: prescriptive phrases fail the step, naming each phrase and its byte span.
    fn llm_report(
        &self,
        step: &Step,
        outcome: LlmOutcome,
        drag_mode: Option<DragMode>,
    ) -> StepReport {
        let violations = match (&outcome.error, drag_mode) {
            (None, Some(mode)) => check_output(&outcome.text, mode, &self.services.phrases),
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
            id: step.id.clone(),
            kind: "llm",
            success: error.is_none(),
            exit_code: None,
            http_status: None,
            timed_out: false,
            duration_seconds: outcome.duration.as_secs_f64(),
            stdout: outcome.text,
            stderr: String::new(),
            truncated: false,
            error,
            violations,
        }
    }

    /// Runs `workflow` with checked `parameters`. Steps run in order; the first failure stops the
    /// run. The workflow's `timeout_seconds` bounds the whole run. With a live `Run`, each step is
    /// reported to it as it starts and ends, and cancelling it stops the run (killing a running
    /// command's process group).
    pub async fn run(
        &self,
        workflow: &Workflow,
        parameters: &Map<String, Value>,
        trace_id: &str,
        drag_mode: Option<DragMode>,
        live: Option<&Run>,
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
        let cancellation = live.map(Run::cancellation);
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
            let scope = Scope {
                parameters,
                earlier: &reports,
                server_url: &self.services.server_url,
            };
            let report = match &step.kind {
                StepKind::Command { argv, env, secrets } => {
                    let context = StepContext {
                        scope,
                        timeout: limit,
                        workflow,
                        trace_id,
                        started,
                        cancellation: cancellation.clone(),
                    };
                    self.command(step, argv, env, secrets, context).await
                }
                // A template that cannot be filled in safely fails the step; nothing is sent.
                StepKind::Http(spec) => match spec.render(|arg| scope.resolve(arg)) {
                    Err(e) => StepReport::failed(step, started, e),
                    Ok(mut spec) => {
                        // Every secret the request carries is redacted from what comes back.
                        spec.redact = spec_secrets(&step.kind);
                        spec.max_body_bytes = MAX_OUTPUT_BYTES;
                        spec.timeout = spec.timeout.min(limit);
                        let request =
                            http_step::run(self.services.http(), &spec, cancellation.clone());
                        // The step's limit bounds all attempts together.
                        match tokio::time::timeout(limit, request).await {
                            Ok(outcome) => http_report(step, outcome),
                            Err(_) => timed_out(step, started, limit),
                        }
                    }
                },
                StepKind::Llm(spec) => {
                    let mut spec = spec.clone();
                    // Prose for a model: a value that cannot be found becomes empty text. (Every
                    // template names something: the definition was checked at load.)
                    if let Ok(prompt) = fill_templates(&spec.prompt, |arg| {
                        Ok(scope.resolve(arg).unwrap_or_default())
                    }) {
                        spec.prompt = prompt;
                    }
                    spec.max_output_bytes = MAX_OUTPUT_BYTES;
                    spec.timeout = spec.timeout.min(limit);
                    let request = llm::generate(
                        self.services.http(),
                        &self.services.llm,
                        &spec,
                        cancellation.clone(),
                    );
                    match tokio::time::timeout(limit, request).await {
                        Ok(outcome) => self.llm_report(step, outcome, drag_mode),
                        Err(_) => timed_out(step, started, limit),
                    }
                }
                StepKind::Openclaw(payload) => {
                    let body = serde_json::json!({
                        "workflow": workflow.name, "definition": payload,
                        "parameters": parameters, "execution_id": trace_id,
                    });
                    let spec = HttpSpec {
                        method: "POST".to_owned(),
                        url: format!(
                            "{}/api/workflows/execute",
                            self.services.openclaw_url.trim_end_matches('/')
                        ),
                        headers: vec![("content-type".to_owned(), "application/json".to_owned())],
                        body: Some(Body::Json(body)),
                        expect_status: Some(vec![200, 202]),
                        timeout: limit.min(Duration::from_secs(30)),
                        retries: 0,
                        backoff: Duration::from_millis(200),
                        max_body_bytes: MAX_OUTPUT_BYTES,
                        redact: Vec::new(),
                    };
                    let outcome =
                        http_step::run(self.services.http(), &spec, cancellation.clone()).await;
                    let mut report = http_report(step, outcome);
                    report.kind = "openclaw";
                    report
                }
            };
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
                let code = reports
                    .last()
                    .filter(|r| !r.violations.is_empty())
                    .map(|_| "PRESCRIPTIVE_LANGUAGE");
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

    async fn command(
        &self,
        step: &Step,
        argv: &[Arg],
        env: &[(String, Arg)],
        secrets: &[String],
        context: StepContext<'_>,
    ) -> StepReport {
        let StepContext {
            scope,
            timeout,
            workflow,
            trace_id,
            started,
            cancellation,
        } = context;
        let resolve = |arg: &Arg| scope.resolve(arg);
        let argv: Result<Vec<String>, String> = argv.iter().map(resolve).collect();
        let mut vars: Vec<(String, String)> = PASSED_ENV
            .iter()
            .filter_map(|name| std::env::var(name).ok().map(|v| ((*name).to_owned(), v)))
            .collect();
        vars.push(("SUSTAINBOT_TRACE_ID".to_owned(), trace_id.to_owned()));
        vars.push(("SUSTAINBOT_WORKFLOW".to_owned(), workflow.name.clone()));
        let mut redact = Vec::new();
        let mut problem = None;
        for (name, value) in env {
            match resolve(value) {
                Ok(value) => vars.push((name.clone(), value)),
                Err(e) => problem = Some(e),
            }
        }
        for name in secrets {
            match std::env::var(name) {
                Ok(value) => {
                    redact.push(value.clone());
                    vars.push((name.clone(), value));
                }
                Err(_) => {
                    problem = Some(format!(
                        "secret {name} is not set in the server's environment"
                    ))
                }
            }
        }
        let argv = match (argv, problem) {
            (Ok(argv), None) => argv,
            (Err(e), _) | (_, Some(e)) => return StepReport::failed(step, started, e),
        };
        let spec = CommandSpec {
            argv,
            env: vars,
            base_dir: self.workflows_dir.clone(),
            timeout,
            max_output_bytes: MAX_OUTPUT_BYTES,
            redact,
        };
        match command::run(&spec, cancellation).await {
            Ok(outcome) => StepReport {
                id: step.id.clone(),
                kind: "command",
                success: outcome.success(),
                exit_code: outcome.exit_code,
                http_status: None,
                violations: Vec::new(),
                timed_out: outcome.timed_out,
                duration_seconds: outcome.duration.as_secs_f64(),
                truncated: outcome.stdout_truncated || outcome.stderr_truncated,
                error: (!outcome.success()).then(|| {
                    match (outcome.timed_out, outcome.exit_code, outcome.signal) {
                        (true, _, _) => format!(
                            "timed out after {} s and was killed with its children",
                            timeout.as_secs()
                        ),
                        (_, Some(code), _) => format!("exited with code {code}"),
                        (_, _, Some(signal)) => format!("killed by signal {signal}"),
                        _ => "failed".to_owned(),
                    }
                }),
                stdout: outcome.stdout,
                stderr: outcome.stderr,
            },
            Err(e) => StepReport::failed(step, started, e.to_string()),
        }
    }
}

/// What a step needs to know about its run.
struct StepContext<'a> {
    scope: Scope<'a>,
    timeout: Duration,
    workflow: &'a Workflow,
    trace_id: &'a str,
    started: Instant,
    cancellation: Option<tokio::sync::watch::Receiver<bool>>,
}

/// A step that ran out of time.
fn timed_out(step: &Step, started: Instant, limit: Duration) -> StepReport {
    let mut report = StepReport::failed(
        step,
        started,
        format!("timed out after {} s", limit.as_secs()),
    );
    report.timed_out = true;
    report
}

/// An `http` (or `openclaw`) step's report: the response body as output.
fn http_report(step: &Step, outcome: HttpOutcome) -> StepReport {
    StepReport {
        id: step.id.clone(),
        kind: "http",
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
    }
}

/// What templates see during a run: the one place a template gets its value.
#[derive(Clone, Copy)]
struct Scope<'a> {
    parameters: &'a Map<String, Value>,
    earlier: &'a [StepReport],
    server_url: &'a str,
}

impl Scope<'_> {
    /// A template's value: a parameter as text (strings as they are, anything else as JSON), an
    /// earlier step's standard output without its final newline, or the server's base URL.
    fn resolve(&self, arg: &Arg) -> Result<String, String> {
        match arg {
            Arg::Literal(text) => Ok(text.clone()),
            Arg::Parameter(name) => match self.parameters.get(name) {
                Some(Value::String(text)) => Ok(text.clone()),
                Some(other) => Ok(other.to_string()),
                None => Err(format!(
                    "parameter '{name}' was not given and has no default"
                )),
            },
            Arg::StepOutput(id) => self
                .earlier
                .iter()
                .find(|r| &r.id == id)
                .map(|r| r.stdout.trim_end_matches(['\n', '\r']).to_owned())
                .ok_or_else(|| format!("step '{id}' has no output")),
            Arg::ServerUrl => Ok(self.server_url.to_owned()),
            Arg::Secret(name) => secret(name),
        }
    }
}

/// The values of the secrets an `http` step's templates name (those that are set).
fn spec_secrets(kind: &StepKind) -> Vec<String> {
    let StepKind::Http(spec) = kind else {
        return Vec::new();
    };
    spec.secret_names()
        .iter()
        .filter_map(|name| secret(name).ok())
        .flat_map(|value| HttpSpec::redaction_forms(&value))
        .collect()
}

/// A secret's value: the server's environment variable `name`, which must be set and not empty.
fn secret(name: &str) -> Result<String, String> {
    match std::env::var(name) {
        Ok(value) if !value.is_empty() => Ok(value),
        _ => Err(format!(
            "secret {name} is not set in the server's environment"
        )),
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
