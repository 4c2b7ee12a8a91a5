//! The bodies the server wraps: [`DeadlineBody`] bounds the time a client may take to send
//! its request body; [`ServedBody`] marks a request's end for the idle watch and ends an
//! open stream with an SSE error event when the shutdown deadline passes.

use std::cell::Cell;
use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http_body::{Frame, SizeHint};
use pin_project_lite::pin_project;
use portcullis_core::error::{ErrorBody, HttpError};
use portcullis_core::{Body, BoxError};
use tokio::time::{Instant, Sleep};

use super::Conn;
use super::signal::Signal;

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
    Watching(Signal),
    /// The error event went out; nothing follows.
    Ended,
}

impl ServedBody {
    pub(crate) fn new(inner: Body, in_flight: InFlight, deadline: Option<Signal>) -> Self {
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
        if deadline.poll_fired(cx).is_pending() {
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
