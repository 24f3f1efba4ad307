//! The request an `http` step makes: read from its definition, strictly.

use std::fmt;
use std::time::Duration;

use reqwest::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use reqwest::StatusCode;
use serde_json::Value;

use super::url::check_url_text;
use crate::workflow::display::display_url;
use crate::workflow::fields::{step_object, timeout_seconds};

/// Per-attempt timeout when `timeout_seconds` is not given.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// First retry delay when `backoff_ms` is not given.
pub const DEFAULT_BACKOFF: Duration = Duration::from_millis(500);
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
/// with templates; [`HttpSpec::render`] fills them in at run time. What may be shown of the answer
/// is the run's business ([`OutputLimits`](crate::workflow::OutputLimits)), not the request's.
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

/// Shows the request without what may carry a secret once it is filled in: the URL without its
/// password, the header names without their values, the body's length.
impl fmt::Debug for HttpSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<&str> = self.headers.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("HttpSpec")
            .field("method", &self.method)
            .field("url", &display_url(&self.url))
            .field("headers", &headers)
            .field(
                "body",
                &self
                    .body
                    .as_ref()
                    .map(|b| format!("<{} bytes>", b.to_wire().len())),
            )
            .field("expect_status", &self.expect_status)
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .field("backoff", &self.backoff)
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
        let (map, mut problems) = step_object(value, "http", &KEYS)?;
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

        let timeout = timeout_seconds(map, DEFAULT_TIMEOUT).unwrap_or_else(|e| {
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
        })
    }

    /// The forms a secret's value may come back in, for redaction: as it is, JSON-escaped (how a
    /// JSON body carries it, and how an echoing server may return it, also with `\/`), and
    /// percent-encoded.
    pub fn redaction_forms(secret: &str) -> Vec<String> {
        crate::workflow::redact::forms(secret)
    }

    /// Whether `status` counts as success.
    pub(super) fn expects(&self, status: StatusCode) -> bool {
        match &self.expect_status {
            Some(list) => list.contains(&status.as_u16()),
            None => status.is_success(),
        }
    }

    pub(super) fn expected_text(&self) -> String {
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

fn status(value: &Value) -> Result<u16, String> {
    match value.as_u64() {
        Some(n @ 100..=599) => u16::try_from(n).map_err(|_| String::new()),
        Some(n) => Err(format!("{n} is not an HTTP status (100 to 599)")),
        None => Err(format!("{value} is not an HTTP status (100 to 599)")),
    }
}
