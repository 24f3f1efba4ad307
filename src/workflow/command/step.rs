//! A `command` step as a definition holds it, and how it runs: its templates filled in, its
//! environment built, the process run and reported.

use serde_json::{Map, Value};

use super::{run, CommandSpec};
use crate::workflow::context::{unset, StepContext};
use crate::workflow::fields::{name_like, string_list, Problems};
use crate::workflow::redact::OutputLimits;
use crate::workflow::report::StepReport;
use crate::workflow::secrets::server_secret;
use crate::workflow::template::{Arg, Names};

/// Server environment variables every command step sees (its whole environment otherwise is what
/// the step declares).
const PASSED_ENV: [&str; 5] = ["PATH", "HOME", "LANG", "LC_ALL", "TZ"];

/// A program and its arguments; no shell. `env` sets variables (literal or template), `secrets`
/// names server environment variables passed through and redacted from outputs.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandStep {
    /// The program (always a literal) and its arguments.
    pub argv: Vec<Arg>,
    /// Variables set for the step, in order.
    pub env: Vec<(String, Arg)>,
    /// Names of the secrets passed as variables of the same names.
    pub secrets: Vec<String>,
    /// `option_arguments: true`: a template argument may start with `-` (be read as an option).
    /// Otherwise such a value is refused unless a literal `--` comes before it.
    pub option_arguments: bool,
}

impl CommandStep {
    /// Reads the step's `command` (the program and its arguments), `env` and `secrets` keys; each
    /// problem is added with its path under `path`.
    pub(in crate::workflow) fn parse(
        step: &Map<String, Value>,
        path: &str,
        names: &Names<'_>,
        p: &mut Problems,
    ) -> Option<CommandStep> {
        let argv = match step.get("command") {
            Some(Value::Array(items)) if !items.is_empty() => items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    let arg_path = format!("{path}.command[{i}]");
                    match item.as_str() {
                        Some(text) => names.parse_arg(text, &arg_path, p),
                        None => {
                            p.add(&arg_path, "must be a string");
                            Arg::Literal(String::new())
                        }
                    }
                })
                .collect::<Vec<Arg>>(),
            _ => {
                p.add(
                    &format!("{path}.command"),
                    "must be a non-empty array of strings (the program and its arguments; no shell)",
                );
                return None;
            }
        };
        if !matches!(argv.first(), Some(Arg::Literal(program)) if !program.is_empty()) {
            p.add(
                &format!("{path}.command[0]"),
                "the program must be a literal name or path",
            );
        }
        let mut env = Vec::new();
        match step.get("env") {
            None => {}
            Some(Value::Object(vars)) => {
                for (name, value) in vars {
                    let var_path = format!("{path}.env.{name}");
                    match value.as_str() {
                        Some(text) if name_like(name) => {
                            env.push((name.clone(), names.parse_arg(text, &var_path, p)))
                        }
                        _ => p.add(
                            &var_path,
                            "a variable name (letters, digits, _) with a string value",
                        ),
                    }
                }
            }
            Some(_) => p.add(&format!("{path}.env"), "must be an object of strings"),
        }
        let secrets = match step.get("secrets") {
            None => Vec::new(),
            Some(v) => string_list(v, &format!("{path}.secrets"), p).unwrap_or_default(),
        };
        for (i, name) in secrets.iter().enumerate() {
            if let Some(why) = server_secret(name) {
                p.add(&format!("{path}.secrets[{i}]"), why);
            }
        }
        let option_arguments = match step.get("option_arguments") {
            None => false,
            Some(Value::Bool(allowed)) => *allowed,
            Some(_) => {
                p.add(&format!("{path}.option_arguments"), "must be true or false");
                false
            }
        };
        Some(CommandStep {
            argv,
            env,
            secrets,
            option_arguments,
        })
    }

    /// The process to start (arguments and variables filled in, the passed-through server
    /// variables, the run's identity and the secrets) and what may be shown of its output (the
    /// secrets redacted); or the first value that cannot be had.
    fn render(&self, context: &StepContext<'_>) -> Result<(CommandSpec, OutputLimits), String> {
        let resolve = |arg: &Arg| context.scope.resolve(arg);
        let argv: Result<Vec<String>, String> = self.argv.iter().map(resolve).collect();
        let mut vars: Vec<(String, String)> = PASSED_ENV
            .iter()
            .filter_map(|name| std::env::var(name).ok().map(|v| ((*name).to_owned(), v)))
            .collect();
        vars.push((
            "SUSTAINBOT_TRACE_ID".to_owned(),
            context.trace_id.to_owned(),
        ));
        vars.push((
            "SUSTAINBOT_WORKFLOW".to_owned(),
            context.workflow.to_owned(),
        ));
        let mut redact = Vec::new();
        let mut problem = None;
        for (name, value) in &self.env {
            match resolve(value) {
                Ok(value) => vars.push((name.clone(), value)),
                Err(e) => problem = Some(e),
            }
        }
        // Unlike a template, a command's secret may be set and empty: it becomes an empty variable.
        for name in &self.secrets {
            match context.scope.secrets.secret(name) {
                Some(value) => {
                    redact.extend(crate::workflow::redact::forms(&value));
                    vars.push((name.clone(), value));
                }
                None => problem = Some(unset(name)),
            }
        }
        let argv = match (argv, problem) {
            (Ok(argv), None) => argv,
            (Err(e), _) | (_, Some(e)) => return Err(e),
        };
        self.refuse_option_values(&argv)?;
        let spec = CommandSpec {
            argv,
            env: vars,
            base_dir: context.workflows_dir.to_path_buf(),
            timeout: context.timeout,
            run_as: context.run_as,
        };
        Ok((spec, context.output_limits(redact)))
    }

    /// A value filled in from a template that starts with `-` would reach the program as an option
    /// (`--output=FILE`): refused, unless a literal `--` ends the options before it or the step
    /// says `option_arguments: true`.
    fn refuse_option_values(&self, argv: &[String]) -> Result<(), String> {
        if self.option_arguments {
            return Ok(());
        }
        let mut options_ended = false;
        for (template, value) in self.argv.iter().zip(argv).skip(1) {
            match template {
                Arg::Literal(text) if text == "--" => options_ended = true,
                Arg::Literal(_) => {}
                _ if !options_ended && value.starts_with('-') => {
                    return Err(format!(
                        "the value of {template} starts with '-' and would be read as an option; put \"--\" before it in the command, or set \"option_arguments\": true"
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Runs the step to its report: a value that cannot be filled in fails it before anything
    /// starts.
    pub(in crate::workflow) async fn run(&self, context: StepContext<'_>) -> StepReport {
        let (spec, limits) = match self.render(&context) {
            Ok(rendered) => rendered,
            Err(e) => return StepReport::failed(context.id, "command", context.started, e),
        };
        let timeout = spec.timeout;
        match run(&spec, &limits, context.cancellation).await {
            Ok(outcome) => StepReport {
                id: context.id.to_owned(),
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
                code: None,
            },
            Err(e) => StepReport::failed(context.id, "command", context.started, e.to_string()),
        }
    }
}
