use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body::Body as _;
use pin_project_lite::pin_project;
use portcullis_core::error::to_http_error;
use portcullis_core::{Body, BoxError, BufferedBody};
use tower_service::Service;

use super::request::Translator;
use super::response::{Answer, error_body, error_response};
use super::stream::MessagesStreamBody;
use crate::call::is_event_stream;

/// JSON answers of the inner service larger than this are refused (502) rather than read
/// into memory.
const MAX_JSON_ANSWER: usize = 32 * 1024 * 1024;

/// What a call needs before it reaches the inner service: the readied service, the request
/// head and the translation settings.
pub(super) struct Before<S> {
    pub(super) inner: S,
    pub(super) parts: http::request::Parts,
    pub(super) translator: Translator,
    pub(super) limit: usize,
}

pin_project! {
    /// The response future of [`MessagesApi`](super::MessagesApi).
    pub struct ResponseFuture<B, S, F> {
        #[pin]
        state: State<B, S, F>,
    }
}

pin_project! {
    #[project = StateProj]
    #[project_replace = StateTake]
    enum State<B, S, F> {
        /// Reading the client's Messages request whole, to translate it.
        Reading {
            #[pin]
            body: B,
            bytes: Vec<u8>,
            before: Before<S>,
        },
        /// Waiting for the inner service's answer.
        Calling {
            #[pin]
            future: F,
            answer: Answer,
        },
        /// Reading a JSON answer (a chat completion or an error) whole, to translate it.
        Collecting {
            #[pin]
            body: Body,
            bytes: Vec<u8>,
            parts: http::response::Parts,
            answer: Answer,
        },
        /// Answered without calling the inner service (a refusal).
        Answered {
            response: Response<Body>,
        },
        Done,
    }
}

/// What a poll of the current state came to.
enum Step<E> {
    Pending,
    RequestRead,
    RequestRefused(Response<Body>),
    Called(Result<Response<Body>, E>),
    AnswerRead,
    AnswerFailed(String),
    Answer,
}

impl<B, S, F> ResponseFuture<B, S, F> {
    pub(super) fn reading(body: B, before: Before<S>) -> Self {
        Self {
            state: State::Reading {
                body,
                bytes: Vec::new(),
                before,
            },
        }
    }

    pub(super) fn answered(response: Response<Body>) -> Self {
        Self {
            state: State::Answered { response },
        }
    }
}

impl<B, S, F> std::fmt::Debug for ResponseFuture<B, S, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("inbound::anthropic::ResponseFuture")
    }
}

impl<B, S> Future for ResponseFuture<B, S, S::Future>
where
    B: http_body::Body,
    B::Error: Into<BoxError>,
    S: Service<Request<BufferedBody>, Response = Response<Body>>,
    S::Error: Into<BoxError>,
{
    type Output = Result<Response<Body>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            let step = match state.as_mut().project() {
                StateProj::Reading {
                    body,
                    bytes,
                    before,
                } => read_request(body, bytes, before.limit, cx),
                StateProj::Calling { future, .. } => match future.poll(cx) {
                    Poll::Ready(result) => Step::Called(result),
                    Poll::Pending => Step::Pending,
                },
                StateProj::Collecting { body, bytes, .. } => read_answer(body, bytes, cx),
                StateProj::Answered { .. } => Step::Answer,
                StateProj::Done => {
                    panic!("inbound::anthropic::ResponseFuture polled after completion")
                }
            };
            if let Step::Pending = step {
                return Poll::Pending;
            }
            // Every step but `Pending` leaves the state it was polled in: take that state's
            // values, and set the next state (or answer).
            match (step, state.as_mut().project_replace(State::Done)) {
                (Step::RequestRead, StateTake::Reading { bytes, before, .. }) => {
                    match call(bytes, before) {
                        Ok((future, answer)) => state.set(State::Calling { future, answer }),
                        Err(refusal) => return Poll::Ready(Ok(*refusal)),
                    }
                }
                (Step::RequestRefused(refusal), StateTake::Reading { .. }) => {
                    return Poll::Ready(Ok(refusal));
                }
                (Step::Called(Ok(response)), StateTake::Calling { answer, .. }) => {
                    match arrived(response, answer) {
                        Arrived::Stream(response) => return Poll::Ready(Ok(response)),
                        Arrived::Json(body, parts) => state.set(State::Collecting {
                            body,
                            bytes: Vec::new(),
                            parts,
                            answer,
                        }),
                    }
                }
                (Step::Called(Err(err)), StateTake::Calling { .. }) => {
                    // The inner service's error has an HTTP meaning (a timeout, a refusal):
                    // answer it in Anthropic's shape rather than leave it to OpenAI's.
                    let err: BoxError = err.into();
                    let http = to_http_error(&err);
                    let mut response = error_response(http.status(), &http.body().message);
                    if let Some(wait) = http.retry_after() {
                        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                        response
                            .headers_mut()
                            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
                    }
                    return Poll::Ready(Ok(response));
                }
                (
                    Step::AnswerRead,
                    StateTake::Collecting {
                        bytes,
                        parts,
                        answer,
                        ..
                    },
                ) => return Poll::Ready(Ok(translate(parts, &bytes, answer))),
                (Step::AnswerFailed(message), StateTake::Collecting { .. }) => {
                    return Poll::Ready(Ok(error_response(StatusCode::BAD_GATEWAY, &message)));
                }
                (Step::Answer, StateTake::Answered { response }) => {
                    return Poll::Ready(Ok(response));
                }
                _ => unreachable!("each step comes from the state it is matched with"),
            }
        }
    }
}

