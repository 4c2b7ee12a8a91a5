//! One attempt: the inner call, bounded by the attempt timeout and, for a stream, held until
//! its first event so that a stream that broke before it can still be retried.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use pin_project_lite::pin_project;
use portcullis_core::error::RequestTimeout;
use portcullis_core::observe::{self, Started};
use portcullis_core::{Body, BoxError, BufferedBody, RequestView};
use tokio::time::Sleep;
use tower_service::Service;

use crate::policy::NotStarted;

/// The inner service as each attempt sees it (the service [`tower::retry::Retry`] drives).
#[derive(Clone, Debug)]
pub(crate) struct AttemptService<S> {
    inner: S,
    timeout: Option<Duration>,
    /// Whether to hold streams until their first event: only worth it when retries are on.
    gate_streams: bool,
}

impl<S> AttemptService<S> {
    pub(crate) fn new(inner: S, timeout: Option<Duration>, gate_streams: bool) -> Self {
        Self {
            inner,
            timeout,
            gate_streams,
        }
    }

    pub(crate) fn get_ref(&self) -> &S {
        &self.inner
    }

    pub(crate) fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    pub(crate) fn into_inner(self) -> S {
        self.inner
    }
}

impl<S> Service<Request<BufferedBody>> for AttemptService<S>
where
    S: Service<Request<BufferedBody>, Response = Response<Body>>,
    S::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = AttemptFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<BufferedBody>) -> Self::Future {
        let stream = self.gate_streams
            && req
                .extensions()
                .get::<Arc<RequestView>>()
                .is_some_and(|view| view.stream());
        let deadline = self.timeout.map(tokio::time::sleep);
        AttemptFuture {
            state: State::Calling {
                future: self.inner.call(req),
            },
            deadline,
            timeout: self.timeout.unwrap_or_default(),
            stream,
        }
    }
}

pin_project! {
    /// The future of one attempt.
    pub(crate) struct AttemptFuture<F> {
        #[pin]
        state: State<F>,
        #[pin]
        deadline: Option<Sleep>,
        timeout: Duration,
        stream: bool,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Calling {
            #[pin]
            future: F,
        },
        Starting {
            started: Started,
        },
    }
}

impl<F, E> Future for AttemptFuture<F>
where
    F: Future<Output = Result<Response<Body>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response<Body>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Calling { future } => match future.poll(cx) {
                    Poll::Ready(Ok(response)) => {
                        if !(*this.stream && response.status().is_success()) {
                            return Poll::Ready(Ok(response));
                        }
                        this.state.set(State::Starting {
                            started: observe::started(response),
                        });
                        continue;
                    }
                    Poll::Ready(Err(err)) => return Poll::Ready(Err(err.into())),
                    Poll::Pending => {}
                },
                StateProj::Starting { started } => match Pin::new(started).poll(cx) {
                    Poll::Ready(Ok(response)) => return Poll::Ready(Ok(response)),
                    Poll::Ready(Err(not_started)) => {
                        let mut response = not_started.response;
                        response.extensions_mut().insert(NotStarted);
                        return Poll::Ready(Ok(response));
                    }
                    Poll::Pending => {}
                },
            }
            // The answer is not there yet: has the attempt run out of time?
            if let Some(deadline) = this.deadline.as_mut().as_pin_mut()
                && deadline.poll(cx).is_ready()
            {
                return Poll::Ready(Err(RequestTimeout {
                    after: *this.timeout,
                }
                .into()));
            }
            return Poll::Pending;
        }
    }
}
