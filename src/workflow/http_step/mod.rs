//! Runs one `http` workflow step: a single HTTP request, retried on failure, with a bounded body.
//!
//! - Only `http` and `https` URLs (checked by [`HttpSpec::parse`], and again by [`HttpSpec::render`]
//!   once templates are filled in).
//! - Templates (see [`HttpSpec::render`]): the URL starts with a literal scheme and host or with
//!   `{{ server.url }}`, and any other template in it fills in path, query or fragment text,
//!   percent-encoded, so a value can never change where the request goes. A header value filled in
//!   with a line break fails the step. The body is filled in as is (a JSON body: its string values).
//! - Each attempt (sending the request and reading the body) is bounded by [`HttpSpec::timeout`].
//! - A failed attempt is retried, up to [`HttpSpec::retries`] more times, only when it may succeed
//!   later: a transport error (connection refused or reset, DNS failure, timeout) or an unexpected
//!   5xx or 429 status. Any other unexpected status (a 404, a 401...) fails at once. The delay before
//!   retry `n` is [`HttpSpec::backoff`] × 2^(n-1), at most [`MAX_BACKOFF`]. Note that a transport
//!   error does not prove the server did nothing: only give `retries` to requests that are safe to repeat.
//! - The cancellation channel turning true stops the step at once (mid-request or mid-backoff) with
//!   the error `"cancelled"`.
//! - The body is read chunk by chunk and reading stops past [`HttpSpec::max_body_bytes`] (the rest
//!   is never downloaded); it is kept as lossy UTF-8 with every secret of [`HttpSpec::redact`]
//!   replaced by `[REDACTED]`, as are error texts.
//! - Redirects, proxies and TLS roots are whatever the given [`reqwest::Client`] is configured with.

mod url;

use std::fmt;
use std::pin::pin;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use reqwest::{Method, StatusCode, Url};
use serde_json::Value;
use tokio::sync::watch;

use super::command::{redact, REDACTED};
use super::definition::{embedded_templates, fill_templates, Arg};

use self::url::{check_url_text, render_url};
use crate::workflow::until_cancelled;

/// Per-attempt timeout when `timeout_seconds` is not given.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// First retry delay when `backoff_ms` is not given.
pub const DEFAULT_BACKOFF: Duration = Duration::from_millis(500);
/// Body cap set by [`HttpSpec::parse`].
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;
/// The most `retries` a step may ask for.
pub const MAX_RETRIES: u32 = 10;
/// The most `backoff_ms` a step may ask for, and the longest delay between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

const METHODS: [&str; 6] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"];
const KEYS: [&str; 8] = [
    "method",
    "url",
    "headers",
    "body",
    "expect_status",
    "timeout_seconds",
    "retries",
    "backoff_ms",
];

/// One HTTP request to make. Built by [`HttpSpec::parse`] from the step's `http` object, possibly
/// with templates; [`HttpSpec::render`] fills them in; `max_body_bytes` and `redact` are then set by
/// the runner.
#[derive(Clone, PartialEq)]
pub struct HttpSpec {
    /// One of GET POST PUT PATCH DELETE HEAD (upper case).
    pub method: String,
    /// An absolute `http` or `https` URL; before [`HttpSpec::render`], one whose templates sit where
    /// [`HttpSpec::parse`] allows them.
    pub url: String,
    /// Sent as given, in this order (valid header names and values; the values may embed templates
    /// before [`HttpSpec::render`]).
    pub headers: Vec<(String, String)>,
    pub body: Option<Body>,
    /// The statuses that count as success; `None`: any 2xx.
    pub expect_status: Option<Vec<u16>>,
    /// Bound on each attempt (sending the request and reading the body).
    pub timeout: Duration,
    /// Extra attempts after the first.
    pub retries: u32,
    /// Delay before the first retry; doubles for each further one (at most [`MAX_BACKOFF`]).
    pub backoff: Duration,
    /// Cap on the kept body (after redaction).
    pub max_body_bytes: usize,
    /// Secret values replaced by "[REDACTED]" in the body and error texts (non-empty ones only).
    pub redact: Vec<String>,
}

/// A request body.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// Sent as is.
    Text(String),
    /// Sent serialized (the content type is set by [`HttpSpec::parse`]).
    Json(Value),
}

impl Body {
    /// The bytes sent, as text.
    pub fn to_wire(&self) -> String {
        match self {
            Body::Text(text) => text.clone(),
            Body::Json(value) => value.to_string(),
        }
    }
}

