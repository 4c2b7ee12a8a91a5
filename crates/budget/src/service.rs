//! [`Budget`]: the service.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use portcullis_core::error::to_http_error;
use portcullis_core::{Body, BoxError, BufferedBody, RequestView};
use tower_service::Service;

use crate::future::ResponseFuture;
use crate::layer::{BudgetBuilder, BudgetLayer};
use crate::limits::{Decision, Limits, Planned};
use crate::store::{LimitStore, MemoryStore, Reserve};
use crate::ticket::Ticket;

/// Enforces budgets and rate limits around an LLM service (see the [crate docs](crate)).
///
/// `poll_ready` is the inner service's. A request that a limit refuses is answered at once
/// (402, 429, 400 or 503) and leaves the inner service ready for the next one; with a store
/// that needs I/O, the readied service moves into the future while a fresh clone takes its
/// place, as tower asks.
pub struct Budget<S, St = MemoryStore> {
    inner: S,
    limits: Arc<Limits<St>>,
}

impl Budget<()> {
    /// A builder for a layer (see [`BudgetBuilder`]).
    pub fn builder() -> BudgetBuilder {
        BudgetBuilder::new()
    }
}

impl<S, St> Budget<S, St> {
    /// Wraps `inner` with existing limits.
    pub fn from_limits(inner: S, limits: Arc<Limits<St>>) -> Self {
        Self { inner, limits }
    }

    /// A layer with these limits.
    pub fn layer(limits: Arc<Limits<St>>) -> BudgetLayer<St> {
        BudgetLayer::from_limits(limits)
    }

    /// The shared limits.
    pub fn limits(&self) -> &Arc<Limits<St>> {
        &self.limits
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The wrapped service, by value.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, St> Clone for Budget<S, St> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            limits: self.limits.clone(),
        }
    }
}

impl<S: fmt::Debug, St: fmt::Debug> fmt::Debug for Budget<S, St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Budget")
            .field("inner", &self.inner)
            .field("limits", &self.limits)
            .finish()
    }
}

impl<S, St> Service<Request<BufferedBody>> for Budget<S, St>
where
    S: Service<Request<BufferedBody>, Response = Response<Body>> + Clone,
    S::Error: Into<BoxError>,
    St: LimitStore,
{
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = ResponseFuture<S, St>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<BufferedBody>) -> Self::Future {
        let view = match req.extensions().get::<Arc<RequestView>>() {
            Some(view) => Some(view.clone()),
            None if req.body().bytes().is_empty() => None,
            None => match RequestView::parse(req.body().bytes().clone()) {
                Ok(view) => {
                    let view = Arc::new(view);
                    req.extensions_mut().insert(view.clone());
                    Some(view)
                }
                Err(invalid) => {
                    let err: BoxError = invalid.into();
                    return ResponseFuture::answered(to_http_error(&err).to_response());
                }
            },
        };
        let planned = self
            .limits
            .plan(req.headers(), req.extensions(), view.as_deref());
        let (reservation, plan) = match planned {
            Planned::Free => return ResponseFuture::calling(self.inner.call(req), None),
            Planned::Answer(response) => return ResponseFuture::answered(response),
            Planned::Reserve(reservation, plan) => (reservation, plan),
        };
        match self.limits.store().reserve(&reservation) {
            Reserve::Ready(result) => match self.limits.decide(&reservation, &plan, result) {
                Decision::Admitted {
                    standings,
                    fallback,
                } => {
                    let ticket =
                        Ticket::new(self.limits.clone(), reservation, plan, standings, fallback);
                    // Called in place: the inner service was readied by `poll_ready`.
                    ResponseFuture::calling(self.inner.call(req), Some(ticket))
                }
                Decision::Answer(response) => ResponseFuture::answered(response),
            },
            Reserve::Pending(reserve) => {
                let fresh = self.inner.clone();
                let ready = std::mem::replace(&mut self.inner, fresh);
                ResponseFuture::reserving(
                    reserve,
                    ready,
                    req,
                    self.limits.clone(),
                    reservation,
                    plan,
                )
            }
        }
    }
}
