use super::send::backoff_delay;
use super::*;
use crate::workflow::redact::OutputLimits;

use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;

use crate::workflow::template::Arg;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn client() -> reqwest::Client {
    // No proxy: the tests talk to 127.0.0.1 whatever the environment says.
    reqwest::Client::builder().no_proxy().build().unwrap()
}

fn spec(url: &str) -> HttpSpec {
    HttpSpec {
        method: "GET".to_owned(),
        url: url.to_owned(),
        headers: Vec::new(),
        body: None,
        expect_status: None,
        timeout: Duration::from_secs(10),
        retries: 0,
        backoff: Duration::from_millis(10),
    }
}

/// What the runner keeps of a step's output, nothing to redact.
fn keep_all() -> OutputLimits {
    OutputLimits {
        max_bytes: 64 * 1024,
        redact: Vec::new(),
    }
}

/// Serves `app` on 127.0.0.1, port 0; the base URL.
async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    format!("http://{addr}")
}

/// A port nothing listens on (bound, then closed).
async fn closed_port() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

async fn slow() -> &'static str {
    tokio::time::sleep(Duration::from_secs(30)).await;
    "late"
}

#[tokio::test]
async fn a_get_succeeds_and_captures_the_body() {
    let base = serve(Router::new().route("/hello", get(|| async { "hello world" }))).await;
    let outcome = run(
        &client(),
        &spec(&format!("{base}/hello")),
        &keep_all(),
        None,
    )
    .await;
    assert!(outcome.success(), "{outcome:?}");
    assert_eq!(outcome.status, Some(200));
    assert_eq!(outcome.attempts, 1);
    assert_eq!(outcome.body, "hello world");
    assert!(!outcome.truncated);
    assert_eq!(outcome.error, None);
}

#[tokio::test]
async fn an_unexpected_status_fails_naming_it() {
    let base = serve(Router::new().route("/x", get(|| async { "fine" }))).await;
    let mut s = spec(&format!("{base}/x"));
    s.expect_status = Some(vec![201, 204]);
    let outcome = run(&client(), &s, &keep_all(), None).await;
    assert!(!outcome.success());
    assert_eq!(outcome.status, Some(200));
    assert_eq!(
        outcome.error.as_deref(),
        Some("unexpected status 200 OK (expected one of 201, 204)")
    );
    assert_eq!(outcome.body, "fine", "the body is kept for diagnosis");

    // And the default expectation, any 2xx.
    let base = serve(Router::new().route(
        "/teapot",
        get(|| async { (axum::http::StatusCode::IM_A_TEAPOT, "short and stout") }),
    ))
    .await;
    let outcome = run(
        &client(),
        &spec(&format!("{base}/teapot")),
        &keep_all(),
        None,
    )
    .await;
    assert!(!outcome.success());
    assert_eq!(outcome.status, Some(418));
    assert!(
        outcome
            .error
            .as_deref()
            .unwrap()
            .contains("unexpected status 418"),
        "{outcome:?}"
    );
}

/// Answers `status` to the first `failures` requests, then 200 "ok"; counts requests.
async fn flaky(status: u16, failures: u32) -> (String, Arc<AtomicU32>) {
    let count = Arc::new(AtomicU32::new(0));
    let app = Router::new()
        .route(
            "/",
            get(move |State(count): State<Arc<AtomicU32>>| async move {
                let n = count.fetch_add(1, Ordering::SeqCst);
                if n < failures {
                    (axum::http::StatusCode::from_u16(status).unwrap(), "nope")
                } else {
                    (axum::http::StatusCode::OK, "ok")
                }
            }),
        )
        .with_state(Arc::clone(&count));
    (serve(app).await, count)
}

