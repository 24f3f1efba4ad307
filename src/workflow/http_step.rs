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

use std::fmt;
use std::pin::pin;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use reqwest::{Method, StatusCode, Url};
use serde_json::Value;
use tokio::sync::watch;

use super::command::{redact, REDACTED};
use super::definition::{embedded_templates, fill_templates, Arg};

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

/// Stands for `{{ server.url }}` when a templated URL is checked at load.
const SERVER_URL_PLACEHOLDER: &str = "http://localhost";
/// Stands for any other template when a templated URL is checked at load.
const VALUE_PLACEHOLDER: &str = "x";

/// Checks a URL that may embed templates (see [`HttpSpec::parse`]).
fn check_url_text(text: &str) -> Result<(), String> {
    if embedded_templates(text).next().is_none() {
        return check_url(text);
    }
    let base_end = url_base_end(text)?;
    let (base, rest) = text.split_at(base_end);
    let placeholder = |arg: &Arg| {
        Ok(match arg {
            Arg::ServerUrl => SERVER_URL_PLACEHOLDER.to_owned(),
            _ => VALUE_PLACEHOLDER.to_owned(),
        })
    };
    let base = fill_templates(base, placeholder)?;
    let rest = fill_templates(rest, |_| Ok(VALUE_PLACEHOLDER.to_owned()))?;
    check_url(&format!("{base}{rest}"))
}

/// Where the base of a URL with templates ends: after a leading `{{ server.url }}`, or after the
/// literal scheme and host. Any other template must come after it, so none can choose the scheme,
/// the host or the credentials.
fn url_base_end(text: &str) -> Result<usize, String> {
    let mut templates = embedded_templates(text).peekable();
    let end = match templates.peek() {
        Some((range, "server.url")) if range.start == 0 => {
            let end = range.end;
            templates.next();
            let rest = &text[end..];
            if !(rest.is_empty() || rest.starts_with(['/', '?', '#'])) {
                return Err(
                    "after {{ server.url }} comes a path (/...), a query (?...), a fragment (#...) or nothing"
                        .to_owned(),
                );
            }
            end
        }
        _ => {
            let scheme = ["http://", "https://"]
                .into_iter()
                .find(|scheme| {
                    text.get(..scheme.len())
                        .is_some_and(|start| start.eq_ignore_ascii_case(scheme))
                })
                .ok_or(
                    "a URL with templates must start with http://, https:// or {{ server.url }}",
                )?;
            // The WHATWG URL parser ends the host at any of these (`\` too, for http and https).
            let end = text[scheme.len()..]
                .find(['/', '?', '#', '\\'])
                .map_or(text.len(), |i| i + scheme.len());
            // `http:///{{ x }}`: the parser would take the host from what follows the slashes.
            if end == scheme.len() {
                return Err("a URL with templates needs a literal host".to_owned());
            }
            end
        }
    };
    if templates.any(|(range, _)| range.start < end) {
        return Err(
            "templates may only come after the host (in the path, query or fragment); the scheme and host are literal or {{ server.url }}"
                .to_owned(),
        );
    }
    Ok(end)
}

/// A URL with its templates filled in (see [`HttpSpec::render`]).
fn render_url(
    text: &str,
    value: &impl Fn(&Arg) -> Result<String, String>,
) -> Result<String, String> {
    if embedded_templates(text).next().is_none() {
        return Ok(text.to_owned());
    }
    let (base_text, rest_text) = text.split_at(url_base_end(text)?);
    let base = fill_templates(base_text, value)?;
    let rest = fill_templates(rest_text, |arg| Ok(percent_encode(&value(arg)?)))?;
    let url = format!("{base}{rest}");
    let shown = display_url(&url);
    // A path segment of dots would be resolved away by the URL parser (`/a/../b` is `/b`): the
    // path sent must be the path written.
    if let Some(segment) = dot_segment(&url) {
        return Err(format!(
            "the path has a '{segment}' segment after templates, which would be read as a relative path ({shown})"
        ));
    }
    check_url(&url).map_err(|e| format!("{e} (after templates: {shown})"))?;
    // Belt and braces: whatever the values were, the origin and credentials are the base's.
    let inert = fill_templates(rest_text, |_| Ok(VALUE_PLACEHOLDER.to_owned()))?;
    let same = match (Url::parse(&url), Url::parse(&format!("{base}{inert}"))) {
        (Ok(got), Ok(want)) => {
            got.origin() == want.origin()
                && got.username() == want.username()
                && got.password() == want.password()
        }
        _ => false,
    };
    if !same {
        return Err(format!(
            "the templates changed where the request goes ({shown})"
        ));
    }
    Ok(url)
}

