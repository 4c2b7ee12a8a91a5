//! [`ResponseFuture`]: the inner call and the after phase; or the guard's own answer.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Response;
use pin_project_lite::pin_project;
use portcullis_core::{Body, BoxError};

use crate::service::{AfterCtx, Finish, finish};

/// A boxed answer: used where the guard awaits I/O first (a webhook, reading a JSON body).
pub(crate) type BoxResponse =
    Pin<Box<dyn Future<Output = Result<Response<Body>, BoxError>> + Send>>;

pin_project! {
    /// The response future of [`Guard`](crate::Guard).
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        /// The inner call; then the after phase, when there is one.
        Calling {
            #[pin]
            future: F,
            after: Option<AfterCtx>,
        },
        /// Hooks or a body read in progress (and the call, when before hooks do I/O).
        Boxed {
            future: BoxResponse,
        },
        /// A refusal, already here.
        Answered {
            response: Option<Response<Body>>,
        },
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn calling(future: F, after: Option<AfterCtx>) -> Self {
        Self {
            state: State::Calling { future, after },
        }
    }

    pub(crate) fn answered(response: Response<Body>) -> Self {
        Self {
            state: State::Answered {
                response: Some(response),
            },
        }
    }

    pub(crate) fn boxed(future: BoxResponse) -> Self {
        Self {
            state: State::Boxed { future },
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Calling { .. } => "calling",
            State::Boxed { .. } => "hooks",
            State::Answered { .. } => "answered",
        };
        f.debug_struct("guard::ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl<F, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<Body>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response<Body>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Calling { future, after } => {
                    let response = ready!(future.poll(cx)).map_err(Into::into)?;
                    let Some(ctx) = after.take() else {
                        return Poll::Ready(Ok(response));
                    };
                    match finish(response, ctx) {
                        Finish::Now(response) => return Poll::Ready(Ok(response)),
                        Finish::Later(future) => this.state.set(State::Boxed { future }),
                    }
                }
                StateProj::Boxed { future } => return future.as_mut().poll(cx),
                StateProj::Answered { response } => {
                    return Poll::Ready(Ok(response
                        .take()
                        .expect("guard::ResponseFuture polled after completion")));
                }
            }
        }
    }
}
