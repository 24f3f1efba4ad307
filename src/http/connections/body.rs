//! The bodies a connection hands to the application and takes back: a request body that must
//! arrive whole by a deadline, and an answer body that marks the request served once written.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use super::watch::Serving;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request body did not arrive whole within the body timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the request body did not arrive within {} s", .0.as_secs())]
pub struct BodyTimedOut(pub Duration);

impl BodyTimedOut {
    /// The timeout among the causes of `error`, if that is what it is.
    pub fn in_chain<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a BodyTimedOut> {
        let mut cause = Some(error);
        while let Some(error) = cause {
            if let Some(timed_out) = error.downcast_ref::<BodyTimedOut>() {
                return Some(timed_out);
            }
            cause = error.source();
        }
        None
    }
}

/// A request body with a deadline for the whole of it (not between its pieces: a client that
/// trickles a byte at a time is cut off like one that stops).
pub(super) struct DeadlineBody<B> {
    inner: B,
    deadline: Pin<Box<Sleep>>,
    timeout: Duration,
}

impl<B> DeadlineBody<B> {
    /// `inner`, due whole `timeout` from now.
    pub(super) fn new(inner: B, timeout: Duration) -> DeadlineBody<B> {
        DeadlineBody {
            inner,
            deadline: Box::pin(tokio::time::sleep_until(Instant::now() + timeout)),
            timeout,
        }
    }
}

impl<B> Body for DeadlineBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|frame| frame.map_err(Into::into)));
        }
        if this.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(Box::new(BodyTimedOut(this.timeout)))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// An answer's body; while the server holds it, the connection counts as serving.
pub(super) struct Answer {
    inner: axum::body::Body,
    _serving: Serving,
}

impl Answer {
    pub(super) fn new(inner: axum::body::Body, serving: Serving) -> Answer {
        Answer {
            inner,
            _serving: serving,
        }
    }
}

impl Body for Answer {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body that yields one frame per `gap` of (paused) time, for ever.
    struct Trickle {
        next: Pin<Box<Sleep>>,
        gap: Duration,
    }

    impl Body for Trickle {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            let this = &mut *self;
            std::task::ready!(this.next.as_mut().poll(cx));
            let gap = this.gap;
            this.next.as_mut().reset(Instant::now() + gap);
            Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"x")))))
        }
    }

    #[tokio::test]
    async fn a_trickled_body_fails_at_the_deadline_for_the_whole_of_it() {
        let gap = Duration::from_millis(20);
        let trickle = Trickle {
            next: Box::pin(tokio::time::sleep(gap)),
            gap,
        };
        let started = Instant::now();
        let body = DeadlineBody::new(trickle, Duration::from_millis(300));
        let error = collect(body).await.expect_err("times out");
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(
            BodyTimedOut::in_chain(error.as_ref()),
            Some(&BodyTimedOut(Duration::from_millis(300)))
        );
    }

    #[tokio::test]
    async fn a_body_that_arrives_in_time_is_read_whole() {
        let body = DeadlineBody::new(axum::body::Body::from("{\"a\": 1}"), Duration::from_secs(1));
        let bytes = collect(body).await.expect("in time");
        assert_eq!(bytes, b"{\"a\": 1}");
    }

    /// Reads a body to its end.
    async fn collect<B>(body: B) -> Result<Vec<u8>, BoxError>
    where
        B: Body<Data = Bytes, Error = BoxError> + Send + 'static,
    {
        let bytes = axum::body::to_bytes(axum::body::Body::new(body), usize::MAX)
            .await
            .map_err(|e| -> BoxError { Box::new(e) })?;
        Ok(bytes.to_vec())
    }
}