/// Shows the request with secrets redacted (URL, header values, body) and not the secrets themselves.
impl fmt::Debug for HttpSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<(&str, String)> = self
            .headers
            .iter()
            .map(|(name, value)| (name.as_str(), redact(value, &self.redact)))
            .collect();
        f.debug_struct("HttpSpec")
            .field("method", &self.method)
            .field("url", &redact(&self.url, &self.redact))
            .field("headers", &headers)
            .field(
                "body",
                &self
                    .body
                    .as_ref()
                    .map(|b| redact(&b.to_wire(), &self.redact)),
            )
            .field("expect_status", &self.expect_status)
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .field("backoff", &self.backoff)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("redact", &format_args!("<{} secrets>", self.redact.len()))
            .finish()
    }
}

impl HttpSpec {
    /// Reads the step's `http` object: `url` (required), `method` (default GET), `headers`
    /// (`{name: value}`), `body` (a string is sent as is; any other JSON value is sent as JSON, with
    /// `Content-Type: application/json` unless `headers` sets one), `expect_status` (a status or an
    /// array of them; default any 2xx), `timeout_seconds` (per attempt, default 30), `retries` (0 to
    /// 10, default 0), `backoff_ms` (0 to 60000, default 500). Unknown keys are refused.
    ///
    /// A URL with templates must start with a literal `http://` or `https://` and host, or with
    /// `{{ server.url }}` followed by a path, query, fragment or nothing; any other template must come
    /// after the host. It is checked with placeholders in place of the templates. What the templates
    /// name is checked by the workflow (see [`HttpSpec::templated_texts`]).
    ///
    /// On failure, every problem as `"http.<key>: message"`.
    pub fn parse(value: &Value) -> Result<HttpSpec, Vec<String>> {
        let (map, mut problems) = super::definition::step_object(value, "http", &KEYS)?;
        let mut add = |key: &str, message: String| problems.push(format!("http.{key}: {message}"));

        let method = match map.get("method") {
            None | Some(Value::Null) => "GET".to_owned(),
            Some(Value::String(m)) if METHODS.contains(&m.to_ascii_uppercase().as_str()) => {
                m.to_ascii_uppercase()
            }
            Some(other) => {
                add(
                    "method",
                    format!("{other} is not one of {}", METHODS.join(", ")),
                );
                String::new()
            }
        };

        let url = match map.get("url") {
            None | Some(Value::Null) => {
                add("url", "required".to_owned());
                String::new()
            }
            Some(Value::String(text)) => match check_url_text(text) {
                Ok(()) => text.clone(),
                Err(message) => {
                    add("url", message);
                    String::new()
                }
            },
            Some(_) => {
                add("url", "must be a string".to_owned());
                String::new()
            }
        };

        let mut headers = Vec::new();
        match map.get("headers") {
            None | Some(Value::Null) => {}
            Some(Value::Object(entries)) => {
                for (name, value) in entries {
                    let key = format!("headers.{name}");
                    if HeaderName::from_bytes(name.as_bytes()).is_err() {
                        add(&key, "not a valid header name".to_owned());
                        continue;
                    }
                    match value.as_str() {
                        Some(v) if HeaderValue::from_str(v).is_ok() => {
                            headers.push((name.clone(), v.to_owned()));
                        }
                        Some(_) => add(
                            &key,
                            "not a valid header value (no control characters or line breaks)"
                                .to_owned(),
                        ),
                        None => add(&key, "must be a string".to_owned()),
                    }
                }
            }
            Some(_) => add(
                "headers",
                "must be an object of header names to string values".to_owned(),
            ),
        }

        let body = match map.get("body") {
            None | Some(Value::Null) => None,
            Some(Value::String(text)) => Some(Body::Text(text.clone())),
            Some(json) => {
                if !headers
                    .iter()
                    .any(|(name, _)| name.eq_ignore_ascii_case(CONTENT_TYPE.as_str()))
                {
                    headers.push(("content-type".to_owned(), "application/json".to_owned()));
                }
                Some(Body::Json(json.clone()))
            }
        };

        let expect_status = match map.get("expect_status") {
            None | Some(Value::Null) => None,
            Some(Value::Array(items)) if items.is_empty() => {
                add("expect_status", "must list at least one status".to_owned());
                None
            }
            Some(Value::Array(items)) => {
                let mut statuses = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    match status(item) {
                        Ok(s) => statuses.push(s),
                        Err(message) => add(&format!("expect_status[{i}]"), message),
                    }
                }
                Some(statuses)
            }
            Some(item) => match status(item) {
                Ok(s) => Some(vec![s]),
                Err(message) => {
                    add("expect_status", message);
                    None
                }
            },
        };

