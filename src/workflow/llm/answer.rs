//! The model server's answer: read within its bound, then its text or its error extracted for
//! the endpoint's wire format.

use serde_json::Value;

use super::{Api, MAX_RESPONSE_BYTES};
use crate::workflow::display::{error_chain, show_status};
use crate::workflow::redact::cap;

/// How much of an unexpected answer is quoted in an error.
pub(super) const SNIPPET_BYTES: usize = 300;

pub(super) struct Answer {
    pub(super) text: String,
    pub(super) model: Option<String>,
}

/// Sends the request, reads the answer (at most [`MAX_RESPONSE_BYTES`]) and extracts the text.
pub(super) async fn exchange(
    request: reqwest::RequestBuilder,
    api: &Api,
    shown: &str,
) -> Result<Answer, String> {
    let mut response = request.send().await.map_err(|e| {
        let what = if e.is_builder() {
            "cannot build the request to"
        } else {
            "cannot reach"
        };
        format!("{what} model server at {shown}: {}", error_chain(&e))
    })?;
    let status = response.status();
    let mut bytes = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if bytes.len().saturating_add(chunk.len()) > MAX_RESPONSE_BYTES {
                    return Err(format!(
                        "model server at {shown} sent more than {} MiB",
                        MAX_RESPONSE_BYTES >> 20
                    ));
                }
                bytes.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(e) => {
                return Err(format!(
                    "model server at {shown}: reading the answer: {}",
                    error_chain(&e)
                ))
            }
        }
    }
    let parsed = serde_json::from_slice::<Value>(&bytes);
    if !status.is_success() {
        let detail = parsed
            .as_ref()
            .ok()
            .and_then(server_error)
            .unwrap_or_else(|| snippet(&bytes));
        return Err(format!(
            "model server at {shown} answered {}: {detail}",
            show_status(status)
        ));
    }
    let value = parsed.map_err(|e| {
        format!(
            "model server at {shown} sent malformed JSON ({e}): {}",
            snippet(&bytes)
        )
    })?;
    let (pointer, field) = match api {
        Api::Ollama => ("/response", "response"),
        Api::OpenAi => ("/choices/0/message/content", "choices[0].message.content"),
    };
    match value.pointer(pointer).and_then(Value::as_str) {
        Some(text) => Ok(Answer {
            text: text.to_owned(),
            model: value
                .get("model")
                .and_then(Value::as_str)
                .filter(|m| !m.is_empty())
                .map(str::to_owned),
        }),
        None => Err(match server_error(&value) {
            Some(message) => format!("model server at {shown} reported an error: {message}"),
            None => format!(
                "model server at {shown} answered without a {field} text: {}",
                snippet(&bytes)
            ),
        }),
    }
}

/// The error message of an Ollama (`{"error": "..."}`) or OpenAI (`{"error": {"message": ...}}`) answer.
fn server_error(value: &Value) -> Option<String> {
    let error = value.get("error")?;
    error
        .as_str()
        .or_else(|| error.get("message").and_then(Value::as_str))
        .map(|m| snippet(m.as_bytes()))
}

/// The first [`SNIPPET_BYTES`] of `bytes`, lossy UTF-8, "…" if cut; `(empty body)` if empty.
fn snippet(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    if text.is_empty() {
        return "(empty body)".to_owned();
    }
    let (mut shown, cut) = cap(text, SNIPPET_BYTES);
    if cut {
        shown.push('…');
    }
    shown
}
