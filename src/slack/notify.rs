//! What Slack hears without asking: a run's result at the `response_url` of the command that
//! started it, approval requests with their buttons, and completion notifications to the webhook.
//! The gate tells [`Notifier`] (a [`Listener`]); every delivery runs in a task of the notifier's,
//! bounded in number, and shutdown waits for them (bounded too).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio_util::task::TaskTracker;

use super::blocks;
use super::client::SlackClient;
use crate::config::Notify;
use crate::metrics::{Metrics, SlackDelivery};
use crate::pipeline::{ApprovalRequested, Finished, Listener};
use crate::sync::lock;

/// Deliveries in flight at most; more are dropped (and counted).
const IN_FLIGHT_MAX: usize = 1024;
/// A `response_url` works for 30 minutes (Slack's rule).
const RESPONSE_URL_LIFETIME: Duration = Duration::from_secs(30 * 60);
/// Runs whose requesters wait for an answer in Slack, at most.
const ORIGINS_MAX: usize = 10_000;

/// Where a run's requester waits for its result.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A slash command's or an interaction's `response_url`.
    ResponseUrl(String),
    /// A mention's thread (answered with `chat.postMessage`).
    Thread { channel: String, ts: String },
}

#[derive(Debug, Clone)]
struct Origin {
    reply: Reply,
    at: Instant,
}

/// A place among the deliveries in flight, given back when dropped.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Delivers to Slack on the gate's news.
pub struct Notifier {
    client: SlackClient,
    metrics: Arc<Metrics>,
    notify: Notify,
    approvals_channel: Option<String>,
    in_channel: bool,
    origins: Mutex<HashMap<String, Origin>>,
    tasks: TaskTracker,
    in_flight: Arc<AtomicUsize>,
}

impl Notifier {
    pub fn new(
        client: SlackClient,
        metrics: Arc<Metrics>,
        notify: Notify,
        approvals_channel: Option<String>,
        in_channel: bool,
    ) -> Notifier {
        Notifier {
            client,
            metrics,
            notify,
            approvals_channel,
            in_channel,
            origins: Mutex::new(HashMap::new()),
            tasks: TaskTracker::new(),
            in_flight: Arc::new(AtomicUsize::new(0)),
        }
    }

    pub fn response_type(&self) -> &'static str {
        if self.in_channel {
            "in_channel"
        } else {
            "ephemeral"
        }
    }

    /// Remembers where the run `trace_id`'s requester waits (before it is submitted: a quick run
    /// may end before the submission returns).
    pub fn expect(&self, trace_id: &str, reply: Reply) {
        let mut origins = lock(&self.origins);
        if origins.len() >= ORIGINS_MAX {
            origins.retain(|_, o| o.at.elapsed() < RESPONSE_URL_LIFETIME);
        }
        if origins.len() < ORIGINS_MAX {
            origins.insert(
                trace_id.to_owned(),
                Origin {
                    reply,
                    at: Instant::now(),
                },
            );
        }
    }

    /// Forgets a run that was refused before it was admitted (its refusal is the reply).
    pub fn forget(&self, trace_id: &str) {
        lock(&self.origins).remove(trace_id);
    }

    fn origin(&self, trace_id: &str, take: bool) -> Option<Origin> {
        let mut origins = lock(&self.origins);
        let origin = if take {
            origins.remove(trace_id)
        } else {
            origins.get(trace_id).cloned()
        };
        origin.filter(|o| o.at.elapsed() < RESPONSE_URL_LIFETIME)
    }

    /// Runs `delivery` in a task of the notifier's, unless too many are in flight.
    pub fn deliver<F>(&self, target: &'static str, delivery: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        if self.in_flight.fetch_add(1, Ordering::AcqRel) >= IN_FLIGHT_MAX {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            self.metrics.slack_deliveries.inc(&SlackDelivery {
                target,
                result: "dropped",
            });
            tracing::warn!(
                delivery = target,
                "too many Slack deliveries in flight; one dropped"
            );
            return;
        }
        // Given back however the task ends (a panic included).
        let slot = Slot(Arc::clone(&self.in_flight));
        self.tasks.spawn(async move {
            let _slot = slot;
            delivery.await;
        });
    }

    /// Runs an inbound Slack task (a command's handler, a click) in a task of the notifier's, so
    /// that shutdown waits for it (bounded) like a delivery.
    pub fn spawn<F>(&self, task: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tasks.spawn(task)
    }

    /// Posts `message` where `reply` says, in a delivery task.
    pub fn reply(&self, reply: &Reply, message: Value) {
        match reply {
            Reply::ResponseUrl(url) => self.respond(url, message),
            Reply::Thread { channel, ts } => {
                let mut message = message;
                if let Some(object) = message.as_object_mut() {
                    object.remove("response_type");
                    object.remove("replace_original");
                }
                message["channel"] = Value::String(channel.clone());
                message["thread_ts"] = Value::String(ts.clone());
                let client = self.client.clone();
                self.deliver("chat.postMessage", async move {
                    let _ = client.post_message(&message).await;
                });
            }
        }
    }

    /// Posts `message` to a `response_url` in a delivery task.
    pub fn respond(&self, response_url: &str, message: Value) {
        let (client, url) = (self.client.clone(), response_url.to_owned());
        self.deliver("response_url", async move {
            let _ = client.respond(&url, &message).await;
        });
    }

    /// Waits, at most `bound`, for the deliveries in flight (at shutdown).
    pub async fn drain(&self, bound: Duration) {
        self.tasks.close();
        if tokio::time::timeout(bound, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("shutdown: Slack deliveries still in flight were abandoned");
        }
    }
}

impl Listener for Notifier {
    fn finished(&self, run: &Finished<'_>) {
        if let Some(origin) = self.origin(run.trace_id, true) {
            let message = match run.result {
                Ok(report) => blocks::run_result(report, self.response_type()),
                Err(error) => blocks::run_refused(run.workflow_name, run.trace_id, error),
            };
            self.reply(&origin.reply, message);
        }
        let Ok(report) = run.result else {
            return;
        };
        let wanted = match self.notify {
            Notify::All => true,
            Notify::Failures => !report.success,
            Notify::None => false,
        };
        if wanted && self.client.has_webhook() {
            let message = blocks::notification(report, run.actor, run.drag_mode);
            let client = self.client.clone();
            self.deliver("webhook", async move {
                let _ = client.webhook(&message).await;
            });
        }
    }

    fn approval_requested(&self, request: &ApprovalRequested) {
        let message = blocks::approval_request(request);
        if let Some(origin) = self.origin(&request.trace_id, false) {
            self.reply(&origin.reply, message.clone());
        }
        let client = self.client.clone();
        match &self.approvals_channel {
            Some(channel) if client.has_bot_token() => {
                let mut message = message;
                message["channel"] = Value::String(channel.clone());
                if let Some(object) = message.as_object_mut() {
                    object.remove("response_type");
                }
                self.deliver("chat.postMessage", async move {
                    let _ = client.post_message(&message).await;
                });
            }
            _ if client.has_webhook() => {
                let mut message = message;
                if let Some(object) = message.as_object_mut() {
                    object.remove("response_type");
                }
                self.deliver("webhook", async move {
                    let _ = client.webhook(&message).await;
                });
            }
            _ => {}
        }
    }
}