        let timeout =
            super::definition::timeout_seconds(map, DEFAULT_TIMEOUT).unwrap_or_else(|e| {
                add("timeout_seconds", e);
                DEFAULT_TIMEOUT
            });

        let retries = match map.get("retries") {
            None | Some(Value::Null) => 0,
            Some(v) => match v
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .filter(|&n| n <= MAX_RETRIES)
            {
                Some(n) => n,
                None => {
                    add(
                        "retries",
                        format!("must be a whole number from 0 to {MAX_RETRIES}"),
                    );
                    0
                }
            },
        };

        let max_backoff_ms = u64::try_from(MAX_BACKOFF.as_millis()).unwrap_or(u64::MAX);
        let backoff = match map.get("backoff_ms") {
            None | Some(Value::Null) => DEFAULT_BACKOFF,
            Some(v) => match v.as_u64().filter(|&n| n <= max_backoff_ms) {
                Some(n) => Duration::from_millis(n),
                None => {
                    add(
                        "backoff_ms",
                        format!("must be a whole number from 0 to {max_backoff_ms}"),
                    );
                    DEFAULT_BACKOFF
                }
            },
        };

        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(HttpSpec {
            method,
            url,
            headers,
            body,
            expect_status,
            timeout,
            retries,
            backoff,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            redact: Vec::new(),
        })
    }

    /// The texts that may embed templates, each with its key (`url`, `headers.NAME`, `body`; every
    /// string value of a JSON body is a `body` text).
    pub fn templated_texts(&self) -> Vec<(String, &str)> {
        let mut texts = vec![("url".to_owned(), self.url.as_str())];
        for (name, value) in &self.headers {
            texts.push((format!("headers.{name}"), value.as_str()));
        }
        match &self.body {
            Some(Body::Text(text)) => texts.push(("body".to_owned(), text.as_str())),
            Some(Body::Json(json)) => {
                let mut leaves = Vec::new();
                string_leaves(json, &mut leaves);
                texts.extend(leaves.into_iter().map(|leaf| ("body".to_owned(), leaf)));
            }
            None => {}
        }
        texts
    }

    /// The forms a secret's value may come back in, for redaction: as it is, JSON-escaped (how a
    /// JSON body carries it, and how an echoing server may return it, also with `\/`), and
    /// percent-encoded.
    pub fn redaction_forms(secret: &str) -> Vec<String> {
        let mut forms = vec![secret.to_owned()];
        let json = serde_json::to_string(secret).unwrap_or_default();
        let json = json
            .strip_prefix('"')
            .and_then(|j| j.strip_suffix('"'))
            .unwrap_or(secret)
            .to_owned();
        let slashed = json.replace('/', "\\/");
        for form in [json, slashed, self::url::percent_encode(secret)] {
            if !forms.contains(&form) {
                forms.push(form);
            }
        }
        forms
    }

    /// The names of the secrets (`{{ secrets.NAME }}`) its header values and body use.
    pub fn secret_names(&self) -> Vec<String> {
        let mut names = Vec::new();
        for (_, text) in self.templated_texts() {
            for (_, inner) in embedded_templates(text) {
                if let Some(Arg::Secret(name)) = Arg::from_template(inner) {
                    if !names.contains(&name) {
                        names.push(name);
                    }
                }
            }
        }
        names
    }

    /// The request with its templates filled in by `value` (the runner's resolution of what a
    /// template names):
    ///
    /// - URL: a leading `{{ server.url }}` is inserted as is (the server's own, trusted base URL);
    ///   every other value is percent-encoded (all but `A-Z a-z 0-9 - . _ ~`), so it cannot add a
    ///   `/`, `?`, `#` or `@`; a path segment that ends up `.` or `..` (which a URL parser would
    ///   resolve away) is refused. The result is checked again as a whole.
    /// - Header values: values are inserted as is, but one with a line break (header injection) or
    ///   another character a header cannot hold is refused.
    /// - Body: values are inserted as is in a text body, and in each string value of a JSON body
    ///   (never in its keys), so JSON escaping is the serializer's business.
    ///
    /// Errors name the key (`http.url: ...`); nothing is sent then.
    pub fn render(
        &self,
        value: impl Fn(&Arg) -> Result<String, String>,
    ) -> Result<HttpSpec, String> {
        let mut spec = self.clone();
        spec.url = render_url(&self.url, &value).map_err(|e| format!("http.url: {e}"))?;
        for (name, header) in &mut spec.headers {
            *header =
                render_header(header, &value).map_err(|e| format!("http.headers.{name}: {e}"))?;
        }
        let fill = |text: &str| fill_templates(text, &value);
        spec.body = match spec.body.take() {
            None => None,
            Some(Body::Text(text)) => Some(Body::Text(
                fill(&text).map_err(|e| format!("http.body: {e}"))?,
            )),
            Some(Body::Json(mut json)) => {
                fill_string_leaves(&mut json, &fill).map_err(|e| format!("http.body: {e}"))?;
                Some(Body::Json(json))
            }
        };
        Ok(spec)
    }

    /// Whether `status` counts as success.
    fn expects(&self, status: StatusCode) -> bool {
        match &self.expect_status {
            Some(list) => list.contains(&status.as_u16()),
            None => status.is_success(),
        }
    }

    fn expected_text(&self) -> String {
        match self.expect_status.as_deref() {
            None => "expected 2xx".to_owned(),
            Some([one]) => format!("expected {one}"),
            Some(list) => {
                let list: Vec<String> = list.iter().map(u16::to_string).collect();
                format!("expected one of {}", list.join(", "))
            }
        }
    }
}

