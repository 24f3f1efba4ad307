use super::answer::SNIPPET_BYTES;
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

/// What the runner keeps of a step's output, nothing to redact.
fn limits() -> OutputLimits {
    OutputLimits {
        max_bytes: 64 * 1024,
        redact: Vec::new(),
    }
}

/// Asks `endpoint` for `spec`'s completion, with nothing to redact and no way to cancel.
async fn ask(endpoint: &LlmEndpoint, spec: &LlmSpec) -> LlmOutcome {
    generate(&client(), endpoint, spec, &limits(), None).await
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
    let outcome = ask(&endpoint, &spec("List the risks")).await;
    assert_eq!(outcome.error, None);
    assert!(outcome.success());
    assert_eq!(outcome.text, "[llama2] system=- prompt=List the risks");
    assert_eq!(outcome.model, "llama2");
    assert!(!outcome.truncated);

    // System prompt and model override; a trailing slash on the base is fine.
    let mut s =
        LlmSpec::parse(&json!({"prompt": "Hi", "system": "Be brief", "model": "mistral"})).unwrap();
    let outcome = ask(&self::endpoint(&format!("{base}/"), Api::Ollama), &s).await;
    assert_eq!(outcome.text, "[mistral] system=Be brief prompt=Hi");
    assert_eq!(outcome.model, "mistral");

    // The text is capped on a char boundary.
    s.prompt = "ééééé".to_owned();
    let limits = OutputLimits {
        max_bytes: 36,
        ..limits()
    };
    let outcome = generate(&client(), &endpoint, &s, &limits, None).await;
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
    let outcome = ask(&endpoint, &s).await;
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
    let outcome = ask(&v1, &s).await;
    assert_eq!(outcome.text, "[other-model] roles=user user=Go");
    assert_eq!(outcome.model, "other-model");

    // Wrong key: the server's message, and the key never shown.
    let mut wrong = endpoint.clone();
    wrong.api_key = Some("sk-wrong-key".to_owned());
    let outcome = ask(&wrong, &spec("x")).await;
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
    let outcome = ask(&endpoint, &s).await;
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
    let outcome = ask(&endpoint(&base, Api::Ollama), &spec("x")).await;
    assert_eq!(
        outcome.error.as_deref(),
        Some(format!("model server at {base}/api/generate answered 500 Internal Server Error: llama runner process has terminated").as_str())
    );
    assert!(!outcome.success());

    let outcome = ask(&endpoint(&base, Api::OpenAi), &spec("x")).await;
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
                        Json(json!({"error": "model \"nope\" not found, try pulling it first"})),
                    )
                }),
            ),
    )
    .await;
    let outcome = ask(&endpoint(&base, Api::Ollama), &spec("x")).await;
    assert_eq!(
        outcome.error.as_deref(),
        Some(format!("model server at {base}/api/generate answered without a response text: {{\"done\":true}}").as_str())
    );
    let outcome = ask(&endpoint(&base, Api::OpenAi), &spec("x")).await;
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
    let outcome = ask(&endpoint(&base, Api::Ollama), &spec("x")).await;
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
    let outcome = ask(&endpoint, &spec("x")).await;
    let error = outcome.error.unwrap();
    assert!(
        error.starts_with(&format!(
            "cannot reach model server at http://127.0.0.1:{port}/api/generate: could not connect"
        )),
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
    let outcome = ask(&endpoint, &s).await;
    assert_eq!(
        outcome.error.as_deref(),
        Some(format!("model server at {base}/api/generate did not answer within 0.3s").as_str())
    );
    assert!(outcome.duration < Duration::from_secs(5));

    s.timeout = Duration::from_secs(60);
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let _ = tx.send(true);
    });
    let outcome = generate(&client(), &endpoint, &s, &limits(), Some(rx)).await;
    assert_eq!(outcome.error.as_deref(), Some("cancelled"));
    assert!(outcome.duration < Duration::from_secs(5));
}

#[test]
fn parse_checks_every_key() {
    let s = LlmSpec::parse(
        &json!({"prompt": "p", "system": "s", "model": "m", "api": "OpenAI", "timeout_seconds": 7}),
    )
    .unwrap();
    assert_eq!(
        s,
        LlmSpec {
            prompt: "p".to_owned(),
            system: Some("s".to_owned()),
            model: Some("m".to_owned()),
            api: Some(Api::OpenAi),
            timeout: Duration::from_secs(7),
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
