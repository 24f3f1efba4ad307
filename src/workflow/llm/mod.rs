//! Runs one `llm` workflow step: a single, non-streaming completion from a model server.
//!
//! Two wire formats:
//! - **Ollama** (the original SustainBot's `LLM_HOST` / `LLM_PORT` / `LLM_MODEL`): `POST
//!   {base}/api/generate` with `{"model", "prompt", "system"?, "stream": false}`; the text is the
//!   answer's `response`.
//! - **OpenAI-compatible** (OpenAI, vLLM, llama.cpp server, LM Studio, LiteLLM...): `POST
//!   {base}/v1/chat/completions` (or `{base}/chat/completions` when the base already ends in `/v1`)
//!   with `{"model", "messages": [system?, user]}` and `Authorization: Bearer <api_key>` when a key
//!   is set; the text is `choices[0].message.content`.
//!
//! Every failure (unreachable server, non-2xx answer, malformed or unexpected JSON, timeout,
//! cancellation) is reported in [`LlmOutcome::error`], never as a panic; the API key is never shown.

mod answer;
mod step;

use std::fmt;
use std::pin::pin;
use std::time::{Duration, Instant};

use reqwest::Url;
use serde_json::{json, Value};
use tokio::sync::watch;

use self::answer::{exchange, Answer};
pub use self::step::LlmStep;
use super::cancel::until_cancelled;
use super::display::display_url;
use super::fields::{step_object, timeout_seconds};
use super::redact::{cap, redact, OutputLimits, REDACTED};

/// Bound on the whole request when `timeout_seconds` is not given (local models can be slow).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
/// The most of the server's answer that is read (Ollama's answer carries a `context` array besides
/// the text); a larger answer is an error.
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

const KEYS: [&str; 5] = ["prompt", "system", "model", "api", "timeout_seconds"];

/// The model server's wire format.
#[derive(Debug, Clone, PartialEq)]
pub enum Api {
    Ollama,
    OpenAi,
}

impl Api {
    fn path(&self, base_ends_in_v1: bool) -> &'static str {
        match self {
            Api::Ollama => "/api/generate",
            Api::OpenAi if base_ends_in_v1 => "/chat/completions",
            Api::OpenAi => "/v1/chat/completions",
        }
    }
}

/// One completion to ask for. Built by [`LlmSpec::parse`] from the step's `llm` object; its prompt's
/// templates are filled in at run time.
#[derive(Debug, Clone, PartialEq)]
pub struct LlmSpec {
    pub prompt: String,
    pub system: Option<String>,
    /// Overrides the endpoint's model.
    pub model: Option<String>,
    /// Overrides the endpoint's wire format.
    pub api: Option<Api>,
    /// Bound on the whole request (connecting, generating, reading the answer).
    pub timeout: Duration,
}

impl LlmSpec {
    /// Reads the step's `llm` object: `prompt` (required, non-empty string), `system` (string),
    /// `model` (non-empty string), `api` (`"ollama"` or `"openai"`), `timeout_seconds` (positive
    /// whole number, default 120). Unknown keys are refused.
    ///
    /// On failure, every problem as `"llm.<key>: message"`.
    pub fn parse(value: &Value) -> Result<LlmSpec, Vec<String>> {
        let (map, mut problems) = step_object(value, "llm", &KEYS)?;
        let mut add = |key: &str, message: String| problems.push(format!("llm.{key}: {message}"));
        let prompt = match map.get("prompt") {
            None | Some(Value::Null) => {
                add("prompt", "required".to_owned());
                String::new()
            }
            Some(Value::String(p)) if p.trim().is_empty() => {
                add("prompt", "must not be empty".to_owned());
                String::new()
            }
            Some(Value::String(p)) => p.clone(),
            Some(_) => {
                add("prompt", "must be a string".to_owned());
                String::new()
            }
        };
        let system = match map.get("system") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                add("system", "must be a string".to_owned());
                None
            }
        };
        let model = match map.get("model") {
            None | Some(Value::Null) => None,
            Some(Value::String(m)) if !m.trim().is_empty() => Some(m.clone()),
            Some(_) => {
                add("model", "must be a non-empty string".to_owned());
                None
            }
        };
        let api = match map.get("api") {
            None | Some(Value::Null) => None,
            Some(Value::String(a)) if a.eq_ignore_ascii_case("ollama") => Some(Api::Ollama),
            Some(Value::String(a)) if a.eq_ignore_ascii_case("openai") => Some(Api::OpenAi),
            Some(other) => {
                add(
                    "api",
                    format!("{other} is not one of \"ollama\", \"openai\""),
                );
                None
            }
        };
        let timeout = timeout_seconds(map, DEFAULT_TIMEOUT).unwrap_or_else(|e| {
            add("timeout_seconds", e);
            DEFAULT_TIMEOUT
        });
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(LlmSpec {
            prompt,
            system,
            model,
            api,
            timeout,
        })
    }
}

/// Where the model server is, and the defaults a step may override.
#[derive(Clone)]
pub struct LlmEndpoint {
    /// Scheme, host and port, and optionally a path prefix, e.g. `http://localhost:11434` or
    /// `https://api.openai.com/v1`.
    pub base_url: String,
    pub model: String,
    pub api: Api,
    /// Sent as `Authorization: Bearer <key>` to OpenAI-compatible servers; never shown.
    pub api_key: Option<String>,
}

