use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use http::request::Parts;
use http::{HeaderValue, Method, Request, Response, header};
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::error::{BodyTooLarge, InvalidRequest, error_response};
use crate::{Body, BoxError, BufferedBody, RequestView};

pin_project! {
    /// The response future of [`Edge`](super::Edge).
    ///
    /// `E` is the inner service's error; its conversion to [`BoxError`] is fixed when the
    /// future is made, so the future's `Future` impl carries no `Into` bound (such bounds make
    /// rustc fail to prove `Send` for async blocks that hold the future, rust-lang/rust#102211).
    pub struct ResponseFuture<B, S, F, E> {
        #[pin]
        state: State<B, S, F>,
        into_box: fn(E) -> BoxError,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<B, S, F> {
        Reading {
            #[pin]
            body: B,
            head: Option<(Parts, S)>,
            collected: Collected,
            limit: usize,
            json_only: bool,
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

impl<B, S, F, E> ResponseFuture<B, S, F, E> {
    pub(super) fn reading(
        parts: Parts,
        body: B,
        inner: S,
        limit: usize,
        json_only: bool,
        into_box: fn(E) -> BoxError,
    ) -> Self {
        Self {
            state: State::Reading {
                body,
                head: Some((parts, inner)),
                collected: Collected::default(),
                limit,
                json_only,
            },
            into_box,
        }
    }

    pub(super) fn answered(response: Response<Body>, into_box: fn(E) -> BoxError) -> Self {
        Self {
            state: State::Answered {
                response: Some(response),
            },
            into_box,
        }
    }
}

impl<B, S, F, E> std::fmt::Debug for ResponseFuture<B, S, F, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("edge::ResponseFuture")
    }
}

impl<B, S, E> Future for ResponseFuture<B, S, S::Future, E>
where
    B: http_body::Body,
    B::Error: Into<BoxError>,
    S: Service<Request<BufferedBody>, Response = Response<Body>, Error = E>,
{
    type Output = Result<Response<Body>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let into_box = *this.into_box;
        let mut state = this.state;
        loop {
            let next = match state.as_mut().project() {
                StateProj::Reading {
                    mut body,
                    head,
                    collected,
                    limit,
                    json_only,
                } => {
                    let frame = if body.is_end_stream() {
                        None
                    } else {
                        ready!(body.as_mut().poll_frame(cx))
                    };
                    match frame {
                        Some(Ok(frame)) => {
                            if let Ok(mut data) = frame.into_data() {
                                let len = data.remaining();
                                if collected.len + len > *limit {
                                    let err: BoxError = BodyTooLarge { limit: *limit }.into();
                                    State::answer(error_response(&err))
                                } else {
                                    collected.push(data.copy_to_bytes(len));
                                    continue;
                                }
                            } else {
                                // Trailers carry nothing an LLM request needs.
                                continue;
                            }
                        }
                        Some(Err(err)) => {
                            let err: BoxError = InvalidRequest::new(format!(
                                "could not read the request body: {}",
                                err.into()
                            ))
                            .into();
                            State::answer(error_response(&err))
                        }
                        None => {
                            let (parts, mut inner) = head.take().expect("body read once");
                            match prepare(parts, collected.take(), *json_only) {
                                Ok(req) => State::Calling {
                                    future: inner.call(req),
                                },
                                Err(err) => State::answer(error_response(&err.into())),
                            }
                        }
                    }
                }
                StateProj::Calling { future } => {
                    let response = match ready!(future.poll(cx)) {
                        Ok(response) => response,
                        Err(err) => error_response(&into_box(err)),
                    };
                    return Poll::Ready(Ok(response));
                }
                StateProj::Answered { response } => {
                    return Poll::Ready(Ok(response.take().expect("polled after completion")));
                }
            };
            state.set(next);
        }
    }
}

impl<B, S, F> State<B, S, F> {
    fn answer(response: Response<Body>) -> Self {
        State::Answered {
            response: Some(response),
        }
    }
}

/// The UTF-8 byte order mark, which some Windows tools write before JSON.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Builds the buffered request and parses its body into its view (see the
/// [module docs](super) for what is parsed and what is refused).
fn prepare(
    mut parts: Parts,
    bytes: Bytes,
    json_only: bool,
) -> Result<Request<BufferedBody>, InvalidRequest> {
    // The view and the bytes sent on are the same bytes, so a stripped BOM is stripped from
    // both: no layer reads one body while the upstream receives another.
    let body = match bytes.strip_prefix(BOM) {
        Some(rest) => bytes.slice(bytes.len() - rest.len()..),
        None => bytes.clone(),
    };
    if body.is_empty() {
        if matches!(parts.method, Method::POST | Method::PUT | Method::PATCH) {
            return Err(InvalidRequest::new(
                "request body is empty; expected a JSON object",
            ));
        }
        return Ok(Request::from_parts(parts, BufferedBody::new(body)));
    }
    // curl's `-d` labels JSON as a form: a body that opens like an object is read as one.
    if !json_only && !is_json(&parts.headers) && body.trim_ascii_start().first() != Some(&b'{') {
        return Ok(Request::from_parts(parts, BufferedBody::new(bytes)));
    }
    let view = RequestView::parse(body.clone())?;
    if body.len() != bytes.len() && parts.headers.contains_key(header::CONTENT_LENGTH) {
        parts
            .headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    }
    let mut req = Request::from_parts(parts, BufferedBody::new(body));
    req.extensions_mut().insert(Arc::new(view));
    Ok(req)
}

/// Whether a body is labelled as JSON: a JSON content type, or none at all (OpenAI's
/// clients always send one, but curl users often forget).
fn is_json(headers: &http::HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return true;
    };
    let Ok(value) = value.to_str() else {
        return false;
    };
    let mime = value.split(';').next().unwrap_or("").trim();
    mime.eq_ignore_ascii_case("application/json")
        || mime.len() > 5 && mime[mime.len() - 5..].eq_ignore_ascii_case("+json")
}

/// The body as it arrives: one chunk is kept as it is, more are joined.
#[derive(Default)]
struct Collected {
    first: Option<Bytes>,
    joined: Option<BytesMut>,
    len: usize,
}

impl Collected {
    fn push(&mut self, chunk: Bytes) {
        self.len += chunk.len();
        if let Some(joined) = &mut self.joined {
            joined.extend_from_slice(&chunk);
        } else if let Some(first) = self.first.take() {
            let mut joined = BytesMut::with_capacity(first.len() + chunk.len());
            joined.extend_from_slice(&first);
            joined.extend_from_slice(&chunk);
            self.joined = Some(joined);
        } else {
            self.first = Some(chunk);
        }
    }

    fn take(&mut self) -> Bytes {
        match (self.first.take(), self.joined.take()) {
            (_, Some(joined)) => joined.freeze(),
            (Some(first), None) => first,
            (None, None) => Bytes::new(),
        }
    }
}