/// A header value with its templates filled in (see [`HttpSpec::render`]).
fn render_header(
    text: &str,
    value: &impl Fn(&Arg) -> Result<String, String>,
) -> Result<String, String> {
    let filled = fill_templates(text, |arg| {
        let filled = value(arg)?;
        if filled.contains(['\r', '\n']) {
            return Err(format!(
                "the value of {arg} contains a line break (refused: header injection)"
            ));
        }
        Ok(filled)
    })?;
    HeaderValue::from_str(&filled).map_err(|_| {
        "not a valid header value once filled in (no control characters)".to_owned()
    })?;
    Ok(filled)
}

/// Every string in a JSON value (object values, array items), keys excluded.
fn string_leaves<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::String(text) => out.push(text),
        Value::Array(items) => items.iter().for_each(|item| string_leaves(item, out)),
        Value::Object(map) => map.values().for_each(|item| string_leaves(item, out)),
        _ => {}
    }
}

/// Replaces every string in a JSON value (keys excluded) by `fill` of it.
fn fill_string_leaves(
    value: &mut Value,
    fill: &impl Fn(&str) -> Result<String, String>,
) -> Result<(), String> {
    match value {
        Value::String(text) => *text = fill(text)?,
        Value::Array(items) => {
            for item in items {
                fill_string_leaves(item, fill)?;
            }
        }
        Value::Object(map) => {
            for item in map.values_mut() {
                fill_string_leaves(item, fill)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn status(value: &Value) -> Result<u16, String> {
    match value.as_u64() {
        Some(n @ 100..=599) => u16::try_from(n).map_err(|_| String::new()),
        Some(n) => Err(format!("{n} is not an HTTP status (100 to 599)")),
        None => Err(format!("{value} is not an HTTP status (100 to 599)")),
    }
}

/// How the step ended.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpOutcome {
    /// The status of the last response, if any attempt got one.
    pub status: Option<u16>,
    /// Requests sent (0 if cancelled before the first).
    pub attempts: u32,
    /// The last response's body: lossy UTF-8, capped, redacted. Empty if there was none.
    pub body: String,
    /// The body was longer than `max_body_bytes` and was cut.
    pub truncated: bool,
    pub duration: Duration,
    /// Why the step failed (transport error, timeout, unexpected status, "cancelled"), redacted;
    /// `None` on success.
    pub error: Option<String>,
}

impl HttpOutcome {
    /// The last attempt got an expected status (and the step was not cancelled).
    pub fn success(&self) -> bool {
        self.error.is_none() && self.status.is_some()
    }
}

/// What one attempt gave.
struct Attempt {
    status: Option<StatusCode>,
    bytes: Vec<u8>,
    /// More bytes than were kept were received.
    overflow: bool,
    /// Transport error or timeout (not yet redacted).
    failure: Option<String>,
    /// The failure cannot go away by retrying (the request could not even be built).
    permanent: bool,
}

/// Makes the request, retrying as described in the module documentation, until success, a final
/// failure, or cancellation (`cancel` turning true; a dropped sender never cancels). Never panics.
pub async fn run(
    client: &reqwest::Client,
    spec: &HttpSpec,
    mut cancel: Option<watch::Receiver<bool>>,
) -> HttpOutcome {
    let started = Instant::now();
    let mut outcome = HttpOutcome {
        status: None,
        attempts: 0,
        body: String::new(),
        truncated: false,
        duration: Duration::ZERO,
        error: None,
    };
    let finish = |mut outcome: HttpOutcome, error: Option<String>| {
        outcome.error = error.map(|e| redact(&e, &spec.redact));
        outcome.duration = started.elapsed();
        outcome
    };
    let shown_url = display_url(&spec.url);
    let (method, url) = match (
        Method::from_bytes(spec.method.as_bytes()),
        Url::parse(&spec.url),
    ) {
        (Ok(method), Ok(url)) if matches!(url.scheme(), "http" | "https") => (method, url),
        (Err(_), _) => {
            let error = format!("invalid method {:?}", spec.method);
            return finish(outcome, Some(error));
        }
        _ => {
            let error = format!("invalid URL {shown_url}: only http and https URLs are allowed");
            return finish(outcome, Some(error));
        }
    };
    if cancel.as_ref().is_some_and(|rx| *rx.borrow()) {
        return finish(outcome, Some("cancelled".to_owned()));
    }
    let mut cancelled = pin!(until_cancelled(cancel.as_mut()));
    let keep = spec.max_body_bytes.saturating_add(lookahead(&spec.redact));

    loop {
        outcome.attempts += 1;
        let one = attempt(client, spec, method.clone(), url.clone(), keep);
        let result = tokio::select! {
            biased;
            () = &mut cancelled => return finish(outcome, Some("cancelled".to_owned())),
            result = tokio::time::timeout(spec.timeout, one) => result,
        };
        let attempt = result.unwrap_or_else(|_| Attempt {
            status: None,
            bytes: Vec::new(),
            overflow: false,
            failure: Some(format!(
                "{} {shown_url}: timed out after {}",
                spec.method,
                show_duration(spec.timeout)
            )),
            permanent: false,
        });
        outcome.status = attempt.status.map(|s| s.as_u16());
        let (body, truncated) = render(
            &attempt.bytes,
            attempt.overflow,
            spec.max_body_bytes,
            &spec.redact,
        );
        outcome.body = body;
        outcome.truncated = truncated;

        let (error, retryable) = match (attempt.failure, attempt.status) {
            (Some(failure), _) => (failure, !attempt.permanent),
            (None, Some(status)) if spec.expects(status) => return finish(outcome, None),
            (None, Some(status)) => (
                format!(
                    "unexpected status {} ({})",
                    show_status(status),
                    spec.expected_text()
                ),
                status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS,
            ),
            (None, None) => ("no response".to_owned(), true),
        };
        if !retryable || outcome.attempts > spec.retries {
            let error = if outcome.attempts > 1 {
                format!("{error} (after {} attempts)", outcome.attempts)
            } else {
                error
            };
            return finish(outcome, Some(error));
        }
        let delay = backoff_delay(spec.backoff, outcome.attempts);
        tokio::select! {
            biased;
            () = &mut cancelled => return finish(outcome, Some("cancelled".to_owned())),
            () = tokio::time::sleep(delay) => {}
        }
    }
}

/// Sends the request once and reads at most `keep` bytes of the body.
async fn attempt(
    client: &reqwest::Client,
    spec: &HttpSpec,
    method: Method,
    url: Url,
    keep: usize,
) -> Attempt {
    let shown = format!("{} {}", spec.method, display_url(url.as_str()));
    let mut request = client.request(method, url);
    for (name, value) in &spec.headers {
        request = request.header(name.as_str(), value.as_str());
    }
    if let Some(body) = &spec.body {
        request = request.body(body.to_wire());
    }
    let mut response = match request.send().await {
        Ok(response) => response,
        Err(e) => {
            return Attempt {
                status: None,
                bytes: Vec::new(),
                overflow: false,
                failure: Some(format!("{shown}: {}", error_chain(&e))),
                permanent: e.is_builder(),
            }
        }
    };
    let status = response.status();
    let mut bytes = Vec::new();
    let mut overflow = false;
    let mut failure = None;
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = keep.saturating_sub(bytes.len());
                if chunk.len() > room {
                    bytes.extend_from_slice(chunk.get(..room).unwrap_or_default());
                    // Stop here: the rest of the body is never read (the connection is dropped).
                    overflow = true;
                    break;
                }
                bytes.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(e) => {
                failure = Some(format!(
                    "{shown}: reading the response body: {}",
                    error_chain(&e)
                ));
                break;
            }
        }
    }
    Attempt {
        status: Some(status),
        bytes,
        overflow,
        failure,
        permanent: false,
    }
}

/// `backoff` × 2^(retry - 1), at most [`MAX_BACKOFF`].
fn backoff_delay(backoff: Duration, retry: u32) -> Duration {
    let factor = 1u32
        .checked_shl(retry.saturating_sub(1))
        .unwrap_or(u32::MAX);
    backoff.saturating_mul(factor).min(MAX_BACKOFF)
}

/// The error and its causes, `": "`-separated, without the URL reqwest adds (the caller shows its
/// own, without credentials).
pub(crate) fn error_chain(error: &reqwest::Error) -> String {
    let mut text = if error.is_timeout() {
        "timed out".to_owned()
    } else {
        String::new()
    };
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    let mut first = true;
    while let Some(e) = current {
        let message = if first {
            // reqwest's own message names the URL, which may carry credentials.
            reqwest_kind(error)
        } else {
            e.to_string()
        };
        first = false;
        if !message.is_empty() && !text.contains(&message) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&message);
        }
        current = e.source();
    }
    if text.is_empty() {
        "request failed".to_owned()
    } else {
        text
    }
}

