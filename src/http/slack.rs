//! Slack's three request URLs. Every request's signature is checked over the raw body before
//! anything is parsed; without `SLACK_SIGNING_SECRET` they answer 503 (an explicit dev mode
//! accepts unsigned requests, loudly).
//!
//! - `POST /slack/commands` and `POST /slack/events`: slash commands (form-encoded); the second
//!   also takes the Events API (JSON: `url_verification`, `event_callback` with `app_mention`).
//! - `POST /slack/actions`: interactive payloads (form field `payload`: buttons, modals).
//!
//! Slack wants an answer within 3 seconds: a command's reply is the answer when it is ready in
//! time, else the answer says "working on it" and the reply follows at the `response_url`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use utoipa::OpenApi;

use super::extract::{parse_json, unreadable};
use super::openapi::refusals::refusals;
use super::openapi::{
    SlackAction, SlackEvent, SlackEventAnswer, SlackMessage, SlackModalAnswer, SlashCommand,
};
use super::{ApiError, AppState};
use crate::metrics::{ByOutcome, SlackEvent as EventLabel};
use crate::slack::{self, blocks, Invocation, Reply, Slack};

/// The longest Slack body read (Slack's own payloads are a few KiB).
const SLACK_BODY_MAX: usize = 64 * 1024;
/// How long a command may take before the answer becomes "working on it".
const ACK_WITHIN: Duration = Duration::from_millis(2500);

#[derive(OpenApi)]
#[openapi(paths(commands, events, actions))]
pub(super) struct Api;

refusals!(
    /// The errors of Slack's request URLs.
    SlackRefusals,
    Plain,
    [
        "MISSING_SIGNATURE",
        "INVALID_SIGNATURE",
        "STALE_REQUEST",
        "REPLAYED_REQUEST",
        "PAYLOAD_TOO_LARGE",
        "SLACK_NOT_CONFIGURED",
    ]
);

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/slack/commands", post(commands))
        .route("/slack/events", post(events))
        .route("/slack/actions", post(actions))
}

/// A Slack request whose signature holds over its raw body: every Slack handler takes one, so
/// nothing of a request is parsed before it is verified.
struct Signed {
    slack: Arc<Slack>,
    bytes: Bytes,
    headers: HeaderMap,
}

impl FromRequest<AppState> for Signed {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Signed, ApiError> {
        let headers = request.headers().clone();
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(unreadable)?;
        let slack = verified(state, &headers, &bytes)?;
        Ok(Signed {
            slack,
            bytes,
            headers,
        })
    }
}

/// The signature check every Slack request passes first.
fn verified(state: &AppState, headers: &HeaderMap, body: &[u8]) -> Result<Arc<Slack>, ApiError> {
    let slack = Arc::clone(&state.slack);
    let metrics = &state.metrics;
    if body.len() > SLACK_BODY_MAX {
        metrics.slack_signature_verifications.inc(&ByOutcome {
            outcome: "too_large",
        });
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            format!("Slack request bodies are capped at {SLACK_BODY_MAX} bytes"),
        ));
    }
    let Some(secret) = slack.signing_secret() else {
        if state.config.server.dev {
            tracing::warn!(
                "dev mode: accepting an unsigned Slack request (SLACK_SIGNING_SECRET is not set)"
            );
            return Ok(slack);
        }
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "SLACK_NOT_CONFIGURED",
            "Slack is not configured: set SLACK_SIGNING_SECRET",
        ));
    };
    let header_text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let verdict = slack::check(
        secret.expose(),
        header_text("x-slack-request-timestamp"),
        header_text("x-slack-signature"),
        body,
        chrono::Utc::now().timestamp(),
        &slack.replay,
    );
    match verdict {
        Ok(()) => {
            metrics
                .slack_signature_verifications
                .inc(&ByOutcome { outcome: "success" });
            Ok(slack)
        }
        Err(refused) => {
            metrics.slack_signature_verifications.inc(&ByOutcome {
                outcome: refused.label(),
            });
            tracing::warn!(error = %refused, "Slack request refused");
            Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                refused.code(),
                format!("Slack request refused: {refused}"),
            ))
        }
    }
}

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .starts_with("application/x-www-form-urlencoded")
        })
}

/// Slack slash commands.
///
/// `/sustainbot help|status|list|runs|logs|verify|run|approve|deny|cancel`, `/sustainbot-workflows`,
/// `-status`, `-logs`, as the Slack user's mapped human, through the gate. Answered within 3 s;
/// a result that takes longer follows at the `response_url`.
#[utoipa::path(post, path = "/slack/commands", operation_id = "slack_commands", tag = "slack", security(("slack_signature" = [])),
    params(("X-Slack-Request-Timestamp" = String, Header,
        description = "Unix seconds when Slack sent the request (signed with the body).")),
    request_body(content = SlashCommand, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "The command's answer as a Slack message (empty \
        for `ssl_check`).", body = SlackMessage), SlackRefusals))]
