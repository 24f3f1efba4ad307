//! `HTTP_*`: how long a client may take over each part of a request, and how many connections are
//! served at once (see the connection layer, `http::connections`).

use super::Reader;

/// The connection layer's limits, as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpConfig {
    /// A request's header must arrive whole within this many seconds of its first byte (of the
    /// connection, for the first request).
    pub header_timeout_seconds: u64,
    /// A request's body must arrive whole within this many seconds of its header.
    pub body_timeout_seconds: u64,
    /// A kept-alive connection may wait this many seconds for its next request.
    pub idle_timeout_seconds: u64,
    /// Connections served at once (lowered to what the descriptor limit allows).
    pub max_connections: usize,
    /// `RATE_LIMIT_PER_MINUTE`: requests per minute per authenticated principal (0: no limit).
    pub rate_limit_per_minute: u32,
    /// `RATE_LIMIT_PER_IP_PER_MINUTE`: requests per minute per client address (0: no limit).
    pub rate_limit_per_ip_per_minute: u32,
}

impl HttpConfig {
    pub fn read(reader: &mut Reader<'_>) -> HttpConfig {
        HttpConfig {
            header_timeout_seconds: at_least_one(reader, "HTTP_HEADER_TIMEOUT_SECONDS", 30),
            body_timeout_seconds: at_least_one(reader, "HTTP_BODY_TIMEOUT_SECONDS", 30),
            idle_timeout_seconds: at_least_one(reader, "HTTP_IDLE_TIMEOUT_SECONDS", 60),
            max_connections: usize::try_from(at_least_one(reader, "HTTP_MAX_CONNECTIONS", 1024))
                .unwrap_or(usize::MAX),
            rate_limit_per_minute: per_minute(reader, "RATE_LIMIT_PER_MINUTE"),
            rate_limit_per_ip_per_minute: per_minute(reader, "RATE_LIMIT_PER_IP_PER_MINUTE"),
        }
    }
}

/// A rate: 0 (the default) is no limit.
fn per_minute(reader: &mut Reader<'_>, name: &str) -> u32 {
    u32::try_from(reader.count(name, 0)).unwrap_or(u32::MAX)
}

/// A whole number of at least 1: none of these limits may be switched off (0 would let a client
/// hold a connection for ever, or refuse every one).
fn at_least_one(reader: &mut Reader<'_>, name: &str, default: u64) -> u64 {
    let value = reader.count(name, default);
    if value == 0 {
        reader.problems.push(format!("{name} must be at least 1"));
        return default;
    }
    value
}
