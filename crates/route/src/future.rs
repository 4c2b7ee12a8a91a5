//! [`ResponseFuture`]: readies the chosen target, calls it, records the choice.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::{Request, Response};
use pin_project_lite::pin_project;
use portcullis_core::context::TargetPath;
use portcullis_core::{Body, BoxError};
use tower_service::Service;

pin_project! {
    /// The response future of [`Router`](crate::Router): drives the chosen target ready,
    /// calls it, and prepends the target's index to the response's
    /// [`ResponseFacts::target`]; or answers 400 at once when no target was chosen.
    pub struct ResponseFuture<S, Req, F> {
        #[pin]
        state: State<S, Req, F>,
        index: u16,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, Req, F> {
        Readying {
            target: S,
            request: Option<Req>,
        },
        Calling {
            #[pin]
            future: F,
        },
        Answered {
            response: Option<Response<Body>>,
        },
    }
}

impl<S, Req, F> ResponseFuture<S, Req, F> {
    pub(crate) fn readying(target: S, request: Req, index: u16) -> Self {
        Self {
            state: State::Readying {
                target,
                request: Some(request),
            },
            index,
        }
    }

    pub(crate) fn answered(response: Response<Body>) -> Self {
        Self {
            state: State::Answered {
                response: Some(response),
            },
            index: 0,
        }
    }
}

impl<S, Req, F> fmt::Debug for ResponseFuture<S, Req, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Readying { .. } => "readying",
            State::Calling { .. } => "calling",
            State::Answered { .. } => "answered",
        };
        f.debug_struct("route::ResponseFuture")
            .field("state", &state)
            .field("target", &self.index)
            .finish()
    }
}

impl<S, B> Future for ResponseFuture<S, Request<B>, S::Future>
where
    S: Service<Request<B>, Response = Response<Body>>,
    S::Error: Into<BoxError>,
{
    type Output = Result<Response<Body>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let future = match this.state.as_mut().project() {
                StateProj::Readying { target, request } => {
                    ready!(target.poll_ready(cx)).map_err(Into::into)?;
                    target.call(request.take().expect("called once"))
                }
                StateProj::Calling { future } => {
                    let mut response = ready!(future.poll(cx)).map_err(Into::into)?;
                    TargetPath::answered(&mut response, usize::from(*this.index));
                    return Poll::Ready(Ok(response));
                }
                StateProj::Answered { response } => {
                    return Poll::Ready(Ok(response.take().expect("polled after completion")));
                }
            };
            this.state.set(State::Calling { future });
        }
    }
}
