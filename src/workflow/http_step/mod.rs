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
//! - The body is read chunk by chunk and reading stops past what the run's
//!   [`OutputLimits`](crate::workflow::OutputLimits) keep (the rest is never downloaded); it is kept
//!   as lossy UTF-8 with every secret of the limits replaced by `[REDACTED]`, as are error texts.
//! - Redirects, proxies and TLS roots are whatever the given [`reqwest::Client`] is configured with.

mod send;
mod spec;
mod step;
mod templates;
mod url;

pub use self::send::{run, HttpOutcome};
pub use self::spec::{Body, HttpSpec, DEFAULT_BACKOFF, DEFAULT_TIMEOUT, MAX_BACKOFF, MAX_RETRIES};
pub(super) use self::step::report;
pub use self::step::HttpStep;

#[cfg(test)]
mod tests;
