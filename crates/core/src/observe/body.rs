use std::borrow::Cow;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Response, StatusCode, header};
use http_body::{Frame, SizeHint};
use pin_project_lite::pin_project;
use smallvec::SmallVec;

use super::chunk::Chunk;
use super::sse::{Keep, SseScanner};
use super::{Observation, Outcome, Report};
use crate::error::ErrorBody;
use crate::facts::Usage;
use crate::{Body, BoxError};

/// JSON bodies larger than this are passed through without being kept for the report.
const MAX_KEPT_BODY: usize = 32 * 1024 * 1024;

/// Wraps the body of `response` in an [`ObservedBody`] and stores its [`Observation`] in the
/// response's extensions. A response that is already observed is returned as it is.
///
/// For an event stream, `content-length` is removed: the observer may end a broken stream
/// with an error event of its own.
pub fn observe_response<B>(response: Response<B>) -> Response<Body>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    observe_response_with(response, Options::default())
}

/// Options of an observer.
#[derive(Clone, Copy, Debug, Default)]
#[non_exhaustive]
pub struct Options {
    /// Leave the usage-only event out of the client's stream (see
    /// [`ObservedBody::strip_usage_event`]).
    pub strip_usage_event: bool,
}

impl Options {
    /// Sets [`Options::strip_usage_event`].
    pub fn strip_usage_event(mut self, strip: bool) -> Self {
        self.strip_usage_event = strip;
        self
    }
}

/// [`observe_response`] with options.
pub fn observe_response_with<B>(response: Response<B>, options: Options) -> Response<Body>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    if response.extensions().get::<Observation>().is_some() {
        return response.map(Body::new);
    }
    let (mut parts, body) = response.into_parts();
    let body = ObservedBody::new(body, parts.status, &parts.headers)
        .strip_usage_event(options.strip_usage_event);
    if body.observer.sse.is_some() {
        parts.headers.remove(header::CONTENT_LENGTH);
    }
    parts.extensions.insert(body.observation());
    Response::from_parts(parts, Body::boxed(body))
}

pin_project! {
    /// A response body that reports what passed through it (see the [module docs](super)).
    pub struct ObservedBody<B> {
        #[pin]
        inner: B,
        observer: Observer,
    }

    impl<B> PinnedDrop for ObservedBody<B> {
        fn drop(this: Pin<&mut Self>) {
            this.project().observer.dropped();
        }
    }
}

impl<B> ObservedBody<B> {
    /// Observes `inner`, the body of a response with `status` and `headers`; it is read as
    /// an event stream when `content-type` is `text/event-stream`.
    pub fn new(inner: B, status: StatusCode, headers: &HeaderMap) -> Self {
        let sse = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().starts_with("text/event-stream"));
        Self {
            inner,
            observer: Observer::new(status, sse),
        }
    }

    /// Leaves out of the client's stream the usage-only event (`"choices":[]` with `usage`):
    /// for a provider that asked the upstream for usage the client did not request. The
    /// usage is still reported.
    pub fn strip_usage_event(mut self, strip: bool) -> Self {
        self.observer.strip_usage_event = strip;
        self
    }

    /// The handle to this body's report.
    pub fn observation(&self) -> Observation {
        self.observer.observation.clone()
    }

    /// The wrapped body.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }
}

impl<B> std::fmt::Debug for ObservedBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObservedBody")
            .field("stream", &self.observer.sse.is_some())
            .field("ended", &self.observer.ended)
            .finish_non_exhaustive()
    }
}

