//! What a step kind is given to run one step: the facts of this run and its limits. The step's
//! definition is the kind's own struct; nothing here comes from it.

use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use tokio::sync::watch;

use super::redact::OutputLimits;
use super::report::StepReport;
use super::secrets::SecretSource;
use super::template::Arg;
use crate::governance::DragMode;

/// One step's run.
pub(super) struct StepContext<'a> {
    /// The step's id, for its report.
    pub(super) id: &'a str,
    /// The workflow's name.
    pub(super) workflow: &'a str,
    pub(super) trace_id: &'a str,
    /// The DRAG mode the run was governed under (`None` for an ungoverned run).
    pub(super) drag_mode: Option<DragMode>,
    /// Where the step's templates get their values.
    pub(super) scope: Scope<'a>,
    /// The step's time: its own limit, or what is left of the workflow's, whichever is less.
    pub(super) timeout: Duration,
    pub(super) started: Instant,
    /// Turns true when the run is asked to stop.
    pub(super) cancellation: Option<watch::Receiver<bool>>,
    /// The most of each text a step returns (a stream, a body, a model's answer) that is kept.
    pub(super) max_output_bytes: usize,
    /// The HTTP client steps share.
    pub(super) http: &'a HttpClient,
    /// Where relative programs are found, and the working directory of command steps.
    pub(super) workflows_dir: &'a Path,
    /// The user command steps run as (`None`: the server's own).
    pub(super) run_as: Option<crate::workflow::command::RunAs>,
}

impl StepContext<'_> {
    /// What the step may show of the texts it gets back: the run's cap, with `secrets` redacted.
    pub(super) fn output_limits(&self, secrets: Vec<String>) -> OutputLimits {
        OutputLimits {
            max_bytes: self.max_output_bytes,
            redact: secrets,
        }
    }
}

/// What templates see during a run: the one place a template gets its value.
#[derive(Clone, Copy)]
pub(super) struct Scope<'a> {
    pub(super) parameters: &'a Map<String, Value>,
    pub(super) earlier: &'a [StepReport],
    pub(super) server_url: &'a str,
    /// Where `{{ secrets.NAME }}` and a command's `secrets` get their values.
    pub(super) secrets: &'a dyn SecretSource,
}

impl Scope<'_> {
    /// A template's value: a parameter as text (strings as they are, anything else as JSON), an
    /// earlier step's standard output without its final newline, the server's base URL, or a
    /// secret.
    pub(super) fn resolve(&self, arg: &Arg) -> Result<String, String> {
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
            Arg::Secret(name) => self.secret(name),
        }
    }

    /// A secret's value from the run's source, which must be set and not empty.
    pub(super) fn secret(&self, name: &str) -> Result<String, String> {
        match self.secrets.secret(name) {
            Some(value) if !value.is_empty() => Ok(value),
            _ => Err(unset(name)),
        }
    }
}

/// Why a step cannot have the secret `name`.
pub(super) fn unset(name: &str) -> String {
    format!("secret {name} is not set in the server's environment")
}

/// The HTTP client `http`, `llm` and `openclaw` steps share, built on first use: most servers
/// never run such a step, and the TLS set-up (root certificates) costs memory.
#[derive(Debug, Clone, Default)]
pub struct HttpClient(OnceLock<reqwest::Client>);

impl HttpClient {
    /// The client, built now if it was not yet.
    pub(super) fn get(&self) -> &reqwest::Client {
        self.0.get_or_init(|| {
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
