//! The answer to a connection beyond the cap when every place is serving a request: a short 503
//! `TOO_MANY_CONNECTIONS`, written without parsing anything, then the socket is closed.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;

use crate::trace::TraceId;

/// How long a refused connection may take to be told and closed.
const REFUSAL_BOUND: Duration = Duration::from_secs(1);

/// The refusal as it goes out: the API's error body, a fresh trace id, `Retry-After`.
fn answer() -> Vec<u8> {
    let trace_id = TraceId::random();
    let body = serde_json::json!({
        "error": "Too many connections; try again shortly",
        "code": "TOO_MANY_CONNECTIONS",
        "trace_id": trace_id.as_str(),
    })
    .to_string();
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nx-trace-id: {}\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        trace_id.as_str(),
        body.len()
    )
    .into_bytes()
}

/// Tells the client there is no room, then closes. Whatever it sent is read and dropped (closing
/// with unread bytes would reset the connection and lose the answer); all within a second.
/// `_permit` is one of the few refusals allowed in flight.
pub(super) async fn too_many_connections(mut socket: TcpStream, _permit: OwnedSemaphorePermit) {
    let mut scratch = [0u8; 4096];
    let _ = tokio::time::timeout(REFUSAL_BOUND, async {
        while matches!(socket.try_read(&mut scratch), Ok(n) if n > 0) {}
        socket.write_all(&answer()).await?;
        socket.shutdown().await?;
        while socket.read(&mut scratch).await? > 0 {}
        Ok::<(), std::io::Error>(())
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_is_a_whole_http_answer_with_the_error_body() {
        let answer = String::from_utf8(answer()).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 "));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["code"], "TOO_MANY_CONNECTIONS");
        assert!(head.contains(&format!(
            "x-trace-id: {}",
            body["trace_id"].as_str().unwrap()
        )));
    }
}