#[tokio::test]
async fn a_503_is_retried_and_then_succeeds() {
    let (base, count) = flaky(503, 1).await;
    let mut s = spec(&format!("{base}/"));
    s.retries = 3;
    let outcome = run(&client(), &s, &keep_all(), None).await;
    assert!(outcome.success(), "{outcome:?}");
    assert_eq!(outcome.attempts, 2);
    assert_eq!(outcome.body, "ok");
    assert_eq!(count.load(Ordering::SeqCst), 2);

    // 429 is retried too; retries exhausted report the last status and the attempts.
    let (base, count) = flaky(429, 10).await;
    let mut s = spec(&format!("{base}/"));
    s.retries = 2;
    let outcome = run(&client(), &s, &keep_all(), None).await;
    assert!(!outcome.success());
    assert_eq!(outcome.attempts, 3);
    assert_eq!(count.load(Ordering::SeqCst), 3);
    assert_eq!(outcome.status, Some(429));
    assert_eq!(
        outcome.error.as_deref(),
        Some("unexpected status 429 Too Many Requests (expected 2xx) (after 3 attempts)")
    );
}

#[tokio::test]
async fn a_404_is_not_retried() {
    let (base, count) = flaky(404, 10).await;
    let mut s = spec(&format!("{base}/"));
    s.retries = 5;
    let outcome = run(&client(), &s, &keep_all(), None).await;
    assert!(!outcome.success());
    assert_eq!(outcome.attempts, 1);
    assert_eq!(count.load(Ordering::SeqCst), 1);
    assert_eq!(
        outcome.error.as_deref(),
        Some("unexpected status 404 Not Found (expected 2xx)")
    );
}

#[tokio::test]
async fn a_transport_error_fails_after_the_retries() {
    let port = closed_port().await;
    let mut s = spec(&format!("http://127.0.0.1:{port}/health"));
    s.retries = 2;
    s.backoff = Duration::from_millis(20);
    let outcome = run(&client(), &s, &keep_all(), None).await;
    assert!(!outcome.success());
    assert_eq!(outcome.attempts, 3);
    assert_eq!(outcome.status, None);
    let error = outcome.error.unwrap();
    assert!(
        error.starts_with(&format!(
            "GET http://127.0.0.1:{port}/health: could not connect"
        )),
        "{error}"
    );
    assert!(error.contains("(after 3 attempts)"), "{error}");
    // Backoff: 20 ms then 40 ms.
    assert!(
        outcome.duration >= Duration::from_millis(60),
        "{:?}",
        outcome.duration
    );
}

#[tokio::test]
async fn a_request_that_cannot_be_built_is_not_retried() {
    let (base, count) = flaky(503, 0).await;
    let mut s = spec(&format!("{base}/"));
    s.headers = vec![("x-bad".to_owned(), "line\nbreak".to_owned())];
    s.retries = 3;
    let outcome = run(&client(), &s, &keep_all(), None).await;
    assert_eq!(outcome.attempts, 1);
    assert_eq!(count.load(Ordering::SeqCst), 0);
    let error = outcome.error.unwrap();
    assert!(error.contains(": invalid request"), "{error}");
}

#[tokio::test]
async fn a_slow_server_times_out() {
    let base = serve(Router::new().route("/slow", get(slow))).await;
    let mut s = spec(&format!("{base}/slow"));
    s.timeout = Duration::from_millis(300);
    let outcome = run(&client(), &s, &keep_all(), None).await;
    assert!(!outcome.success());
    assert_eq!(outcome.attempts, 1);
    assert_eq!(
        outcome.error.as_deref(),
        Some(format!("GET {base}/slow: timed out after 300ms").as_str())
    );
    assert!(outcome.duration < Duration::from_secs(5), "{outcome:?}");
}

