use crate::upstream::{classify, strip_hop_by_hop};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::response::Parts;
use http::{HeaderValue, Response, header};
use http_body::Body as _;
use hyper::body::Incoming;
use pin_project_lite::pin_project;
use portcullis_core::error::{TimeoutPhase, UpstreamError, UpstreamErrorKind, UpstreamTimeout};
use portcullis_core::facts::ResponseFacts;
use portcullis_core::observe::{self, observe_response_with};
use portcullis_core::{Body, BoxError};
use tokio::time::{Instant, Sleep};

use super::embed::EmbeddingTranslator;
use super::response::{ResponseTranslator, error_body};
use super::stream::GeminiBody;
use crate::client::HttpClient;
use crate::vertex::TokenFuture;

type ClientFuture = hyper_util::client::legacy::ResponseFuture;

/// JSON answers larger than this are refused (502) rather than read into memory.
const MAX_JSON_ANSWER: usize = 32 * 1024 * 1024;

/// What the answer of a call is translated with.
pub(super) enum Answer {
    /// A chat completion, JSON or stream.
    Chat(ResponseTranslator),
    /// Embeddings.
    Embeddings(EmbeddingTranslator),
}

/// What a call needs once the response arrives.
pub(super) struct Call {
    pub(super) name: Arc<str>,
    pub(super) answer: Answer,
    pub(super) strip_usage: bool,
    pub(super) connect_timeout: Duration,
    pub(super) response_timeout: Duration,
    pub(super) idle_timeout: Option<Duration>,
}

/// A JSON answer being read: its head, the bytes so far, and the call.
struct Reading {
    parts: Parts,
    bytes: Vec<u8>,
    call: Call,
    created: u64,
}

/// An upstream request waiting for its access token.
pub(super) struct Unsent {
    pub(super) request: http::Request<portcullis_core::BufferedBody>,
    pub(super) client: HttpClient,
    pub(super) call: Call,
}

pin_project! {
    /// The response future of [`Gemini`](super::Gemini).
    pub struct ResponseFuture {
        #[pin]
        state: State,
    }
}

pin_project! {
    #[project = StateProj]
    #[project_replace = StateTake]
    enum State {
        /// Waiting for a Vertex AI access token (the cached one was due for a refresh).
        Authorizing {
            token: TokenFuture,
            unsent: Unsent,
        },
        /// Waiting for the response headers, up to the response timeout.
        Calling {
            #[pin]
            future: ClientFuture,
            #[pin]
            deadline: Sleep,
            call: Call,
        },
        /// Reading a JSON answer (a message or an error) whole, to translate it.
        Reading {
            #[pin]
            body: Incoming,
            #[pin]
            idle: Sleep,
            reading: Reading,
        },
        /// A Claude model's request, answered by the Claude provider.
        Claude {
            #[pin]
            future: crate::anthropic::ResponseFuture,
        },
        /// Answered without calling the upstream.
        Answered {
            response: Response<Body>,
        },
        Done,
    }
}

/// What a poll of the current state came to.
enum Step {
    Pending,
    Token(Result<HeaderValue, Box<Response<Body>>>),
    Headers(Result<Response<Incoming>, hyper_util::client::legacy::Error>),
    HeadersTimedOut,
    BodyRead,
    BodyFailed(BoxError),
    Answer,
    Claude(Result<Response<Body>, BoxError>),
}

impl ResponseFuture {
    pub(super) fn calling(future: ClientFuture, call: Call) -> Self {
        Self {
            state: State::Calling {
                future,
                deadline: tokio::time::sleep(call.response_timeout),
                call,
            },
        }
    }

    pub(super) fn authorizing(token: TokenFuture, unsent: Unsent) -> Self {
        Self {
            state: State::Authorizing { token, unsent },
        }
    }

    pub(super) fn claude(future: crate::anthropic::ResponseFuture) -> Self {
        Self {
            state: State::Claude { future },
        }
    }

    pub(super) fn answered(response: Response<Body>) -> Self {
        Self {
            state: State::Answered { response },
        }
    }
}

impl std::fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("gemini::ResponseFuture")
    }
}

