//! One connection's task: hyper's HTTP/1 connection, raced against its deadline (header, idle, an
//! unread answer), eviction, and the server's stop and close.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::Request;
use axum::response::Response;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::body::{Answer, DeadlineBody};
use super::watch::{age, Phase, Watched};
use super::{Limits, Slot};

/// What the server asks of every connection.
#[derive(Clone)]
pub(super) struct Orders {
    /// Stop: finish the request in progress (its answer says `connection: close`), drop the rest.
    pub(super) stop: CancellationToken,
    /// Close now, whatever is in progress.
    pub(super) close: CancellationToken,
}

/// Serves HTTP/1 requests on `socket` with `app` until the client leaves, a timeout passes, the
/// connection is evicted, or the server closes it.
pub(super) async fn serve<S>(
    socket: TcpStream,
    peer: super::PeerAddr,
    slot: Slot,
    app: S,
    limits: Limits,
    orders: Orders,
) where
    S: tower::Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
{
    let watch = Arc::clone(&slot.watch);
    let service = {
        let watch = Arc::clone(&watch);
        hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let serving = watch.request();
            let mut request = request
                .map(|body| axum::body::Body::new(DeadlineBody::new(body, limits.body_timeout)));
            request.extensions_mut().insert(peer);
            let app = app.clone();
            async move {
                let Ok(response) = app.oneshot(request).await;
                Ok::<_, Infallible>(
                    response.map(|body| axum::body::Body::new(Answer::new(body, serving))),
                )
            }
        })
    };
    let io = TokioIo::new(Watched {
        socket,
        watch: Arc::clone(&watch),
    });
    let connection = hyper::server::conn::http1::Builder::new()
        // Our own header timeout (see `Watch::deadline`): hyper's also runs between requests.
        .header_read_timeout(None)
        .keep_alive(true)
        .serve_connection(io, service);
    tokio::pin!(connection);
    let mut stopping = false;
    loop {
        let deadline = watch.deadline(&limits);
        let overdue = async {
            match deadline {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            served = connection.as_mut() => {
                if let Err(e) = served {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                break;
            }
            () = overdue => {
                if watch.deadline(&limits).is_some_and(|d| d <= tokio::time::Instant::now()) {
                    tracing::debug!(phase = ?watch.phase(), "connection closed: timeout");
                    break;
                }
            }
            () = watch.changed() => {}
            () = watch.evicted.cancelled() => {
                tracing::debug!(
                    waited = ?watch.waiting_since().map(age),
                    "connection closed to make room for a new one"
                );
                break;
            }
            () = orders.close.cancelled() => break,
            () = orders.stop.cancelled(), if !stopping => {
                stopping = true;
                // Half a header is not a request to finish; an idle or busy connection closes
                // once its answer is out.
                if watch.phase() == Phase::Header {
                    break;
                }
                connection.as_mut().graceful_shutdown();
            }
        }
    }
    drop(slot);
}