impl<B> http_body::Body for ObservedBody<B>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        let observer = this.observer;
        if let Some(bytes) = observer.pending.take() {
            return Poll::Ready(Some(Ok(Frame::data(bytes))));
        }
        if observer.ended {
            return Poll::Ready(None);
        }
        loop {
            match ready!(this.inner.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        observer.inner_ended = this.inner.is_end_stream();
                        if let Some(out) = observer.on_data(data) {
                            return Poll::Ready(Some(Ok(Frame::data(out))));
                        }
                    }
                    Err(trailers) => return Poll::Ready(Some(Ok(trailers))),
                },
                Some(Err(err)) => {
                    let err: BoxError = err.into();
                    observer.ended = true;
                    return Poll::Ready(Some(match observer.on_error(&err) {
                        Some(event) => Ok(Frame::data(event)),
                        None => Err(err),
                    }));
                }
                None => {
                    observer.ended = true;
                    return Poll::Ready(observer.on_end().map(|b| Ok(Frame::data(b))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        // Never claim the end early: the observer must see the inner body's end to report.
        self.observer.ended && self.observer.pending.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        if self.observer.sse.is_some() {
            SizeHint::default()
        } else {
            self.inner.size_hint()
        }
    }
}

struct Observer {
    observation: Observation,
    status: StatusCode,
    /// `Some` for an event stream.
    sse: Option<SseScanner>,
    strip_usage_event: bool,
    /// JSON bodies: the chunks, kept until the end (shared with what went to the client).
    /// A JSON answer most often comes in one chunk, kept here without an allocation.
    chunks: SmallVec<[Bytes; 1]>,
    kept: usize,
    overflow: bool,
    text: String,
    usage: Option<Usage>,
    finish_reason: Option<String>,
    model: Option<String>,
    upstream_error: Option<String>,
    done: bool,
    bytes: u64,
    events: u32,
    /// Bytes to send before the end (an error event).
    pending: Option<Bytes>,
    /// The inner body said it was at its end after the last data frame.
    inner_ended: bool,
    ended: bool,
    reported: bool,
}

impl Observer {
    fn new(status: StatusCode, sse: bool) -> Self {
        Self {
            observation: Observation::new(),
            status,
            sse: sse.then(SseScanner::default),
            strip_usage_event: false,
            chunks: SmallVec::new(),
            kept: 0,
            overflow: false,
            text: String::new(),
            usage: None,
            finish_reason: None,
            model: None,
            upstream_error: None,
            done: false,
            bytes: 0,
            events: 0,
            pending: None,
            inner_ended: false,
            ended: false,
            reported: false,
        }
    }

    fn on_data(&mut self, data: Bytes) -> Option<Bytes> {
        let out = match self.sse.take() {
            Some(mut scanner) => {
                let out = scanner.push(data, |event| self.on_event(event));
                self.sse = Some(scanner);
                out
            }
            None => {
                if !self.overflow {
                    self.kept += data.len();
                    if self.kept > MAX_KEPT_BODY {
                        self.overflow = true;
                        self.chunks = SmallVec::new();
                    } else {
                        self.chunks.push(data.clone());
                    }
                }
                (!data.is_empty()).then_some(data)
            }
        };
        if let Some(out) = &out {
            self.bytes += out.len() as u64;
        }
        out
    }

    /// Reads one event's data; says whether to forward it.
    fn on_event(&mut self, data: &[u8]) -> Keep {
        self.events += 1;
        if data == b"[DONE]" {
            self.done = true;
            return Keep::Forward;
        }
        let Some(chunk) = Chunk::read(data, self.model.is_none()) else {
            return Keep::Forward;
        };
        let usage_only = chunk.usage.is_some() && chunk.no_choices;
        self.absorb(chunk);
        if self.strip_usage_event && usage_only {
            Keep::Drop
        } else {
            Keep::Forward
        }
    }

    fn absorb(&mut self, chunk: Chunk<'_>) {
        if let Some(model) = chunk.model
            && self.model.is_none()
        {
            self.model = Some(model.into_owned());
        }
        if let Some(usage) = chunk.usage {
            self.usage = Some(usage);
        }
        if let Some(message) = chunk.error {
            self.upstream_error = Some(
                message.map_or_else(|| "the upstream sent an error".to_owned(), Cow::into_owned),
            );
        }
        if let Some(text) = chunk.text {
            self.text.push_str(&text);
        }
        if let Some(reason) = chunk.finish_reason {
            self.finish_reason = Some(reason.into_owned());
        }
    }

    fn on_error(&mut self, err: &BoxError) -> Option<Bytes> {
        let message = format!("the upstream stream broke: {err}");
        // Counted before the report: the event reaches the client like any other bytes.
        let event = self.sse.is_some().then(|| error_event(&message));
        if let Some(event) = &event {
            self.bytes += event.len() as u64;
        }
        self.report(Outcome::Failed(message));
        event
    }

    fn on_end(&mut self) -> Option<Bytes> {
        let Some(mut scanner) = self.sse.take() else {
            self.report_json_end();
            return None;
        };
        let tail = scanner.finish(|event| {
            let readable =
                event == b"[DONE]" || serde_json::from_slice::<serde_json::Value>(event).is_ok();
            if readable {
                self.on_event(event);
            }
            readable
        });
        self.sse = Some(scanner);
        if let Some(tail) = &tail {
            self.bytes += tail.len() as u64;
        }
        if let Some(message) = self.upstream_error.clone() {
            self.report(Outcome::Failed(message));
            return tail;
        }
        if self.done || self.finish_reason.is_some() {
            self.report(Outcome::Complete);
            return tail;
        }
        let message = "the upstream stream ended before it was complete (no [DONE])";
        let event = error_event(message);
        self.bytes += event.len() as u64;
        self.report(Outcome::Failed(message.to_owned()));
        match tail {
            None => Some(event),
            Some(tail) => {
                self.pending = Some(event);
                Some(tail)
            }
        }
    }

    fn report_json_end(&mut self) {
        let body = match self.chunks.len() {
            _ if self.overflow => None,
            0 => Some(Bytes::new()),
            1 => self.chunks.pop(),
            _ => {
                let mut joined = BytesMut::with_capacity(self.kept);
                for chunk in self.chunks.drain(..) {
                    joined.extend_from_slice(&chunk);
                }
                Some(joined.freeze())
            }
        };
        if let Some(body) = &body
            && let Some(chunk) = Chunk::read(body, self.model.is_none())
        {
            self.absorb(chunk);
        }
        self.report_with(Outcome::Complete, body);
    }

    fn dropped(&mut self) {
        if self.reported {
            return;
        }
        if self.sse.is_none() && self.inner_ended {
            // The last frame was delivered; the reader just never asked for the end.
            self.report_json_end();
        } else {
            self.report(Outcome::Cancelled);
        }
    }

    fn report(&mut self, outcome: Outcome) {
        self.report_with(outcome, None);
    }

    fn report_with(&mut self, outcome: Outcome, body: Option<Bytes>) {
        if self.reported {
            return;
        }
        self.reported = true;
        self.chunks = SmallVec::new();
        self.observation.finish(Report {
            status: self.status,
            stream: self.sse.is_some(),
            outcome,
            usage: self.usage,
            text: std::mem::take(&mut self.text),
            finish_reason: self.finish_reason.take(),
            model: self.model.take(),
            body,
            bytes: self.bytes,
            events: self.events,
        });
    }
}

/// An SSE event carrying an OpenAI-style error, as OpenAI's clients read it mid-stream.
fn error_event(message: &str) -> Bytes {
    ErrorBody::new("upstream_error", message)
        .code("stream_interrupted")
        .to_sse_event()
}
