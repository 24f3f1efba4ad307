//! A stand-in for Slack on loopback: it captures what Slack would receive (messages at a
//! `response_url`, Web API calls, webhook posts) and answers as Slack does. Plus signed requests
//! to send to the server, as Slack signs them.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::serve;

/// One request Slack would have received.
#[derive(Debug, Clone)]
pub struct Captured {
    /// `response/<id>`, `api/chat.postMessage`, `webhook`, ...
    pub path: String,
    pub authorization: Option<String>,
    pub body: Value,
}

#[derive(Default)]
struct Seen {
    requests: Vec<Captured>,
    /// `users.info` answers by user id.
    users: Vec<(String, Value)>,
    /// Answer this many webhook posts with 500 first.
    webhook_failures: usize,
    /// `users.info` answers after this long.
    users_info_delay: Duration,
}

/// The stand-in. `base` is `http://127.0.0.1:<port>`.
#[derive(Clone)]
pub struct FakeSlack {
    pub base: String,
    seen: Arc<Mutex<Seen>>,
}

async fn capture(
    State(seen): State<Arc<Mutex<Seen>>>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    // JSON, or a form (users.info takes no JSON) read as an object of strings.
    let body: Value = serde_json::from_slice(&body).unwrap_or_else(|_| {
        let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
        Value::Object(
            form.into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect(),
        )
    });
    let is_json = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let delay = seen.lock().unwrap().users_info_delay;
    if path == "api/users.info" && !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut seen = seen.lock().unwrap();
    seen.requests.push(Captured {
        path: path.clone(),
        authorization,
        body: body.clone(),
    });
    match path.as_str() {
        "webhook" if seen.webhook_failures > 0 => {
            seen.webhook_failures -= 1;
            (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response()
        }
        "api/chat.postMessage" => Json(json!({
            "ok": true, "channel": body["channel"], "ts": "1700000000.000100",
            "message": {"text": body["text"]}
        }))
        .into_response(),
        // As Slack: users.info does not accept a JSON body.
        "api/users.info" if is_json => {
            Json(json!({"ok": false, "error": "invalid_arguments"})).into_response()
        }
        // As Slack: only a message the app posted with chat.postMessage can be updated.
        "api/chat.update" if body["ts"] != "1700000000.000100" => {
            Json(json!({"ok": false, "error": "cant_update_message"})).into_response()
        }
        "api/views.open" if body["trigger_id"] == "expired" => {
            Json(json!({"ok": false, "error": "expired_trigger_id"})).into_response()
        }
        p if p.starts_with("response/gone") => {
            (axum::http::StatusCode::NOT_FOUND, "expired_url").into_response()
        }
        "api/users.info" => {
            let id = body["user"].as_str().unwrap_or_default();
            let answer = seen
                .users
                .iter()
                .find(|(user, _)| user == id)
                .map(|(_, answer)| answer.clone())
                .unwrap_or_else(|| json!({"ok": false, "error": "user_not_found"}));
            Json(answer).into_response()
        }
        p if p.starts_with("api/") => Json(json!({"ok": true})).into_response(),
        _ => "ok".into_response(),
    }
}

impl FakeSlack {
    pub async fn start() -> FakeSlack {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let app = Router::new()
            .route("/{*path}", post(capture))
            .with_state(Arc::clone(&seen));
        FakeSlack {
            base: format!("http://{}", serve(app).await),
            seen,
        }
    }

    /// A `response_url` of this stand-in.
    pub fn response_url(&self, id: &str) -> String {
        format!("{}/response/{id}", self.base)
    }

    /// What `users.info` answers for `user_id`.
    pub fn user(&self, user_id: &str, answer: Value) {
        self.seen
            .lock()
            .unwrap()
            .users
            .push((user_id.to_owned(), answer));
    }

    /// `users.info` answers only after `delay`.
    pub fn slow_users_info(&self, delay: Duration) {
        self.seen.lock().unwrap().users_info_delay = delay;
    }

    /// The next `count` webhook posts fail with 500.
    pub fn fail_webhook(&self, count: usize) {
        self.seen.lock().unwrap().webhook_failures = count;
    }

    /// Everything received at `path` so far.
    pub fn at(&self, path: &str) -> Vec<Captured> {
        self.seen
            .lock()
            .unwrap()
            .requests
            .iter()
            .filter(|c| c.path == path)
            .cloned()
            .collect()
    }

    /// Waits (up to 10 s) until `path` has received `count` requests matching `matches`; all of
    /// them.
    pub async fn wait_for(
        &self,
        path: &str,
        count: usize,
        matches: impl Fn(&Value) -> bool,
    ) -> Vec<Captured> {
        for _ in 0..200 {
            let found: Vec<Captured> = self
                .at(path)
                .into_iter()
                .filter(|c| matches(&c.body))
                .collect();
            if found.len() >= count {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "{path} did not receive {count} matching requests; got {:#?}",
            self.at(path)
        );
    }
}

/// The whole text of a message (its `text` and every block's text), for assertions.
pub fn message_text(message: &Value) -> String {
    let mut text = message["text"].as_str().unwrap_or_default().to_owned();
    for block in message["blocks"].as_array().into_iter().flatten() {
        if let Some(t) = block["text"]["text"].as_str() {
            text.push('\n');
            text.push_str(t);
        }
        for element in block["elements"].as_array().into_iter().flatten() {
            if let Some(t) = element["text"].as_str() {
                text.push('\n');
                text.push_str(t);
            }
        }
    }
    text
}

/// A slash command's form, as Slack posts it.
pub fn command_form(user_id: &str, command: &str, text: &str, response_url: &str) -> Vec<u8> {
    serde_urlencoded::to_string([
        ("token", "legacy"),
        ("team_id", "T0001"),
        ("team_domain", "acme"),
        ("channel_id", "C0001"),
        ("channel_name", "deploys"),
        ("user_id", user_id),
        ("user_name", "someone"),
        ("command", command),
        ("text", text),
        ("api_app_id", "A0001"),
        ("response_url", response_url),
        ("trigger_id", "13345224609.738474920.8088930838d88f008e0"),
    ])
    .expect("form")
    .into_bytes()
}

/// An interactive payload's form (`payload=<json>`).
pub fn action_form(payload: &Value) -> Vec<u8> {
    serde_urlencoded::to_string([("payload", payload.to_string())])
        .expect("form")
        .into_bytes()
}

/// The headers Slack sends with `body`, signed with `secret` at `timestamp`.
pub fn signed_headers(
    secret: &str,
    timestamp: i64,
    body: &[u8],
    content_type: &str,
) -> Vec<(&'static str, String)> {
    vec![
        ("content-type", content_type.to_owned()),
        ("x-slack-request-timestamp", timestamp.to_string()),
        (
            "x-slack-signature",
            sustainbot::slack::sign(secret, timestamp, body),
        ),
    ]
}

pub const FORM: &str = "application/x-www-form-urlencoded";