/// The first path segment of `url` that a URL parser reads as `.` or `..` (also percent-encoded).
fn dot_segment(url: &str) -> Option<&str> {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let path_start = after_scheme.find('/')?;
    let path = &after_scheme[path_start..];
    let path = &path[..path.find(['?', '#']).unwrap_or(path.len())];
    path.split('/').find(|segment| {
        let lower = segment.to_ascii_lowercase().replace("%2e", ".");
        lower == "." || lower == ".."
    })
}

/// Every byte but the unreserved ones (RFC 3986: `A-Z a-z 0-9 - . _ ~`) as `%XX`.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
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

fn check_url(text: &str) -> Result<(), String> {
    let url = Url::parse(text).map_err(|e| format!("not a valid URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "only http and https URLs are allowed, not {}:",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("the URL has no host".to_owned());
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

/// Completes when the channel turns true; never if there is no channel or its sender is dropped.
async fn until_cancelled(cancel: Option<&mut watch::Receiver<bool>>) {
    if let Some(rx) = cancel {
        if rx.wait_for(|&cancelled| cancelled).await.is_ok() {
            return;
        }
    }
    std::future::pending::<()>().await
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
mod tests {
    use super::*;

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
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
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
        let outcome = run(&client(), &spec(&format!("{base}/hello")), None).await;
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
        let outcome = run(&client(), &s, None).await;
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
        let outcome = run(&client(), &spec(&format!("{base}/teapot")), None).await;
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
        let outcome = run(&client(), &s, None).await;
        assert!(outcome.success(), "{outcome:?}");
        assert_eq!(outcome.attempts, 2);
        assert_eq!(outcome.body, "ok");
        assert_eq!(count.load(Ordering::SeqCst), 2);

        // 429 is retried too; retries exhausted report the last status and the attempts.
        let (base, count) = flaky(429, 10).await;
        let mut s = spec(&format!("{base}/"));
        s.retries = 2;
        let outcome = run(&client(), &s, None).await;
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
        let outcome = run(&client(), &s, None).await;
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
        let outcome = run(&client(), &s, None).await;
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
        let outcome = run(&client(), &s, None).await;
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
        let outcome = run(&client(), &s, None).await;
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
        let outcome = run(&client(), &s, Some(rx)).await;
        assert!(!outcome.success());
        assert_eq!(outcome.error.as_deref(), Some("cancelled"));
        assert_eq!(outcome.attempts, 1);
        assert!(outcome.duration < Duration::from_secs(5), "{outcome:?}");

        // Already cancelled: nothing is sent.
        let (_tx, rx) = watch::channel(true);
        let outcome = run(&client(), &s, Some(rx)).await;
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
        let outcome = run(&client(), &s, Some(rx)).await;
        assert_eq!(outcome.error.as_deref(), Some("cancelled"));
        assert_eq!(outcome.attempts, 1);
        assert!(outcome.duration < Duration::from_secs(5), "{outcome:?}");

        // A dropped sender never cancels.
        let (tx, rx) = watch::channel(false);
        drop(tx);
        let base = serve(Router::new().route("/", get(|| async { "ok" }))).await;
        let outcome = run(&client(), &spec(&format!("{base}/")), Some(rx)).await;
        assert!(outcome.success(), "{outcome:?}");
    }

    #[tokio::test]
    async fn a_huge_body_is_capped() {
        let base = serve(Router::new().route(
            "/big",
            get(|| async { "é".repeat(3 << 20) }), // 6 MiB
        ))
        .await;
        let mut s = spec(&format!("{base}/big"));
        s.max_body_bytes = 1001;
        let outcome = run(&client(), &s, None).await;
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
        let mut s = spec(&format!("http://{addr}/stream"));
        s.max_body_bytes = 100_000;
        let outcome = run(&client(), &s, None).await;
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
        s.redact = vec![secret.to_owned(), String::new()];
        let outcome = run(&client(), &s, None).await;
        assert_eq!(outcome.status, Some(400));
        assert_eq!(outcome.body, "bad token [REDACTED]!");
        assert!(!format!("{s:?}").contains(secret), "{s:?}");

        // Transport errors name the URL, redacted, and never a URL password.
        let port = closed_port().await;
        let mut s = spec(&format!("http://user:pa55word@127.0.0.1:{port}/{secret}"));
        s.redact = vec![secret.to_owned()];
        let outcome = run(&client(), &s, None).await;
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
            get(|| async {
                "xxxxxxxxABCDEFGHIJKLMNOPQRSTUVWXYZ0123ABCDEFGHIJKLMNOPQRSTUVWXYZ0123"
            }),
        ))
        .await;
        let mut s = spec(&format!("{base}/cut"));
        s.redact = vec!["ABCDEFGHIJKLMNOPQRSTUVWXYZ0123".to_owned()];
        s.max_body_bytes = 20;
        let outcome = run(&client(), &s, None).await;
        assert_eq!(outcome.body, "xxxxxxxx[REDACTED]");
        assert!(outcome.truncated);
        s.max_body_bytes = 10;
        let outcome = run(&client(), &s, None).await;
        assert_eq!(outcome.body, "xxxxxxxx[R");
    }

    #[test]
    fn render_never_shows_a_fragment() {
        let secrets = vec!["aa".to_owned()];
        // Overlapping occurrences across the cut.
        let (shown, truncated) = render(b"baaab", false, 3, &secrets);
        assert!(truncated);
        assert!(!shown.contains('a'), "{shown}");
        assert_eq!(render(b"abc", false, 10, &[]), ("abc".to_owned(), false));
        assert_eq!(render(b"abc", true, 10, &[]), ("abc".to_owned(), true));
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
        let outcome = run(&client(), &spec, None).await;
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
        let outcome = run(&client(), &spec, None).await;
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
        assert_eq!(spec.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
        assert!(spec.headers.is_empty() && spec.body.is_none() && spec.redact.is_empty());

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
    fn values(name: &'static str, base: &'static str) -> impl Fn(&Arg) -> Result<String, String> {
        move |arg| match arg {
            Arg::Parameter(p) if p == "name" => Ok(name.to_owned()),
            Arg::ServerUrl => Ok(base.to_owned()),
            other => Err(format!("{other} is not set")),
        }
    }

    fn templated(url: &str) -> HttpSpec {
        HttpSpec::parse(&json!({ "url": url })).unwrap()
    }

    #[test]
    fn parse_allows_url_templates_only_after_the_host() {
        for url in [
            "{{ server.url }}",
            "{{server.url}}/health",
            "{{ server.url }}?q={{ parameters.name }}",
            "http://127.0.0.1:8080/files/{{ parameters.name }}",
            "HTTPS://example.com?next={{ server.url }}#{{ steps.a.output }}",
        ] {
            assert!(
                HttpSpec::parse(&json!({ "url": url })).is_ok(),
                "{url} is allowed"
            );
        }
        for (url, want) in [
            (
                "{{ parameters.name }}/x",
                "must start with http://, https:// or {{ server.url }}",
            ),
            (
                "ftp://example.com/{{ parameters.name }}",
                "must start with http://",
            ),
            ("/health{{ server.url }}", "must start with http://"),
            (
                "http://{{ parameters.name }}/x",
                "templates may only come after the host",
            ),
            (
                "http://example.com{{ parameters.name }}/x",
                "templates may only come after the host",
            ),
            (
                "https://user:{{ parameters.name }}@example.com/",
                "templates may only come after the host",
            ),
            (
                "http://example.com:{{ parameters.name }}/",
                "templates may only come after the host",
            ),
            (
                "{{ server.url }}:9/x",
                "after {{ server.url }} comes a path",
            ),
            (
                "{{ server.url }}.evil.com/x",
                "after {{ server.url }} comes a path",
            ),
            ("http:///{{ parameters.name }}", "needs a literal host"),
            (
                "http://exa mple.com/{{ parameters.name }}",
                "not a valid URL",
            ),
        ] {
            let problems = HttpSpec::parse(&json!({ "url": url })).unwrap_err();
            assert!(
                problems[0].starts_with("http.url: ") && problems[0].contains(want),
                "{url}: {problems:?}"
            );
        }
    }

    #[test]
    fn url_values_are_percent_encoded_and_the_server_url_is_not() {
        let spec =
            templated("http://127.0.0.1:8080/files/{{ parameters.name }}?v={{parameters.name}}");
        let rendered = spec.render(values("../x?y=1#z@evil.com", "")).unwrap();
        assert_eq!(
            rendered.url,
            "http://127.0.0.1:8080/files/..%2Fx%3Fy%3D1%23z%40evil.com?v=..%2Fx%3Fy%3D1%23z%40evil.com"
        );
        let url = Url::parse(&rendered.url).unwrap();
        assert_eq!(url.host_str(), Some("127.0.0.1"));
        assert_eq!(url.fragment(), None);

        let spec =
            templated("{{ server.url }}/health?back={{ server.url }}&n={{ parameters.name }}");
        let rendered = spec.render(values("a b/é%", "http://[::1]:4321")).unwrap();
        assert_eq!(
            rendered.url,
            "http://[::1]:4321/health?back=http%3A%2F%2F%5B%3A%3A1%5D%3A4321&n=a%20b%2F%C3%A9%25"
        );
        // A literal URL is left alone.
        let spec = templated("http://example.com/a%20b?c=d");
        assert_eq!(spec.render(values("", "")).unwrap().url, spec.url);
    }

    #[test]
    fn a_url_that_templates_make_invalid_fails_to_render() {
        let spec = templated("http://example.com/files/{{ parameters.name }}/delete");
        for dots in [".", ".."] {
            let error = spec.render(values(dots, "")).unwrap_err();
            assert!(
                error.starts_with("http.url: the path has a '")
                    && error.contains("read as a relative path"),
                "{error}"
            );
        }
        // A value cannot spell an encoded dot: its `%` is encoded in turn.
        assert_eq!(
            spec.render(values("%2E", "")).unwrap().url,
            "http://example.com/files/%252E/delete"
        );
        // Dots made of several values, or around an empty one, are caught the same way.
        let spec =
            templated("http://example.com/files/{{ parameters.name }}.{{ parameters.name }}/x");
        let error = spec.render(values("", "")).unwrap_err();
        assert!(error.contains("read as a relative path"), "{error}");
        // Dots in the query are not a path: allowed.
        let spec = templated("http://example.com/files?v={{ parameters.name }}");
        assert_eq!(
            spec.render(values("..", "")).unwrap().url,
            "http://example.com/files?v=.."
        );
        // A server URL that is not one (cannot happen with a real server) is caught, not sent.
        let spec = templated("{{ server.url }}/health");
        let error = spec.render(values("", "not a url")).unwrap_err();
        assert!(error.starts_with("http.url: not a valid URL"), "{error}");
        let error = spec.render(values("", "ftp://h")).unwrap_err();
        assert!(error.contains("only http and https"), "{error}");
        // A value that cannot be found fails too.
        let spec = templated("http://example.com/{{ steps.a.output }}");
        let error = spec.render(values("", "")).unwrap_err();
        assert_eq!(error, "http.url: {{ steps.a.output }} is not set");
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
            serve(Router::new().fallback(|uri: axum::http::Uri| async move { uri.to_string() }))
                .await;
        let spec = templated(&format!("{base}/files/{{{{ parameters.name }}}}"));
        let spec = spec.render(values("../x?y=1#z@evil.com", "")).unwrap();
        let outcome = run(&client(), &spec, None).await;
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
}
