//! The bodies the server wraps: [`DeadlineBody`] bounds the time a client may take to send
//! its request body; [`ServedBody`] marks a request's end for the idle watch and ends an
//! open stream with an SSE error event when the shutdown deadline passes.

use std::cell::Cell;
use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http_body::{Frame, SizeHint};
use pin_project_lite::pin_project;
use portcullis_core::error::{ErrorBody, HttpError};
use portcullis_core::{Body, BoxError};
use tokio::sync::watch;
use tokio::time::{Instant, Sleep};

use super::Conn;

/// The client did not send its whole request body in time (`server.body_read_timeout_ms`):
/// 408 with `type: "timeout_error"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BodyReadTimeout {
    /// The time allowed.
    pub after: Duration,
}

impl fmt::Display for BodyReadTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the request body was not received within {} ms",
            self.after.as_millis()
        )
    }
}

impl StdError for BodyReadTimeout {}

impl From<&BodyReadTimeout> for HttpError {
    fn from(e: &BodyReadTimeout) -> Self {
        HttpError::new(
            StatusCode::REQUEST_TIMEOUT,
            ErrorBody::new("timeout_error", e.to_string()).code("body_read_timeout"),
        )
    }
}

tokio::task_local! {
    /// Set by a [`DeadlineBody`] whose deadline passed, for the request's own future: the
    /// edge answers any body error as a 400, and the server turns this one into its 408.
    pub(crate) static BODY_TIMED_OUT: Cell<Option<BodyReadTimeout>>;
}

pin_project! {
    /// A request body that fails with [`BodyReadTimeout`] once its deadline passes. The timer
    /// is only made when the body first has to wait: a body that came with its head costs
    /// none.
    pub(crate) struct DeadlineBody<B> {
        #[pin]
        inner: B,
        deadline: Instant,
        after: Duration,
        sleep: Option<Pin<Box<Sleep>>>,
    }
}

impl<B> DeadlineBody<B> {
    pub(crate) fn new(inner: B, after: Duration) -> Self {
        Self {
            inner,
            deadline: Instant::now() + after,
            after,
            sleep: None,
        }
    }
}

impl<B> http_body::Body for DeadlineBody<B>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        if let Poll::Ready(frame) = this.inner.poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let deadline = *this.deadline;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        let err = BodyReadTimeout { after: *this.after };
        let _ = BODY_TIMED_OUT.try_with(|cell| cell.set(Some(err)));
        Poll::Ready(Some(Err(err.into())))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A stream's shutdown deadline: passed when the shutdown's grace is over (or the server is
/// gone).
///
/// Its future registers with the shutdown watch the first time the stream waits. A stream
/// waits between every two of the upstream's chunks, and polling the future again each time
/// only registered the same waker again (the watch's lock and its waiter list, a tenth of a
/// streamed request's instructions); it is polled again only when the watch has news or the
/// stream is polled with another waker.
pub(crate) struct Deadline {
    /// Outside tokio's task budget: a poll the budget turned away would return `Pending`
    /// without registering, and the deadline, taking it for registered, would never hear
    /// of the shutdown.
    passed: Pin<Box<dyn Future<Output = ()> + Send>>,
    news: watch::Receiver<bool>,
    /// The waker the future was last polled with, once it has been.
    waker: Option<Waker>,
}

impl Deadline {
    pub(crate) fn new(drain: &watch::Receiver<bool>) -> Self {
        let mut watch = drain.clone();
        Self {
            passed: Box::pin(tokio::task::unconstrained(async move {
                let _ = watch.wait_for(|passed| *passed).await;
            })),
            news: drain.clone(),
            waker: None,
        }
    }

    /// Ready once the deadline has passed; else registered to wake `cx`'s task when it does.
    fn poll_passed(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let quiet = !self.news.has_changed().unwrap_or(true);
        if quiet && self.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            return Poll::Pending;
        }
        // Marked seen before the look, so that a send after it is news next time.
        self.news.mark_unchanged();
        let poll = self.passed.as_mut().poll(cx);
        if poll.is_pending() {
            match &mut self.waker {
                Some(waker) => waker.clone_from(cx.waker()),
                None => self.waker = Some(cx.waker().clone()),
            }
        }
        poll
    }
}

/// Marks the end of a request on its connection when dropped.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<Conn>);

impl InFlight {
    pub(crate) fn start(conn: Arc<Conn>) -> Self {
        conn.activity().start();
        Self(conn)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.activity().end();
    }
}

/// A response body as served: the stack's body, the request's place on its connection, and
/// for a stream the shutdown deadline.
pub(crate) struct ServedBody {
    inner: Body,
    state: Drain,
    _in_flight: InFlight,
}

enum Drain {
    /// Not a stream: it ends on its own, or the connection is closed under it.
    None,
    /// A stream, ended with an error event when the deadline passes.
    Watching(Deadline),
    /// The error event went out; nothing follows.
    Ended,
}