async fn commands(Signed { slack, bytes, .. }: Signed) -> Result<Response, ApiError> {
    slash_command(slack, &bytes).await
}

/// A slash command's form, answered within [`ACK_WITHIN`].
async fn slash_command(slack: Arc<Slack>, bytes: &[u8]) -> Result<Response, ApiError> {
    let form: HashMap<String, String> = serde_urlencoded::from_bytes(bytes)
        .map_err(|e| ApiError::validation(format!("Slack command form cannot be read: {e}")))?;
    // Slack checks a command URL's certificate with `ssl_check=1` and no command.
    if form.get("ssl_check").is_some_and(|v| v == "1") {
        return Ok(StatusCode::OK.into_response());
    }
    let field = |name: &str| form.get(name).cloned().unwrap_or_default();
    if field("command").is_empty() || field("user_id").is_empty() {
        return Err(ApiError::validation(
            "Slack command form needs command and user_id",
        ));
    }
    slack.metrics().slack_events_received.inc(&EventLabel {
        event_type: "slash_command",
    });
    let invocation = Invocation {
        team_id: field("team_id"),
        team_domain: field("team_domain"),
        channel_id: field("channel_id"),
        channel_name: field("channel_name"),
        user_id: field("user_id"),
        user_name: field("user_name"),
        command: field("command"),
        text: field("text"),
        reply: form
            .get("response_url")
            .filter(|u| !u.is_empty())
            .map(|u| Reply::ResponseUrl(u.clone())),
        source: "slack_slash_command",
    };
    tracing::info!(
        user = invocation.user_id,
        command = invocation.command,
        "Slack command"
    );
    let reply_to = invocation.reply.clone();
    let handler = Arc::clone(&slack);
    let mut task = slack
        .notifier
        .spawn(async move { handler.handle(&invocation).await });
    let reply = match tokio::time::timeout(ACK_WITHIN, &mut task).await {
        Ok(Ok(reply)) => reply,
        Ok(Err(_)) => {
            tracing::error!("a Slack command's handler failed");
            blocks::reply(
                "ephemeral",
                ":x: Internal error; nothing was started without a record.",
            )
        }
        Err(_) => {
            let notifier = Arc::clone(&slack.notifier);
            slack.notifier.spawn(async move {
                if let (Ok(reply), Some(reply_to)) = (task.await, reply_to) {
                    notifier.reply(&reply_to, reply);
                }
            });
            blocks::reply(
                "ephemeral",
                ":hourglass_flowing_sand: Working on it; the answer follows here.",
            )
        }
    };
    Ok(Json(reply).into_response())
}

/// Slack's Events API, and slash commands.
///
/// A slash command (form-encoded, as `/slack/commands`) or an Events API callback (JSON):
/// `url_verification` is answered with its challenge, an `app_mention` whose text is a command is
/// answered in its thread.
#[utoipa::path(post, path = "/slack/events", operation_id = "slack_events", tag = "slack", security(("slack_signature" = [])),
    params(("X-Slack-Request-Timestamp" = String, Header,
        description = "Unix seconds when Slack sent the request (signed with the body).")),
    request_body(content(
        (SlackEvent = "application/json"),
        (SlashCommand = "application/x-www-form-urlencoded"))),
    responses((status = 200, description = "`{\"ok\": true}` for an event callback, the \
        challenge as text for `url_verification`, a Slack message for a slash command.",
        content(
            (SlackEventAnswer = "application/json"),
            (String = "text/plain"))),
        SlackRefusals))]
async fn events(
    State(state): State<AppState>,
    Signed {
        slack,
        bytes,
        headers,
    }: Signed,
) -> Result<Response, ApiError> {
    if is_form(&headers) {
        return slash_command(slack, &bytes).await;
    }
    // Slack signs the raw bytes: the body is read as JSON only once its signature holds.
    let event = match parse_json(&bytes)? {
        Some(Value::Object(event)) => event,
        _ => {
            return Err(ApiError::validation(
                "Slack event body must be a JSON object",
            ))
        }
    };
    // A fixed set of label values: the event type is client-controlled.
    let kind = match event.get("type").and_then(Value::as_str) {
        Some("url_verification") => "url_verification",
        Some("event_callback") => "event_callback",
        Some("app_rate_limited") => "app_rate_limited",
        _ => "other",
    };
    state
        .metrics
        .slack_events_received
        .inc(&EventLabel { event_type: kind });
    if kind == "url_verification" {
        let challenge = event
            .get("challenge")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        return Ok((
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            challenge,
        )
            .into_response());
    }
    if kind == "event_callback" {
        mention(&slack, &event);
    }
    Ok(Json(json!({"ok": true})).into_response())
}

