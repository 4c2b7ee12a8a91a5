//! [`ResponseFuture`]: the inner call inside the request's span, then its measures.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::{Response, StatusCode};
use pin_project_lite::pin_project;
use portcullis_core::{Body, BoxError};

use crate::telemetry::Pending;

pin_project! {
    /// The response future of [`Tag`](crate::Tag): polls the inner future inside the request's
    /// span, then records the response (or the error) and hands it on; or answers the 400 of
    /// invalid metadata.
    ///
    /// `E` is the inner error; its conversion to [`BoxError`] is fixed when the future is
    /// made, so the `Future` impl carries no `Into` bound (rust-lang/rust#102211).
    ///
    /// Dropped before it has answered (the client went away, an outer timeout fired), it
    /// records the request as status 499 with `error.type` `cancelled`.
    pub struct ResponseFuture<F, E> {
        #[pin]
        state: State<F>,
        pending: Option<Pending>,
        into_box: fn(E) -> BoxError,
    }

    impl<F, E> PinnedDrop for ResponseFuture<F, E> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(pending) = this.project().pending.take() {
                pending.cancelled();
            }
        }
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Called {
            #[pin]
            future: F,
        },
        Refused {
            response: Option<Response<Body>>,
        },
    }
}

impl<F, E> ResponseFuture<F, E> {
    pub(crate) fn called(future: F, pending: Pending, into_box: fn(E) -> BoxError) -> Self {
        Self {
            state: State::Called { future },
            pending: Some(pending),
            into_box,
        }
    }

    pub(crate) fn refused(response: Response<Body>, pending: Pending) -> Self
    where
        E: Into<BoxError>,
    {
        Self {
            state: State::Refused {
                response: Some(response),
            },
            pending: Some(pending),
            into_box: Into::into,
        }
    }
}

impl<F, E> fmt::Debug for ResponseFuture<F, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Called { .. } => "called",
            State::Refused { .. } => "refused",
        };
        f.debug_struct("tag::ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl<F, E> Future for ResponseFuture<F, E>
where
    F: Future<Output = Result<Response<Body>, E>>,
{
    type Output = Result<Response<Body>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match this.state.project() {
            StateProj::Called { future } => {
                let result = {
                    let pending = this.pending.as_ref().expect("polled after completion");
                    let _entered = pending.span().enter();
                    ready!(future.poll(cx))
                };
                let pending = this.pending.take().expect("polled after completion");
                Poll::Ready(match result {
                    Ok(response) => Ok(pending.respond(response)),
                    Err(err) => {
                        let err = (this.into_box)(err);
                        pending.fail(&err);
                        Err(err)
                    }
                })
            }
            StateProj::Refused { response } => {
                let response = response.take().expect("polled after completion");
                if let Some(pending) = this.pending.take() {
                    pending.error(StatusCode::BAD_REQUEST, "invalid_request_error");
                }
                Poll::Ready(Ok(response))
            }
        }
    }
}