#[tokio::test]
async fn cancellation_stops_a_slow_request() {
    let base = serve(Router::new().route("/slow", get(slow))).await;
    let mut s = spec(&format!("{base}/slow"));
    s.timeout = Duration::from_secs(60);
    s.retries = 3;
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let _ = tx.send(true);
    });
    let outcome = run(&client(), &s, &keep_all(), Some(rx)).await;
    assert!(!outcome.success());
    assert_eq!(outcome.error.as_deref(), Some("cancelled"));
    assert_eq!(outcome.attempts, 1);
    assert!(outcome.duration < Duration::from_secs(5), "{outcome:?}");

    // Already cancelled: nothing is sent.
    let (_tx, rx) = watch::channel(true);
    let outcome = run(&client(), &s, &keep_all(), Some(rx)).await;
    assert_eq!(outcome.error.as_deref(), Some("cancelled"));
    assert_eq!(outcome.attempts, 0);

    // Cancelled during the backoff.
    let (base, _) = flaky(503, 10).await;
    let mut s = spec(&format!("{base}/"));
    s.retries = 3;
    s.backoff = Duration::from_secs(30);
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let _ = tx.send(true);
    });
    let outcome = run(&client(), &s, &keep_all(), Some(rx)).await;
    assert_eq!(outcome.error.as_deref(), Some("cancelled"));
    assert_eq!(outcome.attempts, 1);
    assert!(outcome.duration < Duration::from_secs(5), "{outcome:?}");

    // A dropped sender never cancels.
    let (tx, rx) = watch::channel(false);
    drop(tx);
    let base = serve(Router::new().route("/", get(|| async { "ok" }))).await;
    let outcome = run(&client(), &spec(&format!("{base}/")), &keep_all(), Some(rx)).await;
    assert!(outcome.success(), "{outcome:?}");
}

#[tokio::test]
async fn a_huge_body_is_capped() {
    let base = serve(Router::new().route(
        "/big",
        get(|| async { "é".repeat(3 << 20) }), // 6 MiB
    ))
    .await;
    let s = spec(&format!("{base}/big"));
    let limits = OutputLimits {
        max_bytes: 1001,
        ..keep_all()
    };
    let outcome = run(&client(), &s, &limits, None).await;
    assert!(outcome.success(), "{:?}", outcome.error);
    assert!(outcome.truncated);
    assert_eq!(outcome.body, "é".repeat(500), "cut on a char boundary");
}

/// A raw server whose chunked body never ends: reading must stop at the cap.
#[tokio::test]
async fn an_endless_body_is_not_read_past_the_cap() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut request = [0u8; 4096];
        let _ = socket.read(&mut request).await;
        let head =
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n";
        if socket.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        let chunk = format!("{:x}\r\n{}\r\n", 8192, "y".repeat(8192));
        while socket.write_all(chunk.as_bytes()).await.is_ok() {}
    });
    let s = spec(&format!("http://{addr}/stream"));
    let limits = OutputLimits {
        max_bytes: 100_000,
        ..keep_all()
    };
    let outcome = run(&client(), &s, &limits, None).await;
    assert!(outcome.success(), "{:?}", outcome.error);
    assert!(outcome.truncated);
    assert_eq!(outcome.body.len(), 100_000);
    assert!(outcome.duration < Duration::from_secs(5), "{outcome:?}");
}

