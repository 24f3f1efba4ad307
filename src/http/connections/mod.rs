//! The connection layer: our own accept loop over hyper's HTTP/1 connections, so that no client can
//! hold the server hostage.
//!
//! - a request's header must arrive within the header timeout (from the connection's start, or
//!   from its first byte after an idle period), its body within the body timeout, and a kept-alive
//!   connection may wait the idle timeout for its next request; an answer the client does not read
//!   for the idle timeout ends the connection too. A handler itself has no timeout: a synchronous
//!   run takes what it takes.
//! - at most `max_connections` at once (fewer if the descriptor limit says so). When every place is
//!   taken, a new connection takes the place of the one that has waited longest without a request
//!   in progress (a slow header, an idle keep-alive); when every place is serving a request, it is
//!   told 503 `TOO_MANY_CONNECTIONS` and closed. Either way the listener is drained at once: the
//!   kernel's backlog never fills, so `/health` and a run get in under a slowloris flood.
//! - [`Server::stop_accepting`] closes the listener and every connection without a request in
//!   progress; a request in progress finishes (its answer closes the connection).
//!   [`Server::close_all`] ends the rest.

mod body;
mod connection;
mod refuse;
mod watch;

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::Request;
use axum::response::Response;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use body::BodyTimedOut;

use crate::config::HttpConfig;
use crate::sync::lock;
use connection::Orders;
use watch::Watch;

/// Refused connections being told so at once; beyond, a refused connection is closed unanswered.
const REFUSALS_IN_FLIGHT: usize = 64;

/// The connection layer's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

impl From<&HttpConfig> for Limits {
    fn from(config: &HttpConfig) -> Limits {
        Limits {
            header_timeout: Duration::from_secs(config.header_timeout_seconds),
            body_timeout: Duration::from_secs(config.body_timeout_seconds),
            idle_timeout: Duration::from_secs(config.idle_timeout_seconds),
            max_connections: config.max_connections,
        }
    }
}

/// A serving listener and its connections.
pub struct Server {
    orders: Orders,
    /// The accept loop and every connection's task.
    tasks: TaskTracker,
}

impl Server {
    /// Closes the listener, drops every connection without a request in progress, and lets the
    /// requests in progress finish (their connections close after the answer).
    pub fn stop_accepting(&self) {
        self.orders.stop.cancel();
        self.tasks.close();
    }

    /// Waits until every connection is closed, at most until `deadline`; whether they all are.
    pub async fn closed_by(&self, deadline: tokio::time::Instant) -> bool {
        tokio::time::timeout_at(deadline, self.tasks.wait())
            .await
            .is_ok()
    }

    /// Ends every connection now, requests in progress or not.
    pub fn close_all(&self) {
        self.stop_accepting();
        self.orders.close.cancel();
    }
}

/// Serves `app` on `listener` within `limits` until [`Server::stop_accepting`].
pub fn serve<S>(listener: TcpListener, app: S, limits: Limits) -> Server
where
    S: tower::Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
{
    let limits = Limits {
        max_connections: descriptor_cap(limits.max_connections),
        ..limits
    };
    tracing::info!(
        header_timeout = ?limits.header_timeout,
        body_timeout = ?limits.body_timeout,
        idle_timeout = ?limits.idle_timeout,
        max_connections = limits.max_connections,
        "connection limits"
    );
    let server = Server {
        orders: Orders {
            stop: CancellationToken::new(),
            close: CancellationToken::new(),
        },
        tasks: TaskTracker::new(),
    };
    let accepting = accept(
        listener,
        app,
        limits,
        server.orders.clone(),
        server.tasks.clone(),
    );
    server.tasks.spawn(accepting);
    server
}

