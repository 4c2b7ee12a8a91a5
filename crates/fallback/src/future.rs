use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::BytesMut;
use http::response::Parts;
use http::{Request, Response, StatusCode, header};
use http_body::Body as _;
use pin_project_lite::pin_project;
use portcullis_core::context::{AttemptBudget, TargetPath};
use portcullis_core::error::Unavailable;
use portcullis_core::observe::{Started, started};
use portcullis_core::{Body, BoxError, BufferedBody, RequestView, clone_request};
use tower_service::Service;

use crate::body::Prefixed;
use crate::policy::is_context_length_error;
use crate::policy::{Trigger, Triggers};
use crate::service::Shared;

/// The largest 400 body read to look for a context-window error; larger bodies are passed on
/// as they are (the error bodies that matter are a few hundred bytes).
const MAX_ERROR_BODY: usize = 64 * 1024;

pin_project! {
    /// The response future of [`Fallback`](crate::Fallback): readies and calls each target in
    /// turn until one answers.
    pub struct ResponseFuture<S, F, T = Triggers> {
        shared: Arc<Shared<S, T>>,
        // The client's request, cloned for each turn but the last, which takes it.
        request: Option<Request<BufferedBody>>,
        index: usize,
        stream: bool,
        // The request's whole budget of upstream attempts, when it has one: once it is spent,
        // the target whose turn it is gets no next one.
        budget: Option<AttemptBudget>,
        // The smallest `Retry-After` among the targets that answered `Unavailable`.
        wait: Option<Duration>,
        #[pin]
        state: State<S, F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, F> {
        // Driving the clone of target `index` ready.
        Ready {
            service: Option<S>,
        },
        Calling {
            #[pin]
            future: F,
        },
        // A 2xx stream: waiting for its first event before answering.
        Starting {
            started: Started,
        },
        // A 400: reading its small body to see whether the context window was exceeded.
        Reading {
            head: Option<Parts>,
            body: Body,
            read: BytesMut,
        },
        NoTargets,
    }
}

impl<S: Clone, F, T> ResponseFuture<S, F, T> {
    pub(crate) fn new(shared: Arc<Shared<S, T>>, request: Request<BufferedBody>) -> Self {
        let stream = request
            .extensions()
            .get::<Arc<RequestView>>()
            .is_some_and(|view| view.stream());
        let budget = request.extensions().get::<AttemptBudget>().cloned();
        let state = match shared.targets.first() {
            Some(first) => State::Ready {
                service: Some(first.clone()),
            },
            None => State::NoTargets,
        };
        Self {
            shared,
            request: Some(request),
            index: 0,
            stream,
            budget,
            wait: None,
            state,
        }
    }
}

impl<S, F, T> fmt::Debug for ResponseFuture<S, F, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("fallback::ResponseFuture")
            .field("target", &self.index)
            .field("of", &self.shared.targets.len())
            .finish_non_exhaustive()
    }
}