impl ServedBody {
    pub(crate) fn new(inner: Body, in_flight: InFlight, deadline: Option<Deadline>) -> Self {
        Self {
            inner,
            state: deadline.map_or(Drain::None, Drain::Watching),
            _in_flight: in_flight,
        }
    }
}

impl fmt::Debug for ServedBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServedBody")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

/// The event that ends a stream the shutdown deadline cut short, in the shape the observer
/// gives a broken upstream stream.
fn shutdown_event() -> Bytes {
    ErrorBody::new(
        "server_error",
        "the gateway shut down before the stream was complete",
    )
    .code("server_shutting_down")
    .to_sse_event()
}

impl http_body::Body for ServedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let deadline = match &mut this.state {
            Drain::None => return Pin::new(&mut this.inner).poll_frame(cx),
            Drain::Ended => return Poll::Ready(None),
            Drain::Watching(deadline) => deadline,
        };
        // The stream's own frames first; the deadline is looked at when the stream waits (a
        // poll of the shutdown watch before every frame was a twentieth of a streamed
        // request's work). A stream waits between the upstream's chunks: the upstream
        // connection hands them over one at a time.
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        if deadline.poll_passed(cx).is_pending() {
            return Poll::Pending;
        }
        // The stack's body is dropped now: the upstream call ends with it.
        this.inner = Body::empty();
        this.state = Drain::Ended;
        Poll::Ready(Some(Ok(Frame::data(shutdown_event()))))
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.state, Drain::Ended) || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        match self.state {
            Drain::None => self.inner.size_hint(),
            // An error event may follow: no length can be promised.
            Drain::Watching(_) => SizeHint::new(),
            Drain::Ended => SizeHint::with_exact(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::server::inline_wake::tests::counting;

    #[test]
    fn a_deadline_wakes_the_waker_it_was_last_polled_with() {
        let (drain, draining) = watch::channel(false);
        let mut deadline = Deadline::new(&draining);
        let (first, first_waker) = counting();
        let mut cx = Context::from_waker(&first_waker);
        for _ in 0..3 {
            assert!(deadline.poll_passed(&mut cx).is_pending());
        }
        // Polled from another task: registered with that task's waker instead.
        let (second, second_waker) = counting();
        let mut cx = Context::from_waker(&second_waker);
        assert!(deadline.poll_passed(&mut cx).is_pending());
        // News that is not the deadline: looked at, and waited on again.
        drain.send_replace(false);
        assert!(deadline.poll_passed(&mut cx).is_pending());
        assert!(!deadline.news.has_changed().unwrap(), "quiet again");
        assert!(deadline.poll_passed(&mut cx).is_pending());
        drain.send_replace(true);
        assert_eq!(second.0.load(Ordering::SeqCst), 2, "woken by both sends");
        assert_eq!(
            first.0.load(Ordering::SeqCst),
            0,
            "the replaced waker is not woken"
        );
        assert!(deadline.poll_passed(&mut cx).is_ready());
    }

    /// A task that has spent its budget (many reads and writes in one turn) still registers:
    /// a poll the budget turned away would leave the deadline deaf to the shutdown.
    #[tokio::test]
    async fn a_deadline_first_polled_on_a_spent_budget_still_hears_the_shutdown() {
        let (drain, draining) = watch::channel(false);
        let mut deadline = Deadline::new(&draining);
        let (woken, waker) = counting();
        let mut cx = Context::from_waker(&waker);
        // Spend the task's budget (128 units in tokio 1.x), then poll in the same turn.
        for _ in 0..1_000 {
            let mut unit = std::pin::pin!(tokio::task::consume_budget());
            if unit
                .as_mut()
                .poll(&mut Context::from_waker(std::task::Waker::noop()))
                .is_pending()
            {
                break;
            }
        }
        assert!(deadline.poll_passed(&mut cx).is_pending());
        assert!(deadline.poll_passed(&mut cx).is_pending());
        drain.send_replace(true);
        assert_eq!(
            woken.0.load(Ordering::SeqCst),
            1,
            "the shutdown wakes the stream"
        );
        assert!(deadline.poll_passed(&mut cx).is_ready());
    }

    #[test]
    fn a_deadline_passes_when_the_server_is_gone() {
        let (drain, draining) = watch::channel(false);
        let mut deadline = Deadline::new(&draining);
        let (woken, waker) = counting();
        let mut cx = Context::from_waker(&waker);
        assert!(deadline.poll_passed(&mut cx).is_pending());
        drop(drain);
        assert_eq!(woken.0.load(Ordering::SeqCst), 1);
        assert!(deadline.poll_passed(&mut cx).is_ready());
    }

    #[test]
    fn a_deadline_already_passed_is_ready_at_once() {
        let (_drain, draining) = watch::channel(true);
        let (_, waker) = counting();
        assert!(
            Deadline::new(&draining)
                .poll_passed(&mut Context::from_waker(&waker))
                .is_ready()
        );
    }
}
