//! [`Retry`]: the service.

use std::task::{Context, Poll};

use http::{Request, Response};
use portcullis_core::context::Attempt;
use portcullis_core::{Body, BoxError, BufferedBody};
use tower_service::Service;

use crate::attempt::AttemptService;
use crate::{ResponseFuture, RetryLayer, RetryPolicy};

/// Retries failed LLM calls according to a [`RetryPolicy`] (see the [crate docs](crate)).
///
/// It wraps [`tower::retry::Retry`] around the inner service as each attempt sees it: bounded
/// by the policy's attempt timeout and, for a `stream: true` request, held until the first
/// event of a 2xx stream. The inner service must be `Clone`: each request keeps a clone to
/// retry with, readied before every retry.
#[derive(Clone, Debug)]
pub struct Retry<S> {
    inner: tower::retry::Retry<RetryPolicy, AttemptService<S>>,
    /// Retries are off (`attempts == 0`): no copy is kept and no stream is held.
    off: bool,
}

impl<S> Retry<S> {
    /// Wraps `inner` with `policy`.
    pub fn new(inner: S, policy: RetryPolicy) -> Self {
        let off = policy.attempts() == 0;
        let attempt = AttemptService::new(inner, policy.attempt_timeout(), !off);
        Self {
            inner: tower::retry::Retry::new(policy, attempt),
            off,
        }
    }

    /// A layer that wraps services with `policy`.
    pub fn layer(policy: RetryPolicy) -> RetryLayer {
        RetryLayer::new(policy)
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        self.inner.get_ref().get_ref()
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        self.inner.get_mut().get_mut()
    }

    /// The wrapped service, by value.
    pub fn into_inner(self) -> S {
        self.inner.into_inner().into_inner()
    }
}

impl<S> Service<Request<BufferedBody>> for Retry<S>
where
    S: Service<Request<BufferedBody>, Response = Response<Body>> + Clone,
    S::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = ResponseFuture<S>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<BufferedBody>) -> Self::Future {
        // The policy numbers the retries on the copies it keeps.
        req.extensions_mut().insert(Attempt(0));
        // Tower's `Retry` calls the service readied by `poll_ready` and keeps a clone for the
        // retries, which it readies before each one.
        ResponseFuture::new(self.inner.call(req), self.off)
    }
}