async fn accept<S>(
    listener: TcpListener,
    app: S,
    limits: Limits,
    orders: Orders,
    tasks: TaskTracker,
) where
    S: tower::Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
{
    let places = Places::new(limits.max_connections);
    let refusals = Arc::new(Semaphore::new(REFUSALS_IN_FLIGHT));
    let mut warned: Option<tokio::time::Instant> = None;
    loop {
        let accepted = tokio::select! {
            biased;
            () = orders.stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (socket, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                if out_of_resources(&e) {
                    // Out of descriptors despite the cap: one waiting connection gives its own
                    // up, and the listener gets a moment.
                    places.evict_longest_waiting();
                    if warned.is_none_or(|at| at.elapsed() > Duration::from_secs(10)) {
                        tracing::warn!(error = %e, "cannot accept connections: out of resources");
                        warned = Some(tokio::time::Instant::now());
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                continue;
            }
        };
        match places.take() {
            Some(slot) => {
                tasks.spawn(connection::serve(
                    socket,
                    PeerAddr(peer),
                    slot,
                    app.clone(),
                    limits,
                    orders.clone(),
                ));
            }
            None => {
                if let Ok(permit) = Arc::clone(&refusals).try_acquire_owned() {
                    tasks.spawn(refuse::too_many_connections(socket, permit));
                }
            }
        }
    }
    tracing::debug!("no longer accepting connections");
}

/// The client's address, in every request's extensions (the per-address rate limit reads it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub std::net::SocketAddr);

/// Whether an accept error means the process (or system) is out of descriptors or memory.
fn out_of_resources(error: &std::io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// The open connections, up to the cap.
#[derive(Clone)]
struct Places(Arc<PlacesInner>);

struct PlacesInner {
    max: usize,
    open: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    next: u64,
    watches: HashMap<u64, Arc<Watch>>,
}

/// A connection's place; given back when dropped.
struct Slot {
    id: u64,
    places: Places,
    watch: Arc<Watch>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        lock(&self.places.0.open).watches.remove(&self.id);
    }
}

impl Places {
    fn new(max: usize) -> Places {
        Places(Arc::new(PlacesInner {
            max: max.max(1),
            open: Mutex::new(Open::default()),
        }))
    }

    /// A place for a new connection: a free one, or the place of the connection that has waited
    /// longest without a request in progress (evicted); `None` when every place is serving.
    fn take(&self) -> Option<Slot> {
        let mut open = lock(&self.0.open);
        if open.watches.len() >= self.0.max && !evict(&mut open) {
            return None;
        }
        let id = open.next;
        open.next += 1;
        let watch = Arc::new(Watch::new());
        open.watches.insert(id, Arc::clone(&watch));
        Some(Slot {
            id,
            places: self.clone(),
            watch,
        })
    }

    fn evict_longest_waiting(&self) {
        evict(&mut lock(&self.0.open));
    }
}

/// Evicts the connection that has waited longest without a request in progress; whether there
/// was one. Its place is free at once; its task closes its socket as soon as it runs.
fn evict(open: &mut Open) -> bool {
    let longest = open
        .watches
        .iter()
        .filter_map(|(id, watch)| watch.waiting_since().map(|since| (since, *id)))
        .min();
    let Some((_, id)) = longest else {
        return false;
    };
    if let Some(watch) = open.watches.remove(&id) {
        watch.evicted.cancel();
    }
    true
}

/// The cap the descriptor limit allows: a quarter of the descriptors (at least 64, at most 1024)
/// stay free for the audit log, workflow files, command steps' pipes and outgoing requests.
fn descriptor_cap(configured: usize) -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0
        || limit.rlim_cur == libc::RLIM_INFINITY
    {
        return configured;
    }
    let descriptors = usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX);
    let allowed = descriptors
        .saturating_sub((descriptors / 4).clamp(64, 1024))
        .max(1);
    if allowed < configured {
        tracing::warn!(
            configured,
            allowed,
            descriptors,
            "HTTP_MAX_CONNECTIONS lowered to what the descriptor limit (ulimit -n) allows"
        );
        return allowed;
    }
    configured
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_house_makes_room_by_evicting_the_longest_waiting_connection_never_a_busy_one() {
        let places = Places::new(3);
        let first = places.take().expect("a free place");
        tokio::time::sleep(Duration::from_millis(5)).await;
        let second = places.take().expect("a free place");
        let third = places.take().expect("a free place");
        let _serving = first.watch.request();

        // The first is serving: the second, waiting longest, makes room.
        let fourth = places.take().expect("room made");
        assert!(!first.watch.evicted.is_cancelled());
        assert!(second.watch.evicted.is_cancelled());
        assert!(!third.watch.evicted.is_cancelled());

        // Every place serving: no room.
        let _third_serving = third.watch.request();
        let _fourth_serving = fourth.watch.request();
        assert!(places.take().is_none());

        // A place given back is free again.
        drop(fourth);
        assert!(places.take().is_some());
    }

    #[test]
    fn the_cap_leaves_descriptors_for_the_rest_of_the_server() {
        let cap = descriptor_cap(usize::MAX);
        assert!(cap >= 1);
        assert_eq!(descriptor_cap(1), 1);
    }
}
