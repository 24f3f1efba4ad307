//! How a step shows the places it reaches and what went wrong there: URLs without their passwords,
//! errors with their causes, statuses with their reasons.

use reqwest::{StatusCode, Url};

use super::redact::REDACTED;

/// The error and its causes, `": "`-separated, without the URL reqwest adds (the caller shows its
/// own, without credentials).
pub(super) fn error_chain(error: &reqwest::Error) -> String {
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
pub(super) fn display_url(text: &str) -> String {
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

pub(super) fn show_status(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(reason) => format!("{} {reason}", status.as_u16()),
        None => status.as_u16().to_string(),
    }
}