/// Shows everything but the API key.
impl fmt::Debug for LlmEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LlmEndpoint")
            .field("base_url", &display_url(&self.base_url))
            .field("model", &self.model)
            .field("api", &self.api)
            .field("api_key", &self.api_key.as_ref().map(|_| REDACTED))
            .finish()
    }
}

impl LlmEndpoint {
    /// The original server's configuration: an Ollama server at `LLM_HOST`:`LLM_PORT` serving
    /// `LLM_MODEL`. `host` is a name or address (`localhost`, `10.0.0.5`, `::1`), or a URL
    /// (`https://ollama.internal`), whose own port, if it has one, wins over `port`.
    pub fn ollama(host: &str, port: u16, model: &str) -> LlmEndpoint {
        let host = host.trim().trim_end_matches('/');
        let base_url = if host.contains("://") {
            match Url::parse(host) {
                Ok(mut url) => {
                    if url.port().is_none() {
                        // Fails only for URLs that cannot have a port; keep them as given.
                        let _ = url.set_port(Some(port));
                    }
                    url.as_str().trim_end_matches('/').to_owned()
                }
                Err(_) => host.to_owned(),
            }
        } else if host.contains(':') && !host.starts_with('[') {
            format!("http://[{host}]:{port}")
        } else {
            format!("http://{host}:{port}")
        };
        LlmEndpoint {
            base_url,
            model: model.to_owned(),
            api: Api::Ollama,
            api_key: None,
        }
    }
}

/// What the model said, or why it could not.
#[derive(Debug, Clone, PartialEq)]
pub struct LlmOutcome {
    /// The generated text, redacted, at most the limits' `max_bytes` (cut on a char boundary);
    /// empty on error.
    pub text: String,
    /// The model that answered as the server names it, else the one asked for.
    pub model: String,
    pub duration: Duration,
    /// `None` on success.
    pub error: Option<String>,
    /// The text was longer than the limits' `max_bytes` and was cut.
    pub truncated: bool,
}

impl LlmOutcome {
    pub fn success(&self) -> bool {
        self.error.is_none()
    }
}

/// Asks the model server for one completion, bounded by `spec.timeout` and stopped at once by
/// `cancel` turning true (a dropped sender never cancels); keeps of the text what `limits` allow,
/// the endpoint's API key redacted too. Never panics.
pub async fn generate(
    client: &reqwest::Client,
    endpoint: &LlmEndpoint,
    spec: &LlmSpec,
    limits: &OutputLimits,
    mut cancel: Option<watch::Receiver<bool>>,
) -> LlmOutcome {
    let started = Instant::now();
    let model = spec.model.clone().unwrap_or_else(|| endpoint.model.clone());
    let api = spec.api.clone().unwrap_or_else(|| endpoint.api.clone());
    let secrets: Vec<String> = limits
        .redact
        .iter()
        .chain(&endpoint.api_key)
        .cloned()
        .collect();
    let done = |result: Result<Answer, String>, model: String| {
        let (text, model, error, truncated) = match result {
            Ok(answer) => {
                let (text, truncated) = cap(&redact(&answer.text, &secrets), limits.max_bytes);
                (text, answer.model.unwrap_or(model), None, truncated)
            }
            Err(e) => (String::new(), model, Some(redact(&e, &secrets)), false),
        };
        LlmOutcome {
            text,
            model,
            duration: started.elapsed(),
            error,
            truncated,
        }
    };

    let base = endpoint.base_url.trim().trim_end_matches('/');
    let url = format!("{base}{}", api.path(base.ends_with("/v1")));
    let shown = display_url(&url);
    match Url::parse(&url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => {}
        _ => {
            let error = format!("invalid model server URL {shown}: must be an http or https URL");
            return done(Err(error), model);
        }
    }
    if model.trim().is_empty() {
        return done(Err("no model configured".to_owned()), model);
    }
    if cancel.as_ref().is_some_and(|rx| *rx.borrow()) {
        return done(Err("cancelled".to_owned()), model);
    }

    let body = match api {
        Api::Ollama => {
            let mut body = json!({"model": model, "prompt": spec.prompt, "stream": false});
            if let (Some(system), Some(map)) = (&spec.system, body.as_object_mut()) {
                map.insert("system".to_owned(), Value::String(system.clone()));
            }
            body
        }
        Api::OpenAi => {
            let mut messages = Vec::new();
            if let Some(system) = &spec.system {
                messages.push(json!({"role": "system", "content": system}));
            }
            messages.push(json!({"role": "user", "content": spec.prompt}));
            json!({"model": model, "messages": messages})
        }
    };
    let mut request = client.post(&url).json(&body);
    if let (Api::OpenAi, Some(key)) = (&api, &endpoint.api_key) {
        request = request.bearer_auth(key);
    }

    let mut cancelled = pin!(until_cancelled(cancel.as_mut()));
    let work = exchange(request, &api, &shown);
    let result = tokio::select! {
        biased;
        () = &mut cancelled => Err("cancelled".to_owned()),
        result = tokio::time::timeout(spec.timeout, work) => result.unwrap_or_else(|_| {
            Err(format!(
                "model server at {shown} did not answer within {}s",
                spec.timeout.as_secs_f64()
            ))
        }),
    };
    done(result, model)
}

#[cfg(test)]
mod tests;
