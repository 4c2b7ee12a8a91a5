//! A call to a translating provider's upstream, shared by [`Anthropic`](crate::Anthropic) and
//! [`Gemini`](crate::Gemini): the Vertex AI token when one is due, the response headers up
//! to the response timeout, then the answer translated back to OpenAI's shape (an event
//! stream as it flows, a JSON answer read whole first).
//!
//! What differs between the providers is behind [`Answers`]: how a stream and a JSON answer
//! are translated, and the error body of a failed call.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::response::Parts;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body::Body as _;
use hyper::body::Incoming;
use pin_project_lite::pin_project;
use portcullis_core::error::{TimeoutPhase, UpstreamError, UpstreamErrorKind, UpstreamTimeout};
use portcullis_core::facts::ResponseFacts;
use portcullis_core::observe::{self, observe_response_with};
use portcullis_core::{Body, BoxError, BufferedBody};
use tokio::time::{Instant, Sleep};

use crate::client::HttpClient;
use crate::sse::{Translate, TranslatedBody};
use crate::upstream::{classify, strip_hop_by_hop};
use crate::vertex::{TokenFuture, TokenSource};

type ClientFuture = hyper_util::client::legacy::ResponseFuture;

/// JSON answers larger than this are refused (502) rather than read into memory.
const MAX_JSON_ANSWER: usize = 32 * 1024 * 1024;

/// How a provider translates its upstream's answers into OpenAI's.
pub(crate) trait Answers {
    /// The upstream, as error messages name it (`Anthropic`, `Gemini`).
    const UPSTREAM: &'static str;

    /// The translator of an event stream.
    type Stream: Translate + Send + 'static;

    /// The translator of a successful event stream, or `None` when this call's answer is
    /// read whole even when streamed (embeddings).
    fn stream(&self, created: u64) -> Option<Self::Stream>;

    /// The OpenAI body of a successful JSON answer.
    ///
    /// # Errors
    /// An answer that cannot be read.
    fn json(&self, body: &[u8], created: u64) -> Result<Bytes, BoxError>;

    /// The OpenAI error body of a failed call's answer.
    fn error_body(status: StatusCode, body: &[u8]) -> Bytes;
}

/// What a call needs once the response arrives.
pub(crate) struct Call<A> {
    /// The provider name recorded in the response facts.
    pub(crate) name: Arc<str>,
    pub(crate) answer: A,
    /// Leave out the usage event the client did not ask for.
    pub(crate) strip_usage: bool,
    pub(crate) connect_timeout: Duration,
    /// `None`: no timer (an outer deadline comes first).
    pub(crate) response_timeout: Option<Duration>,
    pub(crate) idle_timeout: Option<Duration>,
}

/// The timer of a call's response timeout. Without one (`None`) it is made for a time that
/// never comes and never polled, so it is never registered with the runtime's timers (which
/// take a lock to add and to remove one).
pub(crate) fn response_deadline(timeout: Option<Duration>) -> Sleep {
    static NEVER: std::sync::OnceLock<tokio::time::Instant> = std::sync::OnceLock::new();
    match timeout {
        Some(t) => tokio::time::sleep(t),
        None => tokio::time::sleep_until(*NEVER.get_or_init(|| {
            tokio::time::Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600)
        })),
    }
}

/// Sends `request` with `client`, first authorizing it with a Vertex AI token from `tokens`
/// (at once when the cached one is fresh, else in the future).
pub(crate) fn send<A>(
    client: &HttpClient,
    tokens: Option<&Arc<TokenSource>>,
    mut request: Request<BufferedBody>,
    call: Call<A>,
) -> CallFuture<A> {
    if let Some(tokens) = tokens {
        match tokens.fresh() {
            Some(token) => {
                request.headers_mut().insert(header::AUTHORIZATION, token);
            }
            None => {
                let unsent = Box::new(Unsent {
                    request,
                    client: client.clone(),
                    call,
                });
                return CallFuture {
                    state: State::Authorizing {
                        token: Box::pin(tokens.clone().token()),
                        unsent,
                    },
                };
            }
        }
    }
    CallFuture::calling(client.inner.request(request), call)
}

/// A JSON answer being read: its head, the bytes so far, and the call.
struct Reading<A> {
    parts: Parts,
    bytes: Vec<u8>,
    call: Call<A>,
    created: u64,
}

/// An upstream request waiting for its Vertex AI access token.
struct Unsent<A> {
    request: Request<BufferedBody>,
    client: HttpClient,
    call: Call<A>,
}

pin_project! {
    /// The future of a call to a translating provider's upstream (see the
    /// [module docs](self)).
    pub(crate) struct CallFuture<A> {
        #[pin]
        state: State<A>,
    }
}

