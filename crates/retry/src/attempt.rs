//! One attempt: the inner call, bounded by the attempt timeout and, for a stream in the core
//! [`Body`], held until its first event so that a stream that broke before it can still be
//! retried.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use pin_project_lite::pin_project;
use portcullis_core::error::RequestTimeout;
use portcullis_core::observe::{self, Started};
use portcullis_core::{Body, BoxError, RequestView};
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

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for AttemptService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Error: Into<BoxError>,
    ResBody: 'static,
{
    type Response = Response<ResBody>;
    type Error = BoxError;
    type Future = AttemptFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let stream = self.gate_streams
            && is_core_body::<ResBody>()
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

/// Whether responses carry the core [`Body`], the only body whose first event can be awaited.
fn is_core_body<B: 'static>() -> bool {
    std::any::TypeId::of::<B>() == std::any::TypeId::of::<Body>()
}

/// `value` as a `T` when it is one. Waiting for a stream's first event needs the core
/// [`Body`] (whose observer reports how a stream failed); every other body passes through as
/// its own type. A type check in place of a trait every user body would have to implement;
/// nothing is boxed.
fn same_type<T: 'static, U: 'static>(value: U) -> Result<T, U> {
    let mut slot = Some(value);
    match (&mut slot as &mut dyn Any).downcast_mut::<Option<T>>() {
        Some(same) => Ok(same.take().expect("just filled")),
        None => Err(slot.expect("just filled")),
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
        // A stream request whose responses are core bodies: a 2xx is held until its first
        // event.
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

impl<F, E, ResBody> Future for AttemptFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
    E: Into<BoxError>,
    ResBody: 'static,
{
    type Output = Result<Response<ResBody>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Calling { future } => match future.poll(cx) {
                    Poll::Ready(Ok(response)) => {
                        if !(*this.stream && response.status().is_success()) {
                            return Poll::Ready(Ok(response));
                        }
                        // `stream` is only set for core bodies, so this always holds.
                        match same_type::<Response<Body>, _>(response) {
                            Ok(response) => this.state.set(State::Starting {
                                started: observe::started(response),
                            }),
                            Err(response) => return Poll::Ready(Ok(response)),
                        }
                        continue;
                    }
                    Poll::Ready(Err(err)) => return Poll::Ready(Err(err.into())),
                    Poll::Pending => {}
                },
                StateProj::Starting { started } => match Pin::new(started).poll(cx) {
                    Poll::Ready(result) => {
                        let response = result.unwrap_or_else(|not_started| {
                            let mut response = not_started.response;
                            response.extensions_mut().insert(NotStarted);
                            response
                        });
                        return Poll::Ready(Ok(same_type(response)
                            .unwrap_or_else(|_| unreachable!("held only for core bodies"))));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_type_moves_only_a_value_of_that_type() {
        assert_eq!(
            same_type::<String, _>(String::from("a")),
            Ok(String::from("a"))
        );
        assert_eq!(same_type::<String, _>(7u8), Err(7u8));
        assert!(is_core_body::<Body>());
        assert!(!is_core_body::<String>());
    }
}