#[tokio::test]
async fn secrets_are_redacted_from_the_body_and_errors() {
    let secret = "s3cr3t-t0ken-value";
    let base = serve(Router::new().route(
        "/leak",
        get(|| async {
            (
                axum::http::StatusCode::BAD_REQUEST,
                "bad token s3cr3t-t0ken-value!",
            )
        }),
    ))
    .await;
    let mut s = spec(&format!("{base}/leak?token={secret}"));
    s.headers = vec![("authorization".to_owned(), format!("Bearer {secret}"))];
    s.body = Some(Body::Text(format!("token={secret}")));
    let limits = OutputLimits {
        redact: vec![secret.to_owned(), String::new()],
        ..keep_all()
    };
    let outcome = run(&client(), &s, &limits, None).await;
    assert_eq!(outcome.status, Some(400));
    assert_eq!(outcome.body, "bad token [REDACTED]!");
    // What carries a secret once filled in (header values, body) is never shown.
    s.url = format!("{base}/leak");
    assert!(!format!("{s:?}").contains(secret), "{s:?}");

    // Transport errors name the URL, redacted, and never a URL password.
    let port = closed_port().await;
    let s = spec(&format!("http://user:pa55word@127.0.0.1:{port}/{secret}"));
    let limits = OutputLimits {
        redact: vec![secret.to_owned()],
        ..keep_all()
    };
    let outcome = run(&client(), &s, &limits, None).await;
    let error = outcome.error.unwrap();
    assert!(
        error.starts_with(&format!(
            "GET http://user:[REDACTED]@127.0.0.1:{port}/[REDACTED]"
        )),
        "{error}"
    );
    assert!(
        !error.contains(secret) && !error.contains("pa55word"),
        "{error}"
    );

    // A secret straddling the cap leaves no fragment.
    let base = serve(Router::new().route(
        "/cut",
        get(|| async { "xxxxxxxxABCDEFGHIJKLMNOPQRSTUVWXYZ0123ABCDEFGHIJKLMNOPQRSTUVWXYZ0123" }),
    ))
    .await;
    let s = spec(&format!("{base}/cut"));
    let mut limits = OutputLimits {
        max_bytes: 20,
        redact: vec!["ABCDEFGHIJKLMNOPQRSTUVWXYZ0123".to_owned()],
    };
    let outcome = run(&client(), &s, &limits, None).await;
    assert_eq!(outcome.body, "xxxxxxxx[REDACTED]");
    assert!(outcome.truncated);
    limits.max_bytes = 10;
    let outcome = run(&client(), &s, &limits, None).await;
    assert_eq!(outcome.body, "xxxxxxxx[R");
}

#[tokio::test]
async fn a_post_sends_the_json_body_and_headers() {
    async fn echo(headers: HeaderMap, Json(body): Json<Value>) -> Json<Value> {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        Json(json!({
            "content_type": header("content-type"),
            "x_request": header("x-request"),
            "body": body,
        }))
    }
    let base = serve(Router::new().route("/echo", post(echo))).await;
    let spec = HttpSpec::parse(&json!({
        "method": "post",
        "url": format!("{base}/echo"),
        "headers": {"X-Request": "abc-123"},
        "body": {"version": "v1.2.3", "dry_run": true},
        "expect_status": 200,
    }))
    .unwrap();
    assert_eq!(spec.method, "POST");
    let outcome = run(&client(), &spec, &keep_all(), None).await;
    assert!(outcome.success(), "{outcome:?}");
    let echoed: Value = serde_json::from_str(&outcome.body).unwrap();
    assert_eq!(
        echoed,
        json!({"content_type": "application/json", "x_request": "abc-123",
               "body": {"version": "v1.2.3", "dry_run": true}})
    );

    // A string body is sent as is, with the caller's content type.
    async fn raw(headers: HeaderMap, body: String) -> String {
        let kind = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none")
            .to_owned();
        format!("{kind}|{body}")
    }
    let base = serve(Router::new().route("/raw", axum::routing::put(raw))).await;
    let spec = HttpSpec::parse(&json!({
        "method": "PUT", "url": format!("{base}/raw"),
        "headers": {"Content-Type": "text/plain"}, "body": "plain {text}",
    }))
    .unwrap();
    let outcome = run(&client(), &spec, &keep_all(), None).await;
    assert_eq!(outcome.body, "text/plain|plain {text}");
}

