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
    /// The response future of [`ConditionalRouter`](crate::ConditionalRouter): drives the
    /// chosen target ready, calls it, and prepends the target's index to the response's
    /// [`ResponseFacts::target`]; or answers 400 at once when no target was chosen.
    pub struct ResponseFuture<S, Req, F> {
        #[pin]
        state: State<S, Req, F>,
        index: u16,
    }
}

pin_project! {
    #[project = StateProj]
    #[project_replace = StateOwned]
    enum State<S, Req, F> {
        /// Driving the chosen target's clone ready; the request waits beside it.
        Readying {
            target: S,
            request: Req,
        },
        /// The target's own future.
        Calling {
            #[pin]
            future: F,
        },
        /// No target was chosen: the answer is already here.
        Answered {
            response: Response<Body>,
        },
        /// The answer was given (and, for a moment, while a state's contents move out).
        Done,
    }
}

impl<S, Req, F> ResponseFuture<S, Req, F> {
    pub(crate) fn readying(target: S, request: Req, index: u16) -> Self {
        Self {
            state: State::Readying { target, request },
            index,
        }
    }

    pub(crate) fn answered(response: Response<Body>) -> Self {
        Self {
            state: State::Answered { response },
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
            State::Done => "done",
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
            match this.state.as_mut().project() {
                StateProj::Readying { target, .. } => {
                    ready!(target.poll_ready(cx)).map_err(Into::into)?;
                    // Ready: move the target and the request out to make the call. The state
                    // is `Readying`, so the pattern always matches.
                    if let StateOwned::Readying {
                        mut target,
                        request,
                    } = this.state.as_mut().project_replace(State::Done)
                    {
                        let future = target.call(request);
                        this.state.set(State::Calling { future });
                    }
                }
                StateProj::Calling { future } => {
                    let mut response = ready!(future.poll(cx)).map_err(Into::into)?;
                    TargetPath::answered(&mut response, usize::from(*this.index));
                    this.state.set(State::Done);
                    return Poll::Ready(Ok(response));
                }
                StateProj::Answered { .. } => {
                    if let StateOwned::Answered { response } =
                        this.state.as_mut().project_replace(State::Done)
                    {
                        return Poll::Ready(Ok(response));
                    }
                }
                StateProj::Done => panic!("route::ResponseFuture polled after completion"),
            }
        }
    }
}