/// An `app_mention` with a command text (`@SustainBot run deploy ...`): handled like
/// `/sustainbot <text>`, answered in the mention's thread through the bot token.
fn mention(slack: &Arc<Slack>, callback: &serde_json::Map<String, Value>) {
    let event = callback.get("event").cloned().unwrap_or(Value::Null);
    if event["type"] != "app_mention" || event.get("bot_id").is_some_and(|b| !b.is_null()) {
        return;
    }
    let event_id = callback
        .get("event_id")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !event_id.is_empty() && !slack.first_event(event_id) {
        return;
    }
    if !slack.client.has_bot_token() {
        tracing::warn!("an app mention cannot be answered without SLACK_BOT_TOKEN");
        return;
    }
    let text = event["text"].as_str().unwrap_or_default();
    // The mention itself (`<@U0APP>`) comes first.
    let text = match text.trim_start().strip_prefix("<@") {
        Some(rest) => rest.split_once('>').map_or("", |(_, after)| after),
        None => text,
    };
    let channel = event["channel"].as_str().unwrap_or_default().to_owned();
    let thread = event["thread_ts"]
        .as_str()
        .or_else(|| event["ts"].as_str())
        .unwrap_or_default()
        .to_owned();
    let team = callback
        .get("team_id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    // The Events API names no team domain or channel name; the ids stand for them.
    let invocation = Invocation {
        team_id: team.clone(),
        team_domain: team,
        channel_id: channel.clone(),
        channel_name: channel.clone(),
        user_id: event["user"].as_str().unwrap_or_default().to_owned(),
        user_name: event["user"].as_str().unwrap_or_default().to_owned(),
        command: "@mention".to_owned(),
        text: text.trim().to_owned(),
        reply: Some(Reply::Thread {
            channel,
            ts: thread,
        }),
        source: "slack_app_mention",
    };
    let handler = Arc::clone(slack);
    slack.notifier.spawn(async move {
        let reply = handler.handle(&invocation).await;
        if let Some(reply_to) = &invocation.reply {
            handler.notifier.reply(reply_to, reply);
        }
    });
}

/// Slack interactions: Approve / Deny buttons and the deny-reason modal.
///
/// `POST /slack/actions`: button clicks and modal submissions, acknowledged at once; decisions
/// and their messages follow (a modal's refusal is the answer, so that it shows in the modal).
#[utoipa::path(post, path = "/slack/actions", operation_id = "slack_actions", tag = "slack", security(("slack_signature" = [])),
    params(("X-Slack-Request-Timestamp" = String, Header,
        description = "Unix seconds when Slack sent the request (signed with the body).")),
    request_body(content = SlackAction, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "Acknowledged: empty, or for a modal submission a \
        `response_action` (such as the reason's validation error).", body = SlackModalAnswer),
        SlackRefusals))]
async fn actions(
    State(state): State<AppState>,
    Signed { slack, bytes, .. }: Signed,
) -> Result<Response, ApiError> {
    let form: HashMap<String, String> = serde_urlencoded::from_bytes(&bytes)
        .map_err(|e| ApiError::validation(format!("Slack action form cannot be read: {e}")))?;
    let payload: Value = form
        .get("payload")
        .and_then(|p| serde_json::from_str(p).ok())
        .filter(Value::is_object)
        .ok_or_else(|| {
            ApiError::validation("Slack action needs a JSON object in the payload field")
        })?;
    state.metrics.slack_events_received.inc(&EventLabel {
        event_type: "interaction",
    });
    let is_submission = payload["type"] == "view_submission";
    let handler = Arc::clone(&slack);
    let mut task = slack
        .notifier
        .spawn(async move { handler.act(&payload).await });
    // A modal shows the answer (a refusal stays in the modal) when it comes within Slack's 3 s;
    // a click is answered at once, its decision follows.
    if is_submission {
        if let Ok(Ok(acted)) = tokio::time::timeout(ACK_WITHIN, &mut task).await {
            if let Some(answer) = acted.answer {
                return Ok(Json(answer).into_response());
            }
        }
    }
    Ok(StatusCode::OK.into_response())
}
