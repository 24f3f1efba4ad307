//! What one connection is doing, as its timeouts see it: waiting for a request's header, idle
//! between requests, or serving a request; and the socket wrapper and request guard that keep it
//! up to date.

use std::io;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Limits;
use crate::sync::lock;

/// Where a connection is between its requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// A request's header is due: from the connection's start, or from the first byte after an
    /// idle period.
    Header,
    /// Kept alive between requests; nothing of the next one has come yet.
    Idle,
    /// A request is being served (its body read, its handler run, its answer written).
    Busy,
}

#[derive(Debug)]
struct State {
    phase: Phase,
    /// When the phase began.
    since: Instant,
    /// Requests whose answer is not finished (one at a time on HTTP/1; a count to be safe).
    in_flight: usize,
    /// Since when a write has been waiting for the client to read.
    write_blocked: Option<Instant>,
}

/// One connection's state, shared by its socket, its requests and its task.
#[derive(Debug)]
pub(super) struct Watch {
    state: Mutex<State>,
    /// Told when the phase changes, so that the task re-arms its deadline.
    changed: Notify,
    /// Cancelled when the connection must make room for a new one.
    pub(super) evicted: CancellationToken,
}

impl Watch {
    pub(super) fn new() -> Watch {
        Watch {
            state: Mutex::new(State {
                phase: Phase::Header,
                since: Instant::now(),
                in_flight: 0,
                write_blocked: None,
            }),
            changed: Notify::new(),
            evicted: CancellationToken::new(),
        }
    }

    fn set(&self, phase: Phase) {
        let mut state = lock(&self.state);
        state.phase = phase;
        state.since = Instant::now();
        drop(state);
        self.changed.notify_one();
    }

    pub(super) fn phase(&self) -> Phase {
        lock(&self.state).phase
    }

    /// When the connection is waiting (a header or the next request), since when; `None` while a
    /// request is being served.
    pub(super) fn waiting_since(&self) -> Option<Instant> {
        let state = lock(&self.state);
        (state.phase != Phase::Busy).then_some(state.since)
    }

    /// When the connection has overstayed, as things are now: the header or idle timeout of the
    /// phase, or, while serving, a write the client has not read for the idle timeout. `None`:
    /// no deadline (a handler may take as long as its run).
    pub(super) fn deadline(&self, limits: &Limits) -> Option<Instant> {
        let state = lock(&self.state);
        match state.phase {
            Phase::Header => Some(state.since + limits.header_timeout),
            Phase::Idle => Some(state.since + limits.idle_timeout),
            Phase::Busy => state.write_blocked.map(|since| since + limits.idle_timeout),
        }
    }

    /// Resolves when the phase changes.
    pub(super) async fn changed(&self) {
        self.changed.notified().await;
    }

    /// Bytes came in: after an idle period they are the next request's header.
    fn received(&self) {
        let idle = lock(&self.state).phase == Phase::Idle;
        if idle {
            self.set(Phase::Header);
        }
    }

    /// A write waits for the client to read (or no longer does). The first wait gives a serving
    /// connection a deadline, so its task is told.
    fn write_blocked(&self, blocked: bool) {
        let mut state = lock(&self.state);
        match (blocked, state.write_blocked) {
            (true, None) => {
                state.write_blocked = Some(Instant::now());
                drop(state);
                self.changed.notify_one();
            }
            (false, Some(_)) => state.write_blocked = None,
            _ => {}
        }
    }

    /// A request's header has been read: the connection is serving it until the guard drops.
    pub(super) fn request(self: &std::sync::Arc<Self>) -> Serving {
        lock(&self.state).in_flight += 1;
        self.set(Phase::Busy);
        Serving(std::sync::Arc::clone(self))
    }
}

/// Held while a request is served (in its answer's body, which the server drops once written):
/// dropping the last one makes the connection idle.
#[derive(Debug)]
pub(super) struct Serving(std::sync::Arc<Watch>);

impl Drop for Serving {
    fn drop(&mut self) {
        let mut state = lock(&self.0.state);
        state.in_flight = state.in_flight.saturating_sub(1);
        let idle = state.in_flight == 0;
        drop(state);
        if idle {
            self.0.set(Phase::Idle);
        }
    }
}

/// A socket that tells its [`Watch`] when bytes come in and when writes wait for the client.
pub(super) struct Watched<S> {
    pub(super) socket: S,
    pub(super) watch: std::sync::Arc<Watch>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.socket).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.watch.received();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> Watched<S> {
    fn track<T>(&self, polled: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        self.watch.write_blocked(polled.is_pending());
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.socket).poll_write(cx, buf);
        self.track(polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.socket).poll_write_vectored(cx, bufs);
        self.track(polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.socket.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.socket).poll_flush(cx);
        self.track(polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.socket).poll_shutdown(cx)
    }
}

/// How long ago `since` was, for logs.
pub(super) fn age(since: Instant) -> Duration {
    Instant::now().saturating_duration_since(since)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn limits() -> Limits {
        Limits {
            header_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: 8,
        }
    }

    #[tokio::test]
    async fn a_connection_owes_a_header_then_serves_then_idles_until_its_next_byte() {
        let watch = Arc::new(Watch::new());
        assert_eq!(watch.phase(), Phase::Header);
        let header_due = watch.deadline(&limits()).expect("a header is due");
        let waiting = watch.waiting_since().expect("waiting");
        assert_eq!(header_due, waiting + limits().header_timeout);

        let serving = watch.request();
        assert_eq!(watch.phase(), Phase::Busy);
        assert_eq!(
            watch.deadline(&limits()),
            None,
            "a handler may take its time"
        );
        assert_eq!(watch.waiting_since(), None);

        tokio::time::sleep(Duration::from_millis(5)).await;
        drop(serving);
        assert_eq!(watch.phase(), Phase::Idle);
        let idle = watch.waiting_since().expect("waiting");
        assert!(idle > waiting);
        assert_eq!(
            watch.deadline(&limits()),
            Some(idle + limits().idle_timeout)
        );

        tokio::time::sleep(Duration::from_millis(5)).await;
        watch.received();
        assert_eq!(watch.phase(), Phase::Header);
        let next = watch.waiting_since().expect("waiting");
        assert!(next > idle);
        assert_eq!(
            watch.deadline(&limits()),
            Some(next + limits().header_timeout)
        );
        watch.received();
        assert_eq!(
            watch.waiting_since(),
            Some(next),
            "more of the header moves nothing"
        );
    }

    #[tokio::test]
    async fn an_answer_the_client_does_not_read_gets_the_idle_timeout() {
        let watch = Arc::new(Watch::new());
        let _serving = watch.request();
        watch.changed().await;
        let before = Instant::now();
        watch.write_blocked(true);
        tokio::time::timeout(Duration::from_secs(1), watch.changed())
            .await
            .expect("the task is told to re-arm its deadline");
        tokio::time::sleep(Duration::from_millis(5)).await;
        watch.write_blocked(true);
        let deadline = watch.deadline(&limits()).expect("a deadline");
        assert!(deadline >= before + limits().idle_timeout);
        assert!(
            deadline < Instant::now() + limits().idle_timeout,
            "from the first wait"
        );
        watch.write_blocked(false);
        assert_eq!(watch.deadline(&limits()), None);
    }
}
