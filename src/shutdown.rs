//! Ending the server within its bound.
//!
//! On the first stop request (SIGINT or SIGTERM) the listener closes, and so does every connection
//! without a request in progress (idle ones, half-sent headers). The requests and runs in progress
//! share the grace period: a run still going at its end is cancelled and recorded as `cancelled`,
//! which also answers a request waiting on it; followers of runs (server-sent events) are told at
//! the signal and their streams end once the runs are drained. The answers then get a moment to go
//! out, whatever is still open is closed, Slack deliveries get a bounded moment, and the audit log
//! closes (a final signed checkpoint). A second stop request cuts this short: what is still going
//! is cancelled on the record at once, the audit log closes, and the process exits.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use tokio::time::Instant;

use crate::http::connections::Server;
use crate::pipeline::Gate;
use crate::slack::Slack;

/// Once the grace period is over, how long cancelled runs get to record `cancelled`.
const CANCEL_BOUND: Duration = Duration::from_secs(10);

/// Once the runs are drained, how long their answers get to go out before connections are cut.
const ANSWER_BOUND: Duration = Duration::from_millis(500);

/// After a second stop request, how long cancelled runs get to record `cancelled`.
const SECOND_REQUEST_BOUND: Duration = Duration::from_secs(2);

/// At shutdown, how long Slack deliveries in flight get.
const SLACK_DRAIN_BOUND: Duration = Duration::from_secs(5);

/// What a server shuts down.
pub(crate) struct Shutdown {
    pub(crate) gate: Gate,
    pub(crate) slack: Arc<Slack>,
    pub(crate) server: Server,
    pub(crate) grace: Duration,
}

impl Shutdown {
    /// Shuts down, the first stop request having come; a further item of `stops` cuts it short.
    pub(crate) async fn run(self, mut stops: impl Stream<Item = ()> + Unpin) {
        let Shutdown {
            gate,
            slack,
            server,
            grace,
        } = self;
        server.stop_accepting();
        let end_of_grace = Instant::now() + grace;
        let orderly = async {
            let runs = gate.drain(grace, CANCEL_BOUND);
            let requests = server.closed_by(end_of_grace);
            let (cancelled, _) = tokio::join!(runs, requests);
            if !server.closed_by(Instant::now() + ANSWER_BOUND).await {
                tracing::warn!(cancelled, "shutdown: closing connections still open");
            }
        };
        let orderly = tokio::select! {
            () = orderly => true,
            Some(()) = stops.next() => {
                tracing::warn!("second stop request: cancelling what is still going, now");
                gate.drain(Duration::ZERO, SECOND_REQUEST_BOUND).await;
                false
            }
        };
        server.close_all();
        if orderly {
            tokio::select! {
                () = slack.notifier.drain(SLACK_DRAIN_BOUND) => {}
                Some(()) = stops.next() => {}
            }
        }
        // A final signed checkpoint, then the writer stops.
        gate.audit().close().await;
        tracing::info!("stopped");
    }
}

/// The process's stop requests: SIGINT and SIGTERM, each time one comes.
pub fn stop_requests() -> impl Stream<Item = ()> + Unpin + Send {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) {
            (Ok(interrupt), Ok(terminate)) => {
                futures_util::stream::unfold((interrupt, terminate), |mut signals| async move {
                    tokio::select! {
                        _ = signals.0.recv() => tracing::info!("SIGINT: stop requested"),
                        _ = signals.1.recv() => tracing::info!("SIGTERM: stop requested"),
                    }
                    Some(((), signals))
                })
                .boxed()
            }
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(error = %e, "cannot listen for SIGINT and SIGTERM");
                futures_util::stream::pending().boxed()
            }
        }
    }
    #[cfg(not(unix))]
    {
        futures_util::stream::unfold((), |()| async {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("Ctrl-C: stop requested");
            Some(((), ()))
        })
        .boxed()
    }
}
