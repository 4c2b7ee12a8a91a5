use std::task::{Context, Poll};

use http::{Method, Request, Response, StatusCode};
use portcullis_core::{Body, BoxError, BufferedBody};
use tower_service::Service;

use super::future::{Before, ResponseFuture};
use super::layer::MessagesApiLayer;
use super::request::Translator;
use super::response::error_response;

/// Serves Anthropic's Messages API over a service that speaks OpenAI's chat completions (see
/// the [module docs](super)).
#[derive(Clone, Debug)]
pub struct MessagesApi<S> {
    inner: S,
    translator: Translator,
    limit: usize,
}

impl<S> MessagesApi<S> {
    /// Wraps `inner` with the defaults of [`MessagesApiLayer::new`].
    pub fn new(inner: S) -> Self {
        MessagesApiLayer::new().wrap(inner)
    }

    pub(super) fn from_parts(inner: S, translator: Translator, limit: usize) -> Self {
        Self {
            inner,
            translator,
            limit,
        }
    }

    /// A layer with the defaults.
    pub fn layer() -> MessagesApiLayer {
        MessagesApiLayer::new()
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B> Service<Request<B>> for MessagesApi<S>
where
    S: Service<Request<BufferedBody>, Response = Response<Body>> + Clone,
    S::Error: Into<BoxError>,
    B: http_body::Body,
    B::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = ResponseFuture<B, S, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        if req.method() != Method::POST {
            return ResponseFuture::answered(error_response(
                StatusCode::METHOD_NOT_ALLOWED,
                &format!("the Messages API takes POST, not {}", req.method()),
            ));
        }
        // The readied service goes with the call; this one is a fresh clone, to be driven
        // ready again before its own call.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let (parts, body) = req.into_parts();
        ResponseFuture::reading(
            body,
            Before {
                inner,
                parts,
                translator: self.translator,
                limit: self.limit,
            },
        )
    }
}
