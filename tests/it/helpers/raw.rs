//! Raw TCP connections to a server, for what an HTTP client library will not do: send half a
//! header or half a body and hold, keep one connection for several requests, see when the server
//! closes it.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An answer read off a raw connection.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    /// The header section, as sent (lines separated by CRLF).
    pub head: String,
    pub body: String,
}

impl RawResponse {
    /// The body as JSON; panics (with the answer) when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }

    /// A header's value (the first of that name), case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then_some(value.trim())
        })
    }
}

/// One TCP connection to a server, driven by hand.
pub struct RawConnection {
    stream: TcpStream,
    /// Bytes read past the last answer.
    pending: Vec<u8>,
}

/// `host:port` of a server whose address is `http://host:port`.
pub fn socket_address(address: &str) -> String {
    address.trim_start_matches("http://").to_owned()
}

impl RawConnection {
    /// Connects to `address` (`http://host:port` or `host:port`) within 5 s.
    pub async fn open(address: &str) -> RawConnection {
        let target = socket_address(address);
        let stream = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(&target))
            .await
            .unwrap_or_else(|_| panic!("connecting to {target} took over 5 s"))
            .unwrap_or_else(|e| panic!("connect to {target}: {e}"));
        RawConnection {
            stream,
            pending: Vec::new(),
        }
    }

    /// Sends `bytes` as they are.
    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .await
            .expect("send on a raw connection");
    }

    /// Sends `GET path` (keep-alive), with `Authorization: Bearer <token>` when given, and reads
    /// the answer within `within`.
    pub async fn get(&mut self, path: &str, token: Option<&str>, within: Duration) -> RawResponse {
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\n{auth}\r\n");
        self.send(request.as_bytes()).await;
        self.response(within)
            .await
            .unwrap_or_else(|| panic!("no answer to GET {path} within {within:?}"))
    }

    /// Reads one answer (its body by `Content-Length`); `None` when none came whole within
    /// `within` or the connection closed first.
    pub async fn response(&mut self, within: Duration) -> Option<RawResponse> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(response) = self.parse() {
                return Some(response);
            }
            let mut buffer = [0u8; 8192];
            let read = tokio::time::timeout_at(deadline, self.stream.read(&mut buffer))
                .await
                .ok()?;
            match read {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.pending.extend_from_slice(&buffer[..n]),
            }
        }
    }

    /// Takes a whole answer off `pending`, if there is one.
    fn parse(&mut self) -> Option<RawResponse> {
        let end = self.pending.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&self.pending[..end]).into_owned();
        let status = head.split(' ').nth(1)?.parse().ok()?;
        let mut response = RawResponse {
            status,
            head,
            body: String::new(),
        };
        let length: usize = response
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let start = end + 4;
        if self.pending.len() < start + length {
            return None;
        }
        response.body = String::from_utf8_lossy(&self.pending[start..start + length]).into_owned();
        self.pending.drain(..start + length);
        Some(response)
    }

    /// Waits up to `within` for the server to close the connection (reading and discarding
    /// whatever it sends); how long that took, or `None` when it is still open by then.
    pub async fn closed_within(&mut self, within: Duration) -> Option<Duration> {
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + within;
        let mut buffer = [0u8; 8192];
        loop {
            match tokio::time::timeout_at(deadline, self.stream.read(&mut buffer)).await {
                Err(_) => return None,
                Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
                Ok(Ok(_)) => continue,
            }
        }
    }
}