fn reqwest_kind(error: &reqwest::Error) -> String {
    if error.is_connect() {
        "could not connect".to_owned()
    } else if error.is_timeout() {
        String::new()
    } else if error.is_redirect() {
        "too many redirects".to_owned()
    } else if error.is_body() || error.is_decode() {
        "body error".to_owned()
    } else if error.is_builder() {
        "invalid request".to_owned()
    } else {
        "request failed".to_owned()
    }
}

/// The URL with any password replaced by `[REDACTED]` (for messages).
pub(crate) fn display_url(text: &str) -> String {
    match Url::parse(text) {
        Ok(mut url) => {
            if url.password().is_none() {
                return url.to_string();
            }
            // Cannot fail for http(s) URLs with a host; if it did, hide the whole URL. (A username
            // cannot hold an unencoded ':', so the first ":REDACTED@" is the password.)
            if url.set_password(Some("REDACTED")).is_err() {
                return REDACTED.to_owned();
            }
            url.to_string()
                .replacen(":REDACTED@", &format!(":{REDACTED}@"), 1)
        }
        Err(_) => text.to_owned(),
    }
}

fn show_status(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(reason) => format!("{} {reason}", status.as_u16()),
        None => status.as_u16().to_string(),
    }
}

fn show_duration(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// Longest secret length - 1: how far past the cap a secret starting inside it can reach.
fn lookahead(secrets: &[String]) -> usize {
    secrets
        .iter()
        .map(String::len)
        .max()
        .unwrap_or(0)
        .saturating_sub(1)
}

/// Lossy UTF-8, redacted, at most `max` bytes; and whether anything was cut.
///
/// `bytes` holds up to `max` + [`lookahead`] bytes, so a secret that starts before the cut is seen
/// whole: the cut is moved past it so it is replaced whole, then the redacted text is capped at
/// `max`. Text past the cut is dropped before redaction can shift it forward, so no fragment of a
/// secret is ever shown.
pub(crate) fn render(
    bytes: &[u8],
    overflow: bool,
    max: usize,
    secrets: &[String],
) -> (String, bool) {
    let text = String::from_utf8_lossy(bytes);
    let mut truncated = overflow;
    let cut = if text.len() > max {
        truncated = true;
        floor_char_boundary(&text, max)
    } else {
        text.len()
    };
    let mut end = cut;
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        let step = secret.chars().next().map_or(1, char::len_utf8);
        let mut from = 0;
        while let Some(found) = text.get(from..).and_then(|rest| rest.find(secret.as_str())) {
            let start = from + found;
            if start >= cut {
                break;
            }
            end = end.max(start + secret.len());
            from = start + step;
        }
    }
    let mut shown = redact(text.get(..end).unwrap_or_default(), secrets);
    if shown.len() > max {
        shown.truncate(floor_char_boundary(&shown, max));
        truncated = true;
    }
    (shown, truncated)
}

/// The largest char boundary of `s` that is <= `index`.
fn floor_char_boundary(s: &str, index: usize) -> usize {
    let mut i = index.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests;
