//! Shutdown, as the gate sees it: close, let the runs in progress finish within the grace period,
//! cancel what is left (on the record), and say so to whoever follows runs.

use std::sync::OnceLock;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::Gate;

/// Where a shutdown is. Followers of a run (server-sent events) learn from it when the server
/// stops and when nothing more will happen to runs.
#[derive(Debug, Default)]
pub struct Draining {
    began: CancellationToken,
    over: CancellationToken,
    cancel_at: OnceLock<DateTime<Utc>>,
}

impl Draining {
    /// Resolves once a drain has begun: nothing new starts.
    pub async fn began(&self) {
        self.began.cancelled().await;
    }

    /// Resolves once the drain is over: every run has ended or been recorded as cancelled (or the
    /// bound for that has passed).
    pub async fn over(&self) {
        self.over.cancelled().await;
    }

    /// When runs still going are cancelled, once a drain has begun.
    pub fn cancel_at(&self) -> Option<DateTime<Utc>> {
        self.cancel_at.get().copied()
    }
}

impl Gate {
    /// Where a shutdown is.
    pub fn draining(&self) -> &Draining {
        &self.draining
    }

    /// Shutdown: closes the gate (new runs are refused `SHUTTING_DOWN`), waits up to `grace` for
    /// the runs in progress, then cancels the rest (their command steps are killed and each
    /// records `cancelled`) and waits, at most `cancel_bound`, for their records. Runs waiting for
    /// approval keep their `requested` record and wait again after a restart. A second drain (a
    /// second signal, `grace` zero) cancels at once. Returns how many runs were cancelled.
    pub async fn drain(&self, grace: Duration, cancel_bound: Duration) -> usize {
        self.tasks.close();
        if let Some(at) = chrono::Duration::from_std(grace)
            .ok()
            .and_then(|grace| Utc::now().checked_add_signed(grace))
        {
            let _ = self.draining.cancel_at.set(at);
        }
        self.draining.began.cancel();
        let cancelled = if tokio::time::timeout(grace, self.tasks.wait()).await.is_ok() {
            0
        } else {
            self.cancel_left(cancel_bound).await
        };
        self.draining.over.cancel();
        cancelled
    }

    async fn cancel_left(&self, cancel_bound: Duration) -> usize {
        let cancelled = self.cancel_working("shutdown");
        if cancelled > 0 {
            tracing::warn!(
                cancelled,
                "shutdown: cancelled runs still going after the grace period"
            );
        }
        if tokio::time::timeout(cancel_bound, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::error!("shutdown: runs still going after their cancellation; leaving them");
        }
        cancelled
    }

    /// Asks every queued or running run to stop (each records `cancelled`); runs waiting for
    /// approval are left waiting. Returns how many were asked.
    pub fn cancel_working(&self, by: &str) -> usize {
        self.runs
            .working()
            .iter()
            .filter(|run| run.cancel(by))
            .count()
    }
}