impl Future for ResponseFuture {
    type Output = Result<Response<Body>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            let step = match state.as_mut().project() {
                StateProj::Authorizing { token, .. } => match token.as_mut().poll(cx) {
                    Poll::Ready(result) => Step::Token(result),
                    Poll::Pending => Step::Pending,
                },
                StateProj::Calling {
                    future, deadline, ..
                } => match future.poll(cx) {
                    Poll::Ready(result) => Step::Headers(result),
                    Poll::Pending if deadline.poll(cx).is_ready() => Step::HeadersTimedOut,
                    Poll::Pending => Step::Pending,
                },
                StateProj::Reading {
                    body,
                    idle,
                    reading,
                } => read(body, idle, reading, cx),
                StateProj::Claude { future } => match future.poll(cx) {
                    Poll::Ready(result) => Step::Claude(result),
                    Poll::Pending => Step::Pending,
                },
                StateProj::Answered { .. } => Step::Answer,
                StateProj::Done => panic!("gemini::ResponseFuture polled after completion"),
            };
            // Every step but `Pending` leaves the state it was polled in: take that state's
            // values, and set the next state (or answer).
            if let Step::Pending = step {
                return Poll::Pending;
            }
            match (step, state.as_mut().project_replace(State::Done)) {
                (Step::Token(Ok(value)), StateTake::Authorizing { unsent, .. }) => {
                    let Unsent {
                        mut request,
                        client,
                        call,
                    } = unsent;
                    request.headers_mut().insert(header::AUTHORIZATION, value);
                    state.set(State::Calling {
                        future: client.inner.request(request),
                        deadline: tokio::time::sleep(call.response_timeout),
                        call,
                    });
                }
                (Step::Token(Err(answer)), StateTake::Authorizing { .. }) => {
                    return Poll::Ready(Ok(*answer));
                }
                (Step::Headers(Ok(response)), StateTake::Calling { call, .. }) => {
                    match arrived(response, call) {
                        Arrived::Stream(response) => return Poll::Ready(Ok(response)),
                        Arrived::Json(body, reading) => {
                            let after = reading.call.idle_timeout.unwrap_or(Duration::MAX);
                            state.set(State::Reading {
                                body,
                                idle: tokio::time::sleep(after),
                                reading,
                            });
                        }
                    }
                }
                (Step::Headers(Err(err)), StateTake::Calling { call, .. }) => {
                    return Poll::Ready(Err(classify(err, call.connect_timeout)));
                }
                (Step::HeadersTimedOut, StateTake::Calling { call, .. }) => {
                    return Poll::Ready(Err(UpstreamTimeout::new(
                        TimeoutPhase::Response,
                        call.response_timeout,
                    )
                    .into()));
                }
                (Step::BodyRead, StateTake::Reading { reading, .. }) => {
                    return Poll::Ready(translate(reading));
                }
                (Step::BodyFailed(err), StateTake::Reading { .. }) => {
                    return Poll::Ready(Err(err));
                }
                (Step::Answer, StateTake::Answered { response }) => {
                    return Poll::Ready(Ok(response));
                }
                (Step::Claude(result), StateTake::Claude { .. }) => return Poll::Ready(result),
                _ => unreachable!("each step comes from the state it is matched with"),
            }
        }
    }
}

/// Reads the JSON answer's frames as they come, failing on a transport error, on an answer
/// too large, or when the idle timeout passes between frames.
fn read(
    mut body: Pin<&mut Incoming>,
    mut idle: Pin<&mut Sleep>,
    reading: &mut Reading,
    cx: &mut Context<'_>,
) -> Step {
    loop {
        match body.as_mut().poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(after) = reading.call.idle_timeout {
                    idle.as_mut().reset(Instant::now() + after);
                }
                if let Ok(data) = frame.into_data() {
                    if reading.bytes.len() + data.len() > MAX_JSON_ANSWER {
                        return Step::BodyFailed(
                            UpstreamError::new(
                                UpstreamErrorKind::Protocol,
                                format!("the Gemini answer is larger than {MAX_JSON_ANSWER} bytes"),
                            )
                            .into(),
                        );
                    }
                    reading.bytes.extend_from_slice(&data);
                }
            }
            Poll::Ready(Some(Err(err))) => {
                return Step::BodyFailed(
                    UpstreamError::new(UpstreamErrorKind::Protocol, err).into(),
                );
            }
            Poll::Ready(None) => return Step::BodyRead,
            Poll::Pending => {
                return match reading.call.idle_timeout {
                    Some(after) if idle.as_mut().poll(cx).is_ready() => {
                        Step::BodyFailed(UpstreamTimeout::new(TimeoutPhase::Idle, after).into())
                    }
                    _ => Step::Pending,
                };
            }
        }
    }
}

enum Arrived {
    /// An event stream, translated as it flows.
    Stream(Response<Body>),
    /// A JSON answer, to be read whole first.
    Json(Incoming, Reading),
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn arrived(response: Response<Incoming>, call: Call) -> Arrived {
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers, true);
    let created = now();
    let sse = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("text/event-stream"));
    let translator = match (&call.answer, sse && parts.status.is_success()) {
        (Answer::Chat(translator), true) => translator.stream(created),
        _ => {
            let reading = Reading {
                parts,
                bytes: Vec::new(),
                call,
                created,
            };
            return Arrived::Json(body, reading);
        }
    };
    let body = GeminiBody::new(body, translator, call.idle_timeout);
    let options = observe::Options::default().strip_usage_event(call.strip_usage);
    let mut response = observe_response_with(Response::from_parts(parts, body), options);
    ResponseFacts::get_mut(&mut response).provider = Some(call.name);
    Arrived::Stream(response)
}

/// The OpenAI answer for a JSON answer read whole: the chat completion of a message, the
/// error body of an error (its status kept), or a 502 for a message that cannot be read.
fn translate(reading: Reading) -> Result<Response<Body>, BoxError> {
    let Reading {
        mut parts,
        bytes,
        call,
        created,
    } = reading;
    let body: Bytes = if parts.status.is_success() {
        match &call.answer {
            Answer::Chat(translator) => translator.json(&bytes, created),
            Answer::Embeddings(translator) => translator.json(&bytes),
        }
        .map_err(|e| UpstreamError::new(UpstreamErrorKind::Protocol, e))?
    } else {
        error_body(parts.status, &bytes)
    };
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    let response = Response::from_parts(parts, Body::full(body));
    let mut response = observe_response_with(response, observe::Options::default());
    ResponseFacts::get_mut(&mut response).provider = Some(call.name);
    Ok(response)
}
