use crate::upstream::{classify, strip_hop_by_hop};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::Response;
use hyper::body::Incoming;
use pin_project_lite::pin_project;
use portcullis_core::error::{TimeoutPhase, UpstreamTimeout};
use portcullis_core::facts::ResponseFacts;
use portcullis_core::observe::{self, observe_response_with};
use portcullis_core::{Body, BoxError};
use tokio::time::Sleep;

use super::idle::IdleTimeout;

type ClientFuture = hyper_util::client::legacy::ResponseFuture;

/// What a call needs once the response arrives.
pub(super) struct Call {
    pub(super) name: Arc<str>,
    pub(super) strip_usage: bool,
    pub(super) connect_timeout: Duration,
    /// `None`: no timer (an outer deadline comes first).
    pub(super) response_timeout: Option<Duration>,
    pub(super) idle_timeout: Option<Duration>,
}

pin_project! {
    /// The response future of [`OpenAi`](super::OpenAi).
    pub struct ResponseFuture {
        #[pin]
        state: State,
    }
}

pin_project! {
    #[project = StateProj]
    enum State {
        Calling {
            #[pin]
            future: ClientFuture,
            #[pin]
            deadline: Sleep,
            call: Option<Call>,
        },
        Answered {
            response: Option<Response<Body>>,
        },
    }
}

impl ResponseFuture {
    pub(super) fn calling(future: ClientFuture, call: Call) -> Self {
        Self {
            state: State::Calling {
                future,
                deadline: crate::call::response_deadline(call.response_timeout),
                call: Some(call),
            },
        }
    }

    pub(super) fn answered(response: Response<Body>) -> Self {
        Self {
            state: State::Answered {
                response: Some(response),
            },
        }
    }
}

impl std::fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("openai::ResponseFuture")
    }
}

impl Future for ResponseFuture {
    type Output = Result<Response<Body>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Answered { response } => {
                Poll::Ready(Ok(response.take().expect("polled after completion")))
            }
            StateProj::Calling {
                future,
                deadline,
                call,
            } => {
                let result = match future.poll(cx) {
                    Poll::Ready(result) => result,
                    Poll::Pending => {
                        let timed = call.as_ref().and_then(|c| c.response_timeout);
                        let Some(timeout) = timed else {
                            return Poll::Pending;
                        };
                        ready!(deadline.poll(cx));
                        call.take();
                        return Poll::Ready(Err(UpstreamTimeout::new(
                            TimeoutPhase::Response,
                            timeout,
                        )
                        .into()));
                    }
                };
                let call = call.take().expect("polled after completion");
                Poll::Ready(match result {
                    Ok(response) => Ok(into_response(response, call)),
                    Err(err) => Err(classify(err, call.connect_timeout)),
                })
            }
        }
    }
}

fn into_response(response: Response<Incoming>, call: Call) -> Response<Body> {
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers, false);
    let options = observe::Options::default().strip_usage_event(call.strip_usage);
    let mut response = match call.idle_timeout {
        Some(after) => observe_response_with(
            Response::from_parts(parts, IdleTimeout::new(body, after)),
            options,
        ),
        None => observe_response_with(Response::from_parts(parts, body), options),
    };
    ResponseFacts::get_mut(&mut response).provider = Some(call.name);
    response
}
