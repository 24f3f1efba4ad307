//! Slack's side of the wire: `response_url`, the Web API (`chat.postMessage`, `chat.update`,
//! `users.info`) and the incoming webhook. Every call has a timeout and a bounded number of
//! retries with backoff (honouring `Retry-After` up to a cap); a failure is logged and counted,
//! never raised into a run.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::config::Secret;
use crate::metrics::{Metrics, SlackDelivery};

/// One attempt's bound.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts per delivery, the first included.
const ATTEMPTS: u32 = 3;
/// The wait before the second attempt; doubled for each further one.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// The longest `Retry-After` obeyed.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(10);

/// Where a delivery goes (also the metric's label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    ResponseUrl,
    PostMessage,
    Update,
    UsersInfo,
    Webhook,
    ViewsOpen,
}

impl Target {
    pub fn label(self) -> &'static str {
        match self {
            Target::ResponseUrl => "response_url",
            Target::PostMessage => "chat.postMessage",
            Target::Update => "chat.update",
            Target::UsersInfo => "users.info",
            Target::Webhook => "webhook",
            Target::ViewsOpen => "views.open",
        }
    }
}

/// Why a delivery failed, after its retries.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DeliveryError {
    #[error("{target} is not configured")]
    NotConfigured { target: &'static str },
    #[error("{target}: {reason}")]
    Failed {
        target: &'static str,
        reason: String,
    },
}

/// Talks to Slack. Cheap to clone.
#[derive(Clone)]
pub struct SlackClient {
    http: reqwest::Client,
    /// `SLACK_API_URL` without a trailing slash (`https://slack.com/api`).
    api_url: Arc<str>,
    bot_token: Option<Secret>,
    webhook_url: Option<Secret>,
    metrics: Arc<Metrics>,
}

impl SlackClient {
    pub fn new(
        api_url: &str,
        bot_token: Option<Secret>,
        webhook_url: Option<Secret>,
        metrics: Arc<Metrics>,
    ) -> SlackClient {
        let http = reqwest::Client::builder()
            .timeout(ATTEMPT_TIMEOUT)
            .connect_timeout(Duration::from_secs(3))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        SlackClient {
            http,
            api_url: api_url.trim_end_matches('/').into(),
            bot_token,
            webhook_url,
            metrics,
        }
    }

    pub fn has_bot_token(&self) -> bool {
        self.bot_token.is_some()
    }

    pub fn has_webhook(&self) -> bool {
        self.webhook_url.is_some()
    }

    /// Posts a message to a slash command's or an action's `response_url`.
    pub async fn respond(&self, response_url: &str, message: &Value) -> Result<(), DeliveryError> {
        self.post(Target::ResponseUrl, response_url, None, message.into())
            .await
            .map(drop)
    }

    /// Posts to the incoming webhook (`SLACK_WEBHOOK_URL`).
    pub async fn webhook(&self, message: &Value) -> Result<(), DeliveryError> {
        let Some(url) = &self.webhook_url else {
            return Err(DeliveryError::NotConfigured {
                target: "SLACK_WEBHOOK_URL",
            });
        };
        self.post(Target::Webhook, url.expose(), None, message.into())
            .await
            .map(drop)
    }

    /// `chat.postMessage`; answers the posted message's `(channel, ts)`.
    pub async fn post_message(&self, message: &Value) -> Result<(String, String), DeliveryError> {
        let answer = self
            .api(Target::PostMessage, "chat.postMessage", message)
            .await?;
        let text = |key: &str| answer[key].as_str().unwrap_or_default().to_owned();
        Ok((text("channel"), text("ts")))
    }

    /// `chat.update` of the message `ts` in `channel`.
    pub async fn update(&self, message: &Value) -> Result<(), DeliveryError> {
        self.api(Target::Update, "chat.update", message)
            .await
            .map(drop)
    }

    /// `views.open` (a modal) for an interaction's `trigger_id`.
    pub async fn open_view(&self, body: &Value) -> Result<(), DeliveryError> {
        self.api(Target::ViewsOpen, "views.open", body)
            .await
            .map(drop)
    }