// The large parts of the states but `Calling` are boxed (one allocation for a token wait,
// one per JSON answer read whole): a provider's future is moved by each layer that wraps it,
// and in the gateway's choice of provider the largest one sizes every provider's, so it is
// kept near `Calling`'s size, which every call takes (`a_call_future_is_near_its_calling_size`).
pin_project! {
    #[project = StateProj]
    #[project_replace = StateTake]
    enum State<A> {
        /// Waiting for a Vertex AI access token (the cached one was due for a refresh).
        Authorizing {
            token: TokenFuture,
            unsent: Box<Unsent<A>>,
        },
        /// Waiting for the response headers, up to the response timeout.
        Calling {
            #[pin]
            future: ClientFuture,
            #[pin]
            deadline: Sleep,
            call: Call<A>,
        },
        /// Reading a JSON answer (an answer or an error) whole, to translate it.
        Reading {
            #[pin]
            body: Incoming,
            #[pin]
            idle: Sleep,
            reading: Box<Reading<A>>,
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
}

impl<A> CallFuture<A> {
    fn calling(future: ClientFuture, call: Call<A>) -> Self {
        Self {
            state: State::Calling {
                future,
                deadline: response_deadline(call.response_timeout),
                call,
            },
        }
    }

    /// A call answered without reaching the upstream.
    pub(crate) fn answered(response: Response<Body>) -> Self {
        Self {
            state: State::Answered { response },
        }
    }
}

impl<A: Answers> Future for CallFuture<A> {
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
                    future,
                    deadline,
                    call,
                } => match future.poll(cx) {
                    Poll::Ready(result) => Step::Headers(result),
                    Poll::Pending
                        if call.response_timeout.is_some() && deadline.poll(cx).is_ready() =>
                    {
                        Step::HeadersTimedOut
                    }
                    Poll::Pending => Step::Pending,
                },
                StateProj::Reading {
                    body,
                    idle,
                    reading,
                } => read(body, idle, reading, cx),
                StateProj::Answered { .. } => Step::Answer,
                StateProj::Done => panic!("a provider's ResponseFuture polled after completion"),
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
                    } = *unsent;
                    request.headers_mut().insert(header::AUTHORIZATION, value);
                    state.set(State::Calling {
                        future: client.inner.request(request),
                        deadline: response_deadline(call.response_timeout),
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
                        call.response_timeout.unwrap_or_default(),
                    )
                    .into()));
                }
                (Step::BodyRead, StateTake::Reading { reading, .. }) => {
                    return Poll::Ready(translate(*reading));
                }
                (Step::BodyFailed(err), StateTake::Reading { .. }) => {
                    return Poll::Ready(Err(err));
                }
                (Step::Answer, StateTake::Answered { response }) => {
                    return Poll::Ready(Ok(response));
                }
                _ => unreachable!("each step comes from the state it is matched with"),
            }
        }
    }
}

/// Reads the JSON answer's frames as they come, failing on a transport error, on an answer
/// too large, or when the idle timeout passes between frames.
fn read<A: Answers>(
    mut body: Pin<&mut Incoming>,
    mut idle: Pin<&mut Sleep>,
    reading: &mut Reading<A>,
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
                                format!(
                                    "the {} answer is larger than {MAX_JSON_ANSWER} bytes",
                                    A::UPSTREAM
                                ),
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

enum Arrived<A> {
    /// An event stream, translated as it flows.
    Stream(Response<Body>),
    /// A JSON answer, to be read whole first.
    Json(Incoming, Box<Reading<A>>),
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Whether `headers` say the body is an event stream.
pub(crate) fn is_event_stream(headers: &http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("text/event-stream"))
}

fn arrived<A: Answers>(response: Response<Incoming>, call: Call<A>) -> Arrived<A> {
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers, true);
    let created = now();
    let translator = match is_event_stream(&parts.headers) && parts.status.is_success() {
        true => call.answer.stream(created),
        false => None,
    };
    let Some(translator) = translator else {
        let reading = Box::new(Reading {
            parts,
            bytes: Vec::new(),
            call,
            created,
        });
        return Arrived::Json(body, reading);
    };
    let body = TranslatedBody::new(body, translator, call.idle_timeout);
    let options = observe::Options::default().strip_usage_event(call.strip_usage);
    let mut response = observe_response_with(Response::from_parts(parts, body), options);
    ResponseFacts::get_mut(&mut response).provider = Some(call.name);
    Arrived::Stream(response)
}

/// The OpenAI answer for a JSON answer read whole: the translation of a success, the error
/// body of an error (its status kept), or a 502 for an answer that cannot be read.
fn translate<A: Answers>(reading: Reading<A>) -> Result<Response<Body>, BoxError> {
    let Reading {
        mut parts,
        bytes,
        call,
        created,
    } = reading;
    let body: Bytes = if parts.status.is_success() {
        call.answer
            .json(&bytes, created)
            .map_err(|e| UpstreamError::new(UpstreamErrorKind::Protocol, e))?
    } else {
        A::error_body(parts.status, &bytes)
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

#[cfg(test)]
mod tests {
    /// The futures of the translating providers stay near the size of their calling state
    /// (224 bytes when this was written; 728 with their reading state unboxed), so that
    /// the layers above, which move them, and the choice of provider, sized by the
    /// largest, stay small.
    #[test]
    fn a_call_future_is_near_its_calling_size() {
        let anthropic = size_of::<crate::anthropic::ResponseFuture>();
        let gemini = size_of::<crate::gemini::ResponseFuture>();
        assert!(
            anthropic <= 256 && gemini <= 256,
            "{anthropic} and {gemini} bytes"
        );
    }
}