fn read_request<B, E>(
    mut body: Pin<&mut B>,
    bytes: &mut Vec<u8>,
    limit: usize,
    cx: &mut Context<'_>,
) -> Step<E>
where
    B: http_body::Body,
    B::Error: Into<BoxError>,
{
    loop {
        match body.as_mut().poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let Ok(mut data) = frame.into_data() else {
                    continue;
                };
                if bytes.len() + data.remaining() > limit {
                    return Step::RequestRefused(error_response(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        &format!("the request body is larger than {limit} bytes"),
                    ));
                }
                while data.has_remaining() {
                    let chunk = data.chunk();
                    bytes.extend_from_slice(chunk);
                    let n = chunk.len();
                    data.advance(n);
                }
            }
            Poll::Ready(Some(Err(e))) => {
                let e: BoxError = e.into();
                return Step::RequestRefused(error_response(
                    StatusCode::BAD_REQUEST,
                    &format!("the request body could not be read: {e}"),
                ));
            }
            Poll::Ready(None) => return Step::RequestRead,
            Poll::Pending => return Step::Pending,
        }
    }
}

fn read_answer<E>(mut body: Pin<&mut Body>, bytes: &mut Vec<u8>, cx: &mut Context<'_>) -> Step<E> {
    loop {
        match body.as_mut().poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    if bytes.len() + data.len() > MAX_JSON_ANSWER {
                        return Step::AnswerFailed(format!(
                            "the upstream answer is larger than {MAX_JSON_ANSWER} bytes"
                        ));
                    }
                    bytes.extend_from_slice(&data);
                }
            }
            Poll::Ready(Some(Err(e))) => {
                return Step::AnswerFailed(format!("the upstream answer broke: {e}"));
            }
            Poll::Ready(None) => return Step::AnswerRead,
            Poll::Pending => return Step::Pending,
        }
    }
}

/// Translates the request read and calls the inner service with it, or refuses it.
fn call<S>(bytes: Vec<u8>, before: Before<S>) -> Result<(S::Future, Answer), Box<Response<Body>>>
where
    S: Service<Request<BufferedBody>, Response = Response<Body>>,
{
    let Before {
        mut inner,
        mut parts,
        translator,
        ..
    } = before;
    let chat = translator
        .translate(&bytes)
        .map_err(|e| Box::new(error_response(StatusCode::BAD_REQUEST, e.message())))?;
    let (body, answer) = chat.into_parts();
    parts.method = Method::POST;
    parts.uri = Uri::from_static("/v1/chat/completions");
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    let request = Request::from_parts(parts, BufferedBody::new(body));
    Ok((inner.call(request), answer))
}

enum Arrived {
    Stream(Response<Body>),
    Json(Body, http::response::Parts),
}

fn arrived(response: Response<Body>, answer: Answer) -> Arrived {
    let (mut parts, body) = response.into_parts();
    if !(is_event_stream(&parts.headers) && parts.status.is_success()) {
        return Arrived::Json(body, parts);
    }
    parts.headers.remove(header::CONTENT_LENGTH);
    let body = MessagesStreamBody::new(body, answer.stream());
    Arrived::Stream(Response::from_parts(parts, Body::boxed(body)))
}

/// The Anthropic answer for a JSON answer read whole: the message of a chat completion (as
/// events when the client asked for a stream), Anthropic's error shape for an error (its
/// status kept), or a 502 for a completion that cannot be read.
fn translate(mut parts: http::response::Parts, bytes: &[u8], answer: Answer) -> Response<Body> {
    let (body, content_type): (Bytes, &'static str) = if parts.status.is_success() {
        let translated = if answer.stream {
            answer
                .json_as_stream(bytes)
                .map(|b| (b, "text/event-stream"))
        } else {
            answer.json(bytes).map(|b| (b, "application/json"))
        };
        match translated {
            Ok(t) => t,
            Err(e) => return error_response(StatusCode::BAD_GATEWAY, &e.to_string()),
        }
    } else {
        (error_body(parts.status, bytes), "application/json")
    };
    parts
        .headers
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    Response::from_parts(parts, Body::full(body))
}