    /// `users.info` of `user_id`: the whole answer. (A form: this method takes no JSON body.)
    pub async fn users_info(&self, user_id: &str) -> Result<Value, DeliveryError> {
        let form = Body::Form(vec![("user", user_id.to_owned())]);
        self.api(Target::UsersInfo, "users.info", form).await
    }

    /// A Web API method with the bot token; Slack answers 200 with `ok: false` on its errors.
    async fn api(
        &self,
        target: Target,
        method: &str,
        body: impl Into<Body<'_>>,
    ) -> Result<Value, DeliveryError> {
        let Some(token) = &self.bot_token else {
            return Err(DeliveryError::NotConfigured {
                target: "SLACK_BOT_TOKEN",
            });
        };
        let url = format!("{}/{method}", self.api_url);
        let answer = self.post(target, &url, Some(token), body.into()).await?;
        let answer: Value = serde_json::from_slice(&answer).map_err(|e| {
            self.count(target, "failed");
            tracing::warn!(delivery = target.label(), error = %e, "Slack's answer is not JSON");
            DeliveryError::Failed {
                target: target.label(),
                reason: format!("answer is not JSON: {e}"),
            }
        })?;
        if answer["ok"].as_bool() != Some(true) {
            self.count(target, "refused");
            let error = answer["error"].as_str().unwrap_or("unknown error");
            tracing::warn!(delivery = target.label(), error, "Slack refused a call");
            return Err(DeliveryError::Failed {
                target: target.label(),
                reason: format!("Slack answered ok=false: {error}"),
            });
        }
        Ok(answer)
    }

    /// One delivery: up to [`ATTEMPTS`] attempts, retrying on connection errors, 429 and 5xx.
    async fn post(
        &self,
        target: Target,
        url: &str,
        token: Option<&Secret>,
        body: Body<'_>,
    ) -> Result<bytes::Bytes, DeliveryError> {
        let mut backoff = FIRST_BACKOFF;
        let mut last = String::new();
        for attempt in 1..=ATTEMPTS {
            let mut request = match &body {
                Body::Json(json) => self.http.post(url).json(json),
                Body::Form(fields) => self.http.post(url).form(fields),
            };
            if let Some(token) = token {
                request = request.bearer_auth(token.expose());
            }
            let mut wait = backoff;
            match request.send().await {
                Ok(response) if response.status().is_success() => match response.bytes().await {
                    Ok(bytes) => {
                        self.count(target, "ok");
                        return Ok(bytes);
                    }
                    Err(e) => last = format!("reading the answer: {}", e.without_url()),
                },
                Ok(response) => {
                    let status = response.status();
                    last = format!("HTTP {status}");
                    if status.as_u16() == 429 {
                        if let Some(after) = retry_after(&response) {
                            wait = after.min(MAX_RETRY_AFTER);
                        }
                    } else if !status.is_server_error() {
                        break;
                    }
                }
                Err(e) => last = e.without_url().to_string(),
            }
            if attempt < ATTEMPTS {
                self.count(target, "retried");
                tokio::time::sleep(wait).await;
                backoff *= 2;
            }
        }
        self.count(target, "failed");
        tracing::warn!(delivery = target.label(), error = %last, "Slack delivery failed");
        Err(DeliveryError::Failed {
            target: target.label(),
            reason: last,
        })
    }

    fn count(&self, target: Target, result: &'static str) {
        self.metrics.slack_deliveries.inc(&SlackDelivery {
            target: target.label(),
            result,
        });
    }
}

/// What a call sends: JSON, or a form (for the Web API methods that take no JSON).
pub enum Body<'a> {
    Json(&'a Value),
    Form(Vec<(&'static str, String)>),
}

impl<'a> From<&'a Value> for Body<'a> {
    fn from(json: &'a Value) -> Body<'a> {
        Body::Json(json)
    }
}

fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    response
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}