#[test]
fn parse_reads_every_key_and_defaults() {
    let spec = HttpSpec::parse(&json!({"url": "https://example.com/health"})).unwrap();
    assert_eq!(spec.method, "GET");
    assert_eq!(spec.expect_status, None);
    assert_eq!(spec.timeout, DEFAULT_TIMEOUT);
    assert_eq!(spec.retries, 0);
    assert_eq!(spec.backoff, DEFAULT_BACKOFF);
    assert!(spec.headers.is_empty() && spec.body.is_none());

    let spec = HttpSpec::parse(&json!({
        "method": "DELETE", "url": "http://127.0.0.1:8080/x", "headers": {"a": "1", "B": "2"},
        "body": [1, 2], "expect_status": [200, 204], "timeout_seconds": 5, "retries": 2,
        "backoff_ms": 0}))
    .unwrap();
    assert_eq!(spec.method, "DELETE");
    assert_eq!(
        spec.headers,
        [("B", "2"), ("a", "1"), ("content-type", "application/json")]
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
    );
    assert_eq!(spec.body, Some(Body::Json(json!([1, 2]))));
    assert_eq!(spec.expect_status, Some(vec![200, 204]));
    assert_eq!(spec.timeout, Duration::from_secs(5));
    assert_eq!(spec.retries, 2);
    assert_eq!(spec.backoff, Duration::ZERO);
}

#[test]
fn parse_lists_every_problem() {
    let problems = HttpSpec::parse(&json!({
        "method": "FETCH", "url": "ftp://example.com/file", "expect_status": [200, 700, "x"],
        "headers": {"bad name": "v", "ok": 3, "crlf": "a\r\nb"}, "timeout_seconds": 0,
        "retries": 11, "backoff_ms": -1, "verb": "GET"}))
    .unwrap_err();
    let expected = [
        "http.verb: unknown key",
        "http.method: \"FETCH\" is not one of GET, POST, PUT, PATCH, DELETE, HEAD",
        "http.url: only http and https URLs are allowed, not ftp:",
        "http.headers.bad name: not a valid header name",
        "http.headers.crlf: not a valid header value",
        "http.headers.ok: must be a string",
        "http.expect_status[1]: 700 is not an HTTP status (100 to 599)",
        "http.expect_status[2]: \"x\" is not an HTTP status (100 to 599)",
        "http.timeout_seconds: must be a positive whole number",
        "http.retries: must be a whole number from 0 to 10",
        "http.backoff_ms: must be a whole number from 0 to 60000",
    ];
    for want in expected {
        assert!(
            problems.iter().any(|p| p.starts_with(want)),
            "missing {want:?} in {problems:#?}"
        );
    }
    assert_eq!(problems.len(), expected.len(), "{problems:#?}");

    for (value, want) in [
        (json!("GET /"), "http: must be an object"),
        (json!({}), "http.url: required"),
        (json!({"url": "not a url"}), "http.url: not a valid URL"),
        (
            json!({"url": "http://x", "expect_status": 99}),
            "http.expect_status: 99 is not",
        ),
        (
            json!({"url": "http://x", "expect_status": []}),
            "http.expect_status: must list",
        ),
        (json!({"url": 5}), "http.url: must be a string"),
        (
            json!({"url": "http://x", "headers": []}),
            "http.headers: must be an object",
        ),
    ] {
        let problems = HttpSpec::parse(&value).unwrap_err();
        assert!(problems[0].starts_with(want), "{value}: {problems:?}");
    }
}

/// What the runner would resolve: a `name` parameter and the server URL; anything else is unset.
pub(super) fn values(
    name: &'static str,
    base: &'static str,
) -> impl Fn(&Arg) -> Result<String, String> {
    move |arg| match arg {
        Arg::Parameter(p) if p == "name" => Ok(name.to_owned()),
        Arg::ServerUrl => Ok(base.to_owned()),
        other => Err(format!("{other} is not set")),
    }
}

pub(super) fn templated(url: &str) -> HttpSpec {
    HttpSpec::parse(&json!({ "url": url })).unwrap()
}

