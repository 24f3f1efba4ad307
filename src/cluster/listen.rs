//! Notices between instances over `LISTEN/NOTIFY`: cancel requests for a run another instance
//! owns, requests to publish a run's live events, and those events.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use sqlx::postgres::PgListener;
use tokio::sync::broadcast;

use super::Cluster;

/// `{"trace_id", "by", "principal"}`: stop this run if you own it.
pub const CANCEL_CHANNEL: &str = "sustainbot_cancel";
/// A trace id: someone follows this run's events elsewhere; publish them if you run it.
pub const WATCH_CHANNEL: &str = "sustainbot_watch";
/// `{"trace_id", "event", "data"}`: one live event of a run.
pub const EVENTS_CHANNEL: &str = "sustainbot_run_events";

/// PostgreSQL refuses notification payloads of 8000 bytes or more.
const MAX_PAYLOAD: usize = 7900;

/// A notice from another instance.
#[derive(Debug, Clone)]
pub enum Notice {
    Cancel {
        trace_id: String,
        by: String,
        principal: Value,
    },
    Watch {
        trace_id: String,
    },
    Event {
        trace_id: String,
        name: String,
        data: String,
    },
}

/// Where received notices go (to whoever subscribed).
pub(super) struct Notices(broadcast::Sender<Notice>);

impl Default for Notices {
    fn default() -> Notices {
        Notices(broadcast::channel(1024).0)
    }
}

impl Notices {
    pub(super) fn subscribe(&self) -> broadcast::Receiver<Notice> {
        self.0.subscribe()
    }
}

/// The payload of one live event; a step's report too large for a notification goes without its
/// outputs (`"truncated": true`; the whole report is in the run's row once it ends).
pub(super) fn event_payload(trace_id: &str, name: &str, data: &str) -> String {
    let payload = serde_json::json!({ "trace_id": trace_id, "event": name, "data": data });
    let text = payload.to_string();
    if text.len() < MAX_PAYLOAD {
        return text;
    }
    let mut short = serde_json::from_str::<Value>(data).unwrap_or(Value::Null);
    if let Some(step) = short.get_mut("step").and_then(Value::as_object_mut) {
        step.insert("stdout".into(), Value::String(String::new()));
        step.insert("stderr".into(), Value::String(String::new()));
    }
    if let Some(object) = short.as_object_mut() {
        object.insert("truncated".into(), Value::Bool(true));
    }
    let text =
        serde_json::json!({ "trace_id": trace_id, "event": name, "data": short.to_string() })
            .to_string();
    if text.len() < MAX_PAYLOAD {
        text
    } else {
        serde_json::json!({ "trace_id": trace_id, "event": name, "data": "{\"truncated\":true}" })
            .to_string()
    }
}

fn parse(channel: &str, payload: &str) -> Option<Notice> {
    match channel {
        WATCH_CHANNEL => Some(Notice::Watch {
            trace_id: payload.to_owned(),
        }),
        CANCEL_CHANNEL => {
            let value: Value = serde_json::from_str(payload).ok()?;
            Some(Notice::Cancel {
                trace_id: value["trace_id"].as_str()?.to_owned(),
                by: value["by"].as_str()?.to_owned(),
                principal: value["principal"].clone(),
            })
        }
        EVENTS_CHANNEL => {
            let value: Value = serde_json::from_str(payload).ok()?;
            Some(Notice::Event {
                trace_id: value["trace_id"].as_str()?.to_owned(),
                name: value["event"].as_str()?.to_owned(),
                data: value["data"].as_str()?.to_owned(),
            })
        }
        _ => None,
    }
}

/// Listens until the process ends. A lost connection is opened again (after a pause); notices
/// sent meanwhile are missed, which the receivers allow for (a cancel request is also in the
/// run's row, and followers poll the row).
pub(super) fn spawn(cluster: Arc<Cluster>) {
    tokio::spawn(async move {
        loop {
            match listen(&cluster).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "lost the database's notifications; listening again shortly");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    });
}

async fn listen(cluster: &Cluster) -> Result<(), sqlx::Error> {
    let mut listener = PgListener::connect_with(&cluster.pool).await?;
    listener
        .listen_all([CANCEL_CHANNEL, WATCH_CHANNEL, EVENTS_CHANNEL])
        .await?;
    loop {
        // `try_recv` says `None` when the connection was lost (and reconnects on the next call).
        match listener.try_recv().await? {
            Some(notification) => {
                if let Some(notice) = parse(notification.channel(), notification.payload()) {
                    let _ = cluster.notices.0.send(notice);
                }
            }
            None => {
                tracing::warn!("the database's notifications were interrupted; listening again")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_event_goes_without_its_outputs() {
        let data =
            serde_json::json!({ "step": { "id": "s", "stdout": "x".repeat(20_000) } }).to_string();
        let payload = event_payload("t1", "step_finished", &data);
        assert!(payload.len() < MAX_PAYLOAD);
        let Some(Notice::Event {
            trace_id,
            name,
            data,
        }) = parse(EVENTS_CHANNEL, &payload)
        else {
            panic!("not an event: {payload}");
        };
        assert_eq!((trace_id.as_str(), name.as_str()), ("t1", "step_finished"));
        let data: Value = serde_json::from_str(&data).unwrap();
        assert_eq!(data["step"]["id"], "s");
        assert_eq!(data["truncated"], true);
    }

    #[test]
    fn notices_that_do_not_parse_are_ignored() {
        assert!(parse(CANCEL_CHANNEL, "not json").is_none());
        assert!(parse("other", "x").is_none());
        assert!(matches!(
            parse(WATCH_CHANNEL, "t1"),
            Some(Notice::Watch { .. })
        ));
    }
}
