//! Notices between instances on the gate's side: cancel requests for runs running here, requests
//! to publish a run's live events, and following a run another instance owns.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use super::Gate;
use crate::auth::Principal;
use crate::cluster::{Notice, RunRow};
use crate::runs::RunStatus;
use crate::sync::lock;

/// How long followers of another instance's run wait between looks at its row.
const FOLLOW_POLL: Duration = Duration::from_secs(1);

impl Gate {
    /// Answers the other instances' notices until the process ends: cancel requests for runs
    /// running here, and requests to publish a run's live events.
    pub fn answer_notices(&self) {
        let Some(cluster) = self.cluster.clone() else {
            return;
        };
        let gate = self.clone();
        let mut notices = cluster.notices();
        let publishing: Arc<Mutex<HashSet<String>>> = Arc::default();
        tokio::spawn(async move {
            use tokio::sync::broadcast::error::RecvError;
            loop {
                let notice = match notices.recv().await {
                    Ok(notice) => notice,
                    Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => return,
                };
                match notice {
                    Notice::Cancel {
                        trace_id,
                        by,
                        principal,
                    } => {
                        if let Some(run) = gate.runs.get(&trace_id) {
                            let cancelled = match serde_json::from_value::<Principal>(principal) {
                                Ok(principal) => run.cancel_as(&by, &principal),
                                Err(_) => run.cancel(&by),
                            };
                            if cancelled {
                                tracing::info!(
                                    trace_id,
                                    by,
                                    "run cancellation requested from another instance"
                                );
                            }
                        }
                    }
                    Notice::Watch { trace_id } => {
                        let Some(run) = gate.runs.get(&trace_id) else {
                            continue;
                        };
                        if !lock(&publishing).insert(trace_id.clone()) {
                            continue;
                        }
                        let Some(mut events) = run.subscribe() else {
                            lock(&publishing).remove(&trace_id);
                            continue;
                        };
                        let (cluster, publishing) = (Arc::clone(&cluster), Arc::clone(&publishing));
                        tokio::spawn(async move {
                            while let Ok(event) = events.recv().await {
                                let data = serde_json::to_string(&event).unwrap_or_default();
                                if let Err(e) =
                                    cluster.publish(&trace_id, event.name(), &data).await
                                {
                                    tracing::debug!(error = %e, "cannot publish a run event");
                                }
                            }
                            lock(&publishing).remove(&trace_id);
                        });
                    }
                    Notice::Event { .. } => {}
                }
            }
        });
    }

    /// Follows a run another instance owns: its live events (published by that instance on
    /// request) and its row (looked at every second, so that its end is never missed), as
    /// `(event name, JSON data)` pairs, until it ends.
    pub fn follow_shared(
        &self,
        row: RunRow,
    ) -> impl futures_util::Stream<Item = (String, String)> + Send + 'static {
        struct Following {
            cluster: Option<Arc<crate::cluster::Cluster>>,
            notices: Option<tokio::sync::broadcast::Receiver<Notice>>,
            trace_id: String,
            status: RunStatus,
            asked: bool,
            ended: bool,
        }
        let cluster = self.cluster.clone();
        let notices = cluster.as_ref().map(|c| c.notices());
        let state = Following {
            cluster,
            notices,
            trace_id: row.trace_id.clone(),
            status: row.status(),
            asked: false,
            ended: !row.status().is_active(),
        };
        futures_util::stream::unfold(state, |mut state| async move {
            if state.ended {
                return None;
            }
            let cluster = state.cluster.clone()?;
            if !state.asked {
                state.asked = true;
                if let Err(e) = cluster.watch(&state.trace_id).await {
                    tracing::debug!(error = %e, "cannot ask for a run's live events");
                }
            }
            let mut poll = tokio::time::interval(FOLLOW_POLL);
            poll.tick().await;
            loop {
                let notices = state.notices.as_mut()?;
                tokio::select! {
                    notice = notices.recv() => match notice {
                        Ok(Notice::Event { trace_id, name, data }) if trace_id == state.trace_id => {
                            if name == "status" {
                                let status = serde_json::from_str::<Value>(&data)
                                    .ok()
                                    .and_then(|v| v["status"].as_str().map(crate::cluster::status_from))
                                    .unwrap_or(state.status);
                                state.status = status;
                                state.ended = !status.is_active();
                            }
                            return Some(((name, data), state));
                        }
                        Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                    },
                    _ = poll.tick() => {
                        if let Ok(Some(row)) = cluster.load(&state.trace_id).await {
                            let status = row.status();
                            if status != state.status {
                                state.status = status;
                                state.ended = !status.is_active();
                                let data = serde_json::json!({ "event": "status", "status": status }).to_string();
                                return Some((("status".to_owned(), data), state));
                            }
                        }
                    }
                }
            }
        })
    }
}