#[test]
fn a_line_break_in_a_header_value_is_refused() {
    let spec = HttpSpec::parse(&json!({
        "url": "http://example.com/",
        "headers": {"X-Name": "n={{ parameters.name }}", "Accept": "text/plain"},
    }))
    .unwrap();
    let rendered = spec.render(values("caf\u{e9} ok", "")).unwrap();
    assert_eq!(rendered.headers[0].1, "text/plain");
    assert_eq!(rendered.headers[1].1, "n=caf\u{e9} ok");
    for hostile in ["ok\r\nX-Injected: 1", "ok\nX-Injected: 1", "ok\r"] {
        let error = spec.render(values(hostile, "")).unwrap_err();
        assert_eq!(
            error,
            "http.headers.X-Name: the value of {{ parameters.name }} contains a line break (refused: header injection)"
        );
    }
    let error = spec.render(values("bell\u{7}", "")).unwrap_err();
    assert!(
        error.starts_with("http.headers.X-Name: not a valid header value"),
        "{error}"
    );
}

#[test]
fn a_json_body_is_filled_in_its_string_values_only() {
    let spec = HttpSpec::parse(&json!({
        "url": "http://example.com/",
        "body": {"name": "{{ parameters.name }}", "n": 1,
                 "list": ["at {{ server.url }}", true], "{{ parameters.name }}": "key"},
    }))
    .unwrap();
    let texts: Vec<String> = spec
        .templated_texts()
        .into_iter()
        .map(|(key, text)| format!("{key}={text}"))
        .collect();
    let named = texts.iter().filter(|t| t.contains("parameters.name"));
    assert_eq!(named.count(), 1, "the value, not the key: {texts:?}");
    let rendered = spec
        .render(values("say \"hi\"\n", "http://127.0.0.1:1"))
        .unwrap();
    let Some(Body::Json(body)) = &rendered.body else {
        panic!("a JSON body")
    };
    assert_eq!(
        *body,
        json!({"name": "say \"hi\"\n", "n": 1, "list": ["at http://127.0.0.1:1", true],
               "{{ parameters.name }}": "key"})
    );
    let wire: Value = serde_json::from_str(&rendered.body.unwrap().to_wire()).unwrap();
    assert_eq!(wire["name"], "say \"hi\"\n");

    // A text body is filled in as is.
    let spec = HttpSpec::parse(&json!({
        "url": "http://example.com/", "body": "name={{ parameters.name }}&x=1"}))
    .unwrap();
    let rendered = spec.render(values("a&b", "")).unwrap();
    assert_eq!(rendered.body, Some(Body::Text("name=a&b&x=1".to_owned())));
}

#[tokio::test]
async fn a_hostile_value_stays_in_its_path_segment_on_the_right_host() {
    let base =
        serve(Router::new().fallback(|uri: axum::http::Uri| async move { uri.to_string() })).await;
    let spec = templated(&format!("{base}/files/{{{{ parameters.name }}}}"));
    let spec = spec.render(values("../x?y=1#z@evil.com", "")).unwrap();
    let outcome = run(&client(), &spec, &keep_all(), None).await;
    assert!(outcome.success(), "{outcome:?}");
    assert_eq!(outcome.body, "/files/..%2Fx%3Fy%3D1%23z%40evil.com");
}

#[test]
fn backoff_doubles_up_to_the_cap() {
    let b = Duration::from_millis(100);
    assert_eq!(backoff_delay(b, 1), Duration::from_millis(100));
    assert_eq!(backoff_delay(b, 2), Duration::from_millis(200));
    assert_eq!(backoff_delay(b, 4), Duration::from_millis(800));
    assert_eq!(backoff_delay(b, 40), MAX_BACKOFF);
    assert_eq!(backoff_delay(Duration::ZERO, 5), Duration::ZERO);
}

#[test]
fn a_secret_is_redacted_in_the_forms_it_may_come_back_in() {
    let forms = HttpSpec::redaction_forms("p\"w/\\d é");
    for expected in [
        "p\"w/\\d é",
        "p\\\"w/\\\\d é",
        "p\\\"w\\/\\\\d é",
        "p%22w%2F%5Cd%20%C3%A9",
        "p%22w%2f%5cd%20%c3%a9",
    ] {
        assert!(
            forms.iter().any(|f| f == expected),
            "{expected} in {forms:?}"
        );
    }
}
