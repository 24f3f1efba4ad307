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

use std::fmt;
use std::pin::pin;
use std::time::{Duration, Instant};

use reqwest::{StatusCode, Url};
use serde_json::{json, Value};
use tokio::sync::watch;

use super::command::{redact, REDACTED};
use super::http_step::{display_url, error_chain};

/// Bound on the whole request when `timeout_seconds` is not given (local models can be slow).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
/// Cap on the returned text set by [`LlmSpec::parse`].
pub const DEFAULT_MAX_OUTPUT_BYTES: usize = 64 * 1024;
/// The most of the server's answer that is read (Ollama's answer carries a `context` array besides
/// the text); a larger answer is an error.
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;
/// How much of an unexpected answer is quoted in an error.
const SNIPPET_BYTES: usize = 300;

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

/// One completion to ask for. Built by [`LlmSpec::parse`] from the step's `llm` object (templates
/// already substituted); `max_output_bytes` may then be set by the runner.
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
    /// Cap on [`LlmOutcome::text`].
    pub max_output_bytes: usize,
}

impl LlmSpec {
    /// Reads the step's `llm` object: `prompt` (required, non-empty string), `system` (string),
    /// `model` (non-empty string), `api` (`"ollama"` or `"openai"`), `timeout_seconds` (positive
    /// whole number, default 120). Unknown keys are refused.
    ///
    /// On failure, every problem as `"llm.<key>: message"`.
    pub fn parse(value: &Value) -> Result<LlmSpec, Vec<String>> {
        let (map, mut problems) = super::definition::step_object(value, "llm", &KEYS)?;
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
        let timeout =
            super::definition::timeout_seconds(map, DEFAULT_TIMEOUT).unwrap_or_else(|e| {
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
            max_output_bytes: DEFAULT_MAX_OUTPUT_BYTES,
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
    /// The generated text, at most `max_output_bytes` (cut on a char boundary); empty on error.
    pub text: String,
    /// The model that answered as the server names it, else the one asked for.
    pub model: String,
    pub duration: Duration,
    /// `None` on success.
    pub error: Option<String>,
    /// The text was longer than `max_output_bytes` and was cut.
    pub truncated: bool,
}

impl LlmOutcome {
    pub fn success(&self) -> bool {
        self.error.is_none()
    }
}

/// Asks the model server for one completion, bounded by `spec.timeout` and stopped at once by
/// `cancel` turning true (a dropped sender never cancels). Never panics.
pub async fn generate(
    client: &reqwest::Client,
    endpoint: &LlmEndpoint,
    spec: &LlmSpec,
    mut cancel: Option<watch::Receiver<bool>>,
) -> LlmOutcome {
    let started = Instant::now();
    let model = spec.model.clone().unwrap_or_else(|| endpoint.model.clone());
    let api = spec.api.clone().unwrap_or_else(|| endpoint.api.clone());
    let secrets: Vec<String> = endpoint.api_key.iter().cloned().collect();
    let done = |result: Result<Answer, String>, model: String| {
        let (text, model, error, truncated) = match result {
            Ok(answer) => {
                let (text, truncated) = cap(&redact(&answer.text, &secrets), spec.max_output_bytes);
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

struct Answer {
    text: String,
    model: Option<String>,
}

/// Sends the request, reads the answer (at most [`MAX_RESPONSE_BYTES`]) and extracts the text.
async fn exchange(
    request: reqwest::RequestBuilder,
    api: &Api,
    shown: &str,
) -> Result<Answer, String> {
    let mut response = request.send().await.map_err(|e| {
        let what = if e.is_builder() {
            "cannot build the request to"
        } else {
            "cannot reach"
        };
        format!("{what} model server at {shown}: {}", error_chain(&e))
    })?;
    let status = response.status();
    let mut bytes = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if bytes.len().saturating_add(chunk.len()) > MAX_RESPONSE_BYTES {
                    return Err(format!(
                        "model server at {shown} sent more than {} MiB",
                        MAX_RESPONSE_BYTES >> 20
                    ));
                }
                bytes.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(e) => {
                return Err(format!(
                    "model server at {shown}: reading the answer: {}",
                    error_chain(&e)
                ))
            }
        }
    }
    let parsed = serde_json::from_slice::<Value>(&bytes);
    if !status.is_success() {
        let detail = parsed
            .as_ref()
            .ok()
            .and_then(server_error)
            .unwrap_or_else(|| snippet(&bytes));
        return Err(format!(
            "model server at {shown} answered {}: {detail}",
            show_status(status)
        ));
    }
    let value = parsed.map_err(|e| {
        format!(
            "model server at {shown} sent malformed JSON ({e}): {}",
            snippet(&bytes)
        )
    })?;
    let (pointer, field) = match api {
        Api::Ollama => ("/response", "response"),
        Api::OpenAi => ("/choices/0/message/content", "choices[0].message.content"),
    };
    match value.pointer(pointer).and_then(Value::as_str) {
        Some(text) => Ok(Answer {
            text: text.to_owned(),
            model: value
                .get("model")
                .and_then(Value::as_str)
                .filter(|m| !m.is_empty())
                .map(str::to_owned),
        }),
        None => Err(match server_error(&value) {
            Some(message) => format!("model server at {shown} reported an error: {message}"),
            None => format!(
                "model server at {shown} answered without a {field} text: {}",
                snippet(&bytes)
            ),
        }),
    }
}

/// The error message of an Ollama (`{"error": "..."}`) or OpenAI (`{"error": {"message": ...}}`) answer.
fn server_error(value: &Value) -> Option<String> {
    let error = value.get("error")?;
    error
        .as_str()
        .or_else(|| error.get("message").and_then(Value::as_str))
        .map(|m| snippet(m.as_bytes()))
}

/// The first [`SNIPPET_BYTES`] of `bytes`, lossy UTF-8, "…" if cut; `(empty body)` if empty.
fn snippet(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    if text.is_empty() {
        return "(empty body)".to_owned();
    }
    let (mut shown, cut) = cap(text, SNIPPET_BYTES);
    if cut {
        shown.push('…');
    }
    shown
}

/// At most `max` bytes of `text`, cut on a char boundary; and whether it was cut.
fn cap(text: &str, max: usize) -> (String, bool) {
    if text.len() <= max {
        return (text.to_owned(), false);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    (text.get(..end).unwrap_or_default().to_owned(), true)
}

fn show_status(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(reason) => format!("{} {reason}", status.as_u16()),
        None => status.as_u16().to_string(),
    }
}

/// Completes when the channel turns true; never if there is no channel or its sender is dropped.
async fn until_cancelled(cancel: Option<&mut watch::Receiver<bool>>) {
    if let Some(rx) = cancel {
        if rx.wait_for(|&cancelled| cancelled).await.is_ok() {
            return;
        }
    }
    std::future::pending::<()>().await
}

#[cfg(test)]
mod tests {
    use super::*;

    use axum::http::{HeaderMap, StatusCode as AxumStatus};
    use axum::routing::post;
    use axum::{Json, Router};

    const KEY: &str = "sk-test-0123456789";

    fn client() -> reqwest::Client {
        reqwest::Client::builder().no_proxy().build().unwrap()
    }

    async fn serve(app: Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        format!("http://{addr}")
    }

    fn spec(prompt: &str) -> LlmSpec {
        LlmSpec::parse(&json!({ "prompt": prompt })).unwrap()
    }

    fn endpoint(base_url: &str, api: Api) -> LlmEndpoint {
        LlmEndpoint {
            base_url: base_url.to_owned(),
            model: "llama2".to_owned(),
            api,
            api_key: None,
        }
    }

    /// Answers like Ollama, echoing what it was asked: "[model] system=... prompt=...".
    async fn fake_ollama(Json(body): Json<Value>) -> (AxumStatus, Json<Value>) {
        if body.get("stream") != Some(&Value::Bool(false)) {
            return (
                AxumStatus::BAD_REQUEST,
                Json(json!({"error": "stream must be false"})),
            );
        }
        let model = body["model"].as_str().unwrap_or("?");
        let text = format!(
            "[{model}] system={} prompt={}",
            body.get("system").and_then(Value::as_str).unwrap_or("-"),
            body["prompt"].as_str().unwrap_or("?")
        );
        let answer = json!({"model": model, "response": text, "done": true, "context": [1, 2, 3]});
        (AxumStatus::OK, Json(answer))
    }

    /// Answers like OpenAI when given the right bearer key.
    async fn fake_openai(headers: HeaderMap, Json(body): Json<Value>) -> (AxumStatus, Json<Value>) {
        let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
        if auth != Some(&format!("Bearer {KEY}")) {
            let error = json!({"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}});
            return (AxumStatus::UNAUTHORIZED, Json(error));
        }
        let messages = body["messages"].as_array().cloned().unwrap_or_default();
        let roles: Vec<&str> = messages.iter().filter_map(|m| m["role"].as_str()).collect();
        let last = messages
            .last()
            .and_then(|m| m["content"].as_str())
            .unwrap_or("?");
        let text = format!(
            "[{}] roles={} user={last}",
            body["model"].as_str().unwrap_or("?"),
            roles.join(",")
        );
        let answer = json!({"id": "chatcmpl-1", "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]});
        (AxumStatus::OK, Json(answer))
    }

    #[tokio::test]
    async fn ollama_generate_returns_the_response_text() {
        let base = serve(Router::new().route("/api/generate", post(fake_ollama))).await;
        let endpoint = endpoint(&base, Api::Ollama);
        let outcome = generate(&client(), &endpoint, &spec("List the risks"), None).await;
        assert_eq!(outcome.error, None);
        assert!(outcome.success());
        assert_eq!(outcome.text, "[llama2] system=- prompt=List the risks");
        assert_eq!(outcome.model, "llama2");
        assert!(!outcome.truncated);

        // System prompt and model override; a trailing slash on the base is fine.
        let mut s =
            LlmSpec::parse(&json!({"prompt": "Hi", "system": "Be brief", "model": "mistral"}))
                .unwrap();
        let outcome = generate(
            &client(),
            &self::endpoint(&format!("{base}/"), Api::Ollama),
            &s,
            None,
        )
        .await;
        assert_eq!(outcome.text, "[mistral] system=Be brief prompt=Hi");
        assert_eq!(outcome.model, "mistral");

        // The text is capped on a char boundary.
        s.prompt = "ééééé".to_owned();
        s.max_output_bytes = 36;
        let outcome = generate(&client(), &endpoint, &s, None).await;
        assert_eq!(outcome.text, "[mistral] system=Be brief prompt=é");
        assert!(outcome.truncated);
    }

    #[tokio::test]
    async fn openai_chat_completions_with_the_bearer_key() {
        let base = serve(Router::new().route("/v1/chat/completions", post(fake_openai))).await;
        let mut endpoint = endpoint(&base, Api::OpenAi);
        endpoint.model = "gpt-4o-mini".to_owned();
        endpoint.api_key = Some(KEY.to_owned());
        let s = LlmSpec::parse(&json!({"prompt": "Summarize", "system": "You are terse"})).unwrap();
        let outcome = generate(&client(), &endpoint, &s, None).await;
        assert_eq!(outcome.error, None);
        assert_eq!(
            outcome.text,
            "[gpt-4o-mini] roles=system,user user=Summarize"
        );
        assert_eq!(outcome.model, "gpt-4o-mini");

        // A base ending in /v1 (as OpenAI documents it) works too, and the model override.
        let mut v1 = endpoint.clone();
        v1.base_url = format!("{base}/v1");
        let s = LlmSpec::parse(&json!({"prompt": "Go", "model": "other-model"})).unwrap();
        let outcome = generate(&client(), &v1, &s, None).await;
        assert_eq!(outcome.text, "[other-model] roles=user user=Go");
        assert_eq!(outcome.model, "other-model");

        // Wrong key: the server's message, and the key never shown.
        let mut wrong = endpoint.clone();
        wrong.api_key = Some("sk-wrong-key".to_owned());
        let outcome = generate(&client(), &wrong, &spec("x"), None).await;
        assert_eq!(
            outcome.error.as_deref(),
            Some(format!("model server at {base}/v1/chat/completions answered 401 Unauthorized: Incorrect API key provided").as_str())
        );
        assert!(outcome.text.is_empty());
        assert!(!format!("{wrong:?}").contains("sk-wrong-key"));
    }

    #[tokio::test]
    async fn the_spec_api_overrides_the_endpoint() {
        let base = serve(
            Router::new()
                .route("/api/generate", post(fake_ollama))
                .route("/v1/chat/completions", post(fake_openai)),
        )
        .await;
        let mut endpoint = endpoint(&base, Api::Ollama);
        endpoint.api_key = Some(KEY.to_owned());
        let s = LlmSpec::parse(&json!({"prompt": "p", "api": "openai"})).unwrap();
        let outcome = generate(&client(), &endpoint, &s, None).await;
        assert_eq!(outcome.text, "[llama2] roles=user user=p");
    }

    #[tokio::test]
    async fn server_errors_and_bad_answers_are_explained() {
        let base = serve(
            Router::new()
                .route(
                    "/api/generate",
                    post(|| async {
                        (
                            AxumStatus::INTERNAL_SERVER_ERROR,
                            "llama runner process has terminated",
                        )
                    }),
                )
                .route(
                    "/v1/chat/completions",
                    post(|| async { (AxumStatus::OK, "{\"choices\": [") }),
                ),
        )
        .await;
        let outcome = generate(&client(), &endpoint(&base, Api::Ollama), &spec("x"), None).await;
        assert_eq!(
            outcome.error.as_deref(),
            Some(format!("model server at {base}/api/generate answered 500 Internal Server Error: llama runner process has terminated").as_str())
        );
        assert!(!outcome.success());

        let outcome = generate(&client(), &endpoint(&base, Api::OpenAi), &spec("x"), None).await;
        let error = outcome.error.unwrap();
        assert!(
            error.starts_with(&format!(
                "model server at {base}/v1/chat/completions sent malformed JSON ("
            )),
            "{error}"
        );
        assert!(error.ends_with("): {\"choices\": ["), "{error}");

        // Valid JSON without the text; Ollama's own error message.
        let base = serve(
            Router::new()
                .route(
                    "/api/generate",
                    post(|| async { Json(json!({"done": true})) }),
                )
                .route(
                    "/v1/chat/completions",
                    post(|| async {
                        (
                            AxumStatus::NOT_FOUND,
                            Json(
                                json!({"error": "model \"nope\" not found, try pulling it first"}),
                            ),
                        )
                    }),
                ),
        )
        .await;
        let outcome = generate(&client(), &endpoint(&base, Api::Ollama), &spec("x"), None).await;
        assert_eq!(
            outcome.error.as_deref(),
            Some(format!("model server at {base}/api/generate answered without a response text: {{\"done\":true}}").as_str())
        );
        let outcome = generate(&client(), &endpoint(&base, Api::OpenAi), &spec("x"), None).await;
        assert_eq!(
            outcome.error.as_deref(),
            Some(format!("model server at {base}/v1/chat/completions answered 404 Not Found: model \"nope\" not found, try pulling it first").as_str())
        );

        // A long body is quoted only in part.
        let base = serve(Router::new().route(
            "/api/generate",
            post(|| async { (AxumStatus::BAD_GATEWAY, "x".repeat(10_000)) }),
        ))
        .await;
        let outcome = generate(&client(), &endpoint(&base, Api::Ollama), &spec("x"), None).await;
        let error = outcome.error.unwrap();
        assert!(
            error.ends_with(&format!("502 Bad Gateway: {}…", "x".repeat(SNIPPET_BYTES))),
            "{error}"
        );
    }

    #[tokio::test]
    async fn connection_refused_names_the_url() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let endpoint = LlmEndpoint::ollama("127.0.0.1", port, "llama2");
        let outcome = generate(&client(), &endpoint, &spec("x"), None).await;
        let error = outcome.error.unwrap();
        assert!(
            error.starts_with(&format!("cannot reach model server at http://127.0.0.1:{port}/api/generate: could not connect")),
            "{error}"
        );
        assert_eq!(outcome.model, "llama2");
    }

    #[tokio::test]
    async fn timeout_and_cancellation() {
        async fn slow() -> &'static str {
            tokio::time::sleep(Duration::from_secs(30)).await;
            "{}"
        }
        let base = serve(Router::new().route("/api/generate", post(slow))).await;
        let endpoint = endpoint(&base, Api::Ollama);
        let mut s = spec("x");
        s.timeout = Duration::from_millis(300);
        let outcome = generate(&client(), &endpoint, &s, None).await;
        assert_eq!(
            outcome.error.as_deref(),
            Some(
                format!("model server at {base}/api/generate did not answer within 0.3s").as_str()
            )
        );
        assert!(outcome.duration < Duration::from_secs(5));

        s.timeout = Duration::from_secs(60);
        let (tx, rx) = watch::channel(false);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let _ = tx.send(true);
        });
        let outcome = generate(&client(), &endpoint, &s, Some(rx)).await;
        assert_eq!(outcome.error.as_deref(), Some("cancelled"));
        assert!(outcome.duration < Duration::from_secs(5));
    }

    #[test]
    fn parse_checks_every_key() {
        let s = LlmSpec::parse(&json!({"prompt": "p", "system": "s", "model": "m", "api": "OpenAI", "timeout_seconds": 7})).unwrap();
        assert_eq!(
            s,
            LlmSpec {
                prompt: "p".to_owned(),
                system: Some("s".to_owned()),
                model: Some("m".to_owned()),
                api: Some(Api::OpenAi),
                timeout: Duration::from_secs(7),
                max_output_bytes: DEFAULT_MAX_OUTPUT_BYTES,
            }
        );
        let problems = LlmSpec::parse(&json!({"system": 1, "model": "", "api": "claude", "timeout_seconds": -1, "temperature": 0.2})).unwrap_err();
        assert_eq!(
            problems,
            [
                "llm.temperature: unknown key (expected one of prompt, system, model, api, timeout_seconds)",
                "llm.prompt: required",
                "llm.system: must be a string",
                "llm.model: must be a non-empty string",
                "llm.api: \"claude\" is not one of \"ollama\", \"openai\"",
                "llm.timeout_seconds: must be a positive whole number",
            ]
        );
        assert_eq!(
            LlmSpec::parse(&json!({"prompt": "  "})).unwrap_err(),
            ["llm.prompt: must not be empty"]
        );
        assert_eq!(
            LlmSpec::parse(&json!("p")).unwrap_err(),
            ["llm: must be an object"]
        );
    }

    #[test]
    fn the_original_configuration_names_an_ollama_server() {
        let base = |host: &str| LlmEndpoint::ollama(host, 11434, "llama2").base_url;
        assert_eq!(base("localhost"), "http://localhost:11434");
        assert_eq!(base("::1"), "http://[::1]:11434");
        assert_eq!(
            base("https://ollama.internal/"),
            "https://ollama.internal:11434"
        );
        assert_eq!(base("http://gpu-box:8000"), "http://gpu-box:8000");
        let endpoint = LlmEndpoint::ollama("localhost", 11434, "llama2");
        assert_eq!(endpoint.api, Api::Ollama);
        assert_eq!(endpoint.api_key, None);
    }
}
