//! [`Retry`]: the service.

use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use portcullis_core::BoxError;
use portcullis_core::context::Attempt;
use tower::retry::Policy;
use tower_service::Service;

use crate::attempt::AttemptService;
use crate::{ResponseFuture, RetryLayer, RetryPolicy};

/// What [`Retry`] adds around each attempt, taken from a [`RetryPolicy`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Settings {
    timeout: Option<Duration>,
    /// Retries are off: no copy is kept and the layer writes the `Retries` fact itself.
    off: bool,
    /// Hold a core-body stream until its first event: only our policy reads what the hold
    /// finds, and only when it may retry.
    gate_streams: bool,
}

impl Settings {
    /// A policy of the user's own: each attempt is the inner call as it is.
    pub(crate) const PLAIN: Self = Self {
        timeout: None,
        off: false,
        gate_streams: false,
    };

    pub(crate) fn of(policy: &RetryPolicy) -> Self {
        let off = policy.attempts() == 0;
        Self {
            timeout: policy.attempt_timeout(),
            off,
            gate_streams: !off,
        }
    }
}

/// Retries failed calls according to a policy: a [`RetryPolicy`] by default (see the
/// [crate docs](crate)), or any [`tower::retry::Policy`].
///
/// It wraps [`tower::retry::Retry`] around the inner service as each attempt sees it: bounded
/// by the policy's attempt timeout and, for a `stream: true` request answered with the core
/// [`Body`](portcullis_core::Body), held until the first event of a 2xx stream. The inner
/// service must be `Clone`: each request keeps a clone to retry with, readied before every
/// retry.
///
/// It serves `Request<B>` for any replayable body `B: Clone` and answers the inner service's
/// own `Response<R>`: a `service_fn` over `Request<Full<Bytes>>` answering `Response<String>`
/// is retried as it is. A request body that is not `Clone` needs
/// [`Edge`](portcullis_core::Edge) (or a buffering step of your own) in front: see
/// [around a service of your own](crate#around-a-service-of-your-own).
#[derive(Clone, Debug)]
pub struct Retry<S, P = RetryPolicy> {
    inner: tower::retry::Retry<P, AttemptService<S>>,
    /// Retries are off (`attempts == 0`): no copy is kept and no stream is held.
    off: bool,
}

impl<S> Retry<S> {
    /// Wraps `inner` with `policy`.
    pub fn new(inner: S, policy: RetryPolicy) -> Self {
        let settings = Settings::of(&policy);
        Self::from_parts(inner, policy, settings)
    }

    /// A layer that wraps services with `policy`.
    pub fn layer(policy: RetryPolicy) -> RetryLayer {
        RetryLayer::new(policy)
    }
}

impl<S, P> Retry<S, P> {
    /// Wraps `inner` with a policy of your own, any [`tower::retry::Policy`] over
    /// `Request<B>`, `Response<R>` and [`BoxError`]. Each attempt is the inner call as it is:
    /// the attempt timeout and the hold on streams are [`RetryPolicy`] settings.
    pub fn with_policy(inner: S, policy: P) -> Self {
        Self::from_parts(inner, policy, Settings::PLAIN)
    }

    pub(crate) fn from_parts(inner: S, policy: P, settings: Settings) -> Self {
        let attempt = AttemptService::new(inner, settings.timeout, settings.gate_streams);
        Self {
            inner: tower::retry::Retry::new(policy, attempt),
            off: settings.off,
        }
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

impl<S, P, ReqBody, ResBody> Service<Request<ReqBody>> for Retry<S, P>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    S::Error: Into<BoxError>,
    P: Policy<Request<ReqBody>, Response<ResBody>, BoxError> + Clone,
    ResBody: 'static,
{
    type Response = Response<ResBody>;
    type Error = BoxError;
    type Future = ResponseFuture<S, P, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        // The policy numbers the retries on the copies it keeps.
        req.extensions_mut().insert(Attempt(0));
        // Tower's `Retry` calls the service readied by `poll_ready` and keeps a clone for the
        // retries, which it readies before each one.
        ResponseFuture::new(self.inner.call(req), self.off)
    }
}
