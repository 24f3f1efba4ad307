//! Rate limits per principal and per client address: token buckets (`RATE_LIMIT_PER_MINUTE`,
//! `RATE_LIMIT_PER_IP_PER_MINUTE`; 0, the default, is no limit), answered 429 `RATE_LIMITED` with
//! `Retry-After`.

use std::collections::HashMap;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::connections::PeerAddr;
use super::{ApiError, AppState};
use crate::sync::lock;

/// The most keys a limiter tracks; beyond, full (idle) buckets are forgotten first.
const MAX_KEYS: usize = 10_000;

/// One limit: `per_minute` requests per key, refilled continuously, bursts up to `per_minute`.
pub struct RateLimiter {
    per_minute: u32,
    buckets: std::sync::Mutex<HashMap<String, Bucket>>,
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RateLimiter {
    /// `None` for 0: no limit.
    pub fn new(per_minute: u32) -> Option<RateLimiter> {
        (per_minute > 0).then(|| RateLimiter {
            per_minute,
            buckets: std::sync::Mutex::new(HashMap::new()),
        })
    }

    /// Takes a token for `key`, or says in how many seconds one will be there.
    pub fn check(&self, key: &str) -> Result<(), u64> {
        self.check_at(key, Instant::now())
    }

    fn check_at(&self, key: &str, now: Instant) -> Result<(), u64> {
        let capacity = f64::from(self.per_minute);
        let per_second = capacity / 60.0;
        let mut buckets = lock(&self.buckets);
        if buckets.len() >= MAX_KEYS && !buckets.contains_key(key) {
            buckets.retain(|_, b| refilled(b, now, per_second, capacity) < capacity);
            if buckets.len() >= MAX_KEYS {
                // Still full of active keys: start over rather than grow without bound.
                buckets.clear();
            }
        }
        let bucket = buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: capacity,
            at: now,
        });
        bucket.tokens = refilled(bucket, now, per_second, capacity);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - bucket.tokens) / per_second).ceil().max(1.0) as u64)
        }
    }
}

fn refilled(bucket: &Bucket, now: Instant, per_second: f64, capacity: f64) -> f64 {
    let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
    (bucket.tokens + elapsed * per_second).min(capacity)
}

/// The limits the server applies (each absent when switched off).
pub struct RateLimits {
    pub principal: Option<RateLimiter>,
    pub address: Option<RateLimiter>,
}

impl RateLimits {
    pub fn new(config: &crate::config::HttpConfig) -> RateLimits {
        RateLimits {
            principal: RateLimiter::new(config.rate_limit_per_minute),
            address: RateLimiter::new(config.rate_limit_per_ip_per_minute),
        }
    }
}

/// The refusal: 429 `RATE_LIMITED` with `Retry-After`.
pub fn refused(whose: &str, retry_after: u64) -> ApiError {
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "RATE_LIMITED",
        format!("Too many requests from this {whose}; retry in {retry_after} s"),
    )
    .with_retry_after(retry_after)
}

/// Middleware: the per-address limit, on every endpoint, before anything else reads the request
/// (size it for the monitors that share an address with clients: `/health`, `/metrics` count too).
pub async fn by_address(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if let (Some(limiter), Some(PeerAddr(peer))) = (
        state.rate_limits.address.as_ref(),
        request.extensions().get::<PeerAddr>(),
    ) {
        if let Err(after) = limiter.check(&peer.ip().to_string()) {
            tracing::info!(peer = %peer.ip(), "rate limited (client address)");
            return refused("client address", after).into_response();
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_bucket_allows_its_burst_then_refuses_until_it_refills() {
        let limiter = RateLimiter::new(2).unwrap();
        let start = Instant::now();
        assert!(limiter.check_at("a", start).is_ok());
        assert!(limiter.check_at("a", start).is_ok());
        assert_eq!(limiter.check_at("a", start), Err(30));
        assert!(limiter.check_at("b", start).is_ok(), "keys are apart");
        assert!(limiter
            .check_at("a", start + Duration::from_secs(30))
            .is_ok());
    }

    #[test]
    fn zero_is_no_limit_and_the_keys_are_bounded() {
        assert!(RateLimiter::new(0).is_none());
        let limiter = RateLimiter::new(1).unwrap();
        let now = Instant::now();
        for n in 0..MAX_KEYS + 10 {
            let _ = limiter.check_at(&n.to_string(), now);
        }
        assert!(lock(&limiter.buckets).len() <= MAX_KEYS);
    }
}
