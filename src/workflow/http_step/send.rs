//! Sending an `http` step's request: the attempts, their time limits and retries, and the body
//! read back within its cap.

use std::pin::pin;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode, Url};
use tokio::sync::watch;

use super::spec::{HttpSpec, MAX_BACKOFF};
use crate::workflow::cancel::until_cancelled;
use crate::workflow::display::{display_url, error_chain, show_status};
use crate::workflow::redact::OutputLimits;

/// How the step ended.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpOutcome {
    /// The status of the last response, if any attempt got one.
    pub status: Option<u16>,
    /// Requests sent (0 if cancelled before the first).
    pub attempts: u32,
    /// The last response's body: lossy UTF-8, capped, redacted. Empty if there was none.
    pub body: String,
    /// The body was longer than the limits' `max_bytes` and was cut.
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
/// failure, or cancellation (`cancel` turning true; a dropped sender never cancels); keeps of the
/// body and error texts what `limits` allow. Never panics.
pub async fn run(
    client: &reqwest::Client,
    spec: &HttpSpec,
    limits: &OutputLimits,
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
        outcome.error = error.map(|e| limits.redact(&e));
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
    let keep = limits.keep();

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
        let (body, truncated) = limits.render(&attempt.bytes, attempt.overflow);
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
pub(super) fn backoff_delay(backoff: Duration, retry: u32) -> Duration {
    let factor = 1u32
        .checked_shl(retry.saturating_sub(1))
        .unwrap_or(u32::MAX);
    backoff.saturating_mul(factor).min(MAX_BACKOFF)
}

fn show_duration(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}