impl<S, F, E, T> Future for ResponseFuture<S, F, T>
where
    S: Service<Request<BufferedBody>, Response = Response<Body>, Error = E, Future = F> + Clone,
    F: Future<Output = Result<Response<Body>, E>>,
    E: Into<BoxError>,
    T: Trigger,
{
    type Output = Result<Response<Body>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let index = *this.index;
            // The last turn: no target follows, or the request may make no more upstream
            // attempts (one atomic load), so the next target could only refuse and the answer
            // in hand, whatever it is, is the best the client can get.
            let last = index + 1 >= this.shared.targets.len()
                || this.budget.as_ref().is_some_and(|b| b.remaining() == 0);
            let triggers = &this.shared.triggers;
            // Target `index` failed: with this error, or with a response already dropped.
            let error: Option<BoxError> = match this.state.as_mut().project() {
                StateProj::Ready { service } => {
                    let target = service.as_mut().expect("polled after completion");
                    match target.poll_ready(cx) {
                        Poll::Ready(Ok(())) => {
                            let req = request_for(this.request, index, last);
                            let future = target.call(req);
                            this.state.set(State::Calling { future });
                            continue;
                        }
                        Poll::Ready(Err(err)) => Some(err.into()),
                        // Not ready now: unavailable. Waiting on it could hold the client for
                        // as long as the target is saturated while the next one could answer.
                        Poll::Pending => Some(
                            Unavailable {
                                message: format!("fallback target {index} is not ready"),
                                retry_after: None,
                            }
                            .into(),
                        ),
                    }
                }
                StateProj::Calling { future } => match ready!(future.poll(cx)) {
                    Err(err) => Some(err.into()),
                    Ok(response) => {
                        let status = response.status();
                        if last {
                            return answer(response, index);
                        }
                        if status.is_success() {
                            if *this.stream || is_event_stream(&response) {
                                let started = started(response);
                                this.state.set(State::Starting { started });
                                continue;
                            }
                            return answer(response, index);
                        }
                        if triggers.on_response(status, response.headers()) {
                            None
                        } else if status == StatusCode::BAD_REQUEST && triggers.on_context_window()
                        {
                            let (head, body) = response.into_parts();
                            this.state.set(State::Reading {
                                head: Some(head),
                                body,
                                read: BytesMut::new(),
                            });
                            continue;
                        } else {
                            return answer(response, index);
                        }
                    }
                },
                // Only streams of targets that have a next one get here.
                StateProj::Starting { started } => match ready!(Pin::new(started).poll(cx)) {
                    Ok(response) => return answer(response, index),
                    // Nothing reached the client yet: the next target can still answer.
                    Err(_not_started) => None,
                },
                StateProj::Reading { head, body, read } => loop {
                    match ready!(Pin::new(&mut *body).poll_frame(cx)) {
                        Some(Ok(frame)) => {
                            let Ok(data) = frame.into_data() else {
                                continue;
                            };
                            read.extend_from_slice(&data);
                            if read.len() > MAX_ERROR_BODY {
                                let first = read.split().freeze();
                                let body = Body::boxed(Prefixed::new(first, std::mem::take(body)));
                                let head = head.take().expect("read once");
                                return answer(Response::from_parts(head, body), index);
                            }
                        }
                        // The upstream broke while answering: a transport failure.
                        Some(Err(err)) => break Some(err),
                        None => {
                            let bytes = read.split().freeze();
                            if is_context_length_error(&bytes) {
                                break None;
                            }
                            let head = head.take().expect("read once");
                            return answer(Response::from_parts(head, Body::from(bytes)), index);
                        }
                    }
                },
                StateProj::NoTargets => {
                    let err = Unavailable {
                        message: "the fallback has no targets".to_owned(),
                        retry_after: None,
                    };
                    return Poll::Ready(Err(err.into()));
                }
            };
            if let Some(err) = error {
                if last || !triggers.on_error(&err) {
                    return Poll::Ready(Err(last_error(err, *this.wait)));
                }
                note_wait(this.wait, &err);
            }
            *this.index += 1;
            let next = this.shared.targets[*this.index].clone();
            this.state.set(State::Ready {
                service: Some(next),
            });
        }
    }
}

/// The request for target `index`: a copy, or the client's own on the last turn, with the
/// index pushed onto its target path so the target knows where it sits in the tree.
fn request_for(
    request: &mut Option<Request<BufferedBody>>,
    index: usize,
    last: bool,
) -> Request<BufferedBody> {
    let mut req = if last {
        request.take().expect("the last turn is taken once")
    } else {
        clone_request(request.as_ref().expect("kept until the last turn"))
    };
    TargetPath::enter(&mut req, index);
    req
}

/// Answers `response`, recording that it came through target `index`.
fn answer(mut response: Response<Body>, index: usize) -> Poll<Result<Response<Body>, BoxError>> {
    TargetPath::answered(&mut response, index);
    Poll::Ready(Ok(response))
}

fn is_event_stream(response: &Response<Body>) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"))
}

fn note_wait(wait: &mut Option<Duration>, err: &BoxError) {
    if let Some(after) = err
        .downcast_ref::<Unavailable>()
        .and_then(|e| e.retry_after)
    {
        *wait = Some(wait.map_or(after, |w| w.min(after)));
    }
}

/// The error of the last turn's target. When it is `Unavailable`, its `Retry-After` becomes the
/// soonest any target said it would be back.
fn last_error(err: BoxError, wait: Option<Duration>) -> BoxError {
    match (err.downcast::<Unavailable>(), wait) {
        (Ok(mut unavailable), Some(wait)) => {
            unavailable.retry_after = Some(unavailable.retry_after.map_or(wait, |w| w.min(wait)));
            unavailable
        }
        (Ok(unavailable), None) => unavailable,
        (Err(err), _) => err,
    }
}
