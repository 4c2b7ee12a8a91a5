//! Body types: [`BufferedBody`] for requests read once at the edge, [`Body`] for responses.

use std::convert::Infallible;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;

use crate::BoxError;

/// A request body that has been read into memory once.
///
/// Cloning is cheap (the bytes are reference counted) and **a clone always replays the whole
/// body**, even if the original has already been polled: retry and fallback send the same
/// request more than once without re-reading the client's stream.
///
/// ```
/// use http_body_util::BodyExt;
/// use portcullis_core::BufferedBody;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let body = BufferedBody::new(r#"{"model":"gpt-4o-mini"}"#);
/// let again = body.clone();
/// assert_eq!(body.collect().await.unwrap().to_bytes(), again.bytes());
/// # }
/// ```
#[derive(Debug, Default)]
pub struct BufferedBody {
    bytes: Bytes,
    sent: bool,
}

impl BufferedBody {
    /// A body holding `bytes`.
    pub fn new(bytes: impl Into<Bytes>) -> Self {
        Self {
            bytes: bytes.into(),
            sent: false,
        }
    }

    /// An empty body.
    pub fn empty() -> Self {
        Self::default()
    }

    /// The whole body, whether or not it has been polled.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// The whole body as [`Bytes`].
    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }
}

impl Clone for BufferedBody {
    fn clone(&self) -> Self {
        Self::new(self.bytes.clone())
    }
}

impl http_body::Body for BufferedBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.sent || self.bytes.is_empty() {
            return Poll::Ready(None);
        }
        self.sent = true;
        Poll::Ready(Some(Ok(Frame::data(self.bytes.clone()))))
    }

    fn is_end_stream(&self) -> bool {
        self.sent || self.bytes.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        if self.is_end_stream() {
            SizeHint::with_exact(0)
        } else {
            SizeHint::with_exact(self.bytes.len() as u64)
        }
    }
}

/// A copy of a buffered request, to send again (a retry, the next fallback target): method,
/// URI, version, headers, extensions and the body bytes, all shared or cheaply cloned.
///
/// ```
/// use portcullis_core::{clone_request, BufferedBody};
///
/// let mut req = http::Request::post("/v1/chat/completions").body(BufferedBody::new("{}")).unwrap();
/// req.extensions_mut().insert(7u32);
/// let copy = clone_request(&req);
/// assert_eq!(copy.uri(), "/v1/chat/completions");
/// assert_eq!(copy.extensions().get::<u32>(), Some(&7));
/// assert_eq!(copy.body().bytes(), "{}");
/// ```
pub fn clone_request(req: &http::Request<BufferedBody>) -> http::Request<BufferedBody> {
    let mut copy = http::Request::new(req.body().clone());
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    *copy.extensions_mut() = req.extensions().clone();
    copy
}

type BoxBody = Pin<Box<dyn http_body::Body<Data = Bytes, Error = BoxError> + Send + 'static>>;

/// The response body every Portcullis layer returns: either bytes in memory (a layer's own
/// answer, a cache hit) or any streaming body (an upstream response, a replayed stream).
pub struct Body {
    kind: Kind,
}

enum Kind {
    Full(Option<Bytes>),
    Stream(BoxBody),
}

impl Body {
    /// An empty body.
    pub fn empty() -> Self {
        Self {
            kind: Kind::Full(None),
        }
    }

    /// A body of `bytes`, sent as one frame.
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        Self {
            kind: Kind::Full((!bytes.is_empty()).then_some(bytes)),
        }
    }

    /// Wraps any body whose data is [`Bytes`] (a [`Body`] is returned as it is).
    pub fn new<B>(body: B) -> Self
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let mut body = Some(body);
        if let Some(same) = (&mut body as &mut dyn std::any::Any).downcast_mut::<Option<Self>>() {
            return same.take().expect("set just above");
        }
        let body = body.expect("taken only when it is a Body");
        Self::boxed(body.map_err(Into::into))
    }

    /// Wraps a body whose errors are already [`BoxError`]s, as it is: where [`Body::new`]
    /// adds a layer that converts each error, through which every frame passes (a call and a
    /// copy of the frame per body wrapped: a stream's events pass through one per layer
    /// that watches them).
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http_body::Body as _;
    /// use http_body_util::{BodyExt, Full};
    /// use portcullis_core::{Body, BoxError};
    ///
    /// let body = Body::boxed(Full::new(Bytes::from("hi")).map_err(|e| -> BoxError { match e {} }));
    /// assert_eq!(body.size_hint().exact(), Some(2));
    /// ```
    pub fn boxed<B>(body: B) -> Self
    where
        B: http_body::Body<Data = Bytes, Error = BoxError> + Send + 'static,
    {
        Self {
            kind: Kind::Stream(Box::pin(body)),
        }
    }
}

impl Default for Body {
    fn default() -> Self {
        Self::empty()
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Full(b) => f.debug_tuple("Body::Full").field(b).finish(),
            Kind::Stream(_) => f.write_str("Body::Stream(..)"),
        }
    }
}

impl From<Bytes> for Body {
    fn from(bytes: Bytes) -> Self {
        Self::full(bytes)
    }
}

impl From<String> for Body {
    fn from(s: String) -> Self {
        Self::full(s)
    }
}

impl From<&'static str> for Body {
    fn from(s: &'static str) -> Self {
        Self::full(s)
    }
}

impl From<Vec<u8>> for Body {
    fn from(v: Vec<u8>) -> Self {
        Self::full(v)
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.kind {
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Stream(body) => body.as_mut().poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(bytes) => bytes.is_none(),
            Kind::Stream(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Stream(body) => body.size_hint(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body::Body as _;

    #[tokio::test]
    async fn a_body_wrapped_again_is_the_same_body_and_errors_pass_through_boxed() {
        let full = Body::new(Body::full("abc"));
        assert_eq!(format!("{full:?}"), r#"Body::Full(Some(b"abc"))"#);
        assert_eq!(full.collect().await.unwrap().to_bytes(), "abc");

        // A frame of data, then an error.
        let (mut tx, failing) = http_body_util::channel::Channel::<Bytes, BoxError>::new(2);
        tx.try_send(Frame::data(Bytes::from("a"))).unwrap();
        tx.abort("broken".into());
        let body = Body::new(Body::boxed(failing));
        assert_eq!(format!("{body:?}"), "Body::Stream(..)");
        let err = body.collect().await.unwrap_err();
        assert_eq!(err.to_string(), "broken");
    }

    #[tokio::test]
    async fn buffered_clone_replays_after_poll() {
        let mut body = BufferedBody::new("abc");
        let first = (&mut body).collect().await.unwrap().to_bytes();
        assert_eq!(first, "abc");
        assert!(body.is_end_stream());
        let again = body.clone().collect().await.unwrap().to_bytes();
        assert_eq!(again, "abc");
    }

    #[tokio::test]
    async fn full_body_has_exact_size_and_ends() {
        let body = Body::full("hello");
        assert_eq!(body.size_hint().exact(), Some(5));
        assert_eq!(body.collect().await.unwrap().to_bytes(), "hello");
        assert!(Body::empty().is_end_stream());
        assert!(Body::full("").is_end_stream());
    }
}
