//! A whole request's cap on upstream attempts, across every retry and fallback.
//!
//! Each retry layer and each fallback counts only its own tries, so a tree multiplies them: 330
//! fallback targets with 10 retries each is 3,630 upstream calls for one request. Two tiny
//! layers bound the product:
//!
//! - [`AttemptLimitLayer`], at the top of a stack, gives each request an
//!   [`AttemptBudget`] of `limit` attempts (unless the request already carries one, so an
//!   outer limit wins).
//! - [`SpendAttemptLayer`], just above each provider, takes one attempt before calling it, and
//!   once none is left answers [`AttemptsExhausted`] without calling it. That error is final:
//!   retry does not retry it, fallback does not move on from it, a circuit breaker does not
//!   count it against its target.
//!
//! The layers that make more tries read the same budget first, so the client normally gets the
//! last real answer, not that error: a retry layer does not retry once the budget has no
//! attempt left, and a fallback does not move on; each returns the last upstream response or
//! error as it would when its own tries run out (one atomic load,
//! [`AttemptBudget::remaining`]). [`AttemptsExhausted`] stays the backstop for a try that
//! nothing checked before, such as a load balancer's re-draw.
//!
//! A request without a budget passes [`SpendAttempt`] untouched.
//!
//! ```
//! use portcullis_core::error::AttemptsExhausted;
//! use portcullis_core::{AttemptLimitLayer, BoxError, SpendAttemptLayer};
//! use tower::{Layer, Service, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let provider = service_fn(|_req: http::Request<()>| async {
//!     Ok::<_, BoxError>(http::Response::new(()))
//! });
//! // Three tries of one leaf (as a retry or a fallback would make them) under a limit of 2.
//! let leaf = SpendAttemptLayer::new().layer(provider);
//! let mut stack = AttemptLimitLayer::new(2).layer(service_fn(move |req: http::Request<()>| {
//!     let mut leaf = leaf.clone();
//!     async move {
//!         let mut outcomes = Vec::new();
//!         for _ in 0..3 {
//!             let mut copy = http::Request::new(());
//!             *copy.extensions_mut() = req.extensions().clone();
//!             outcomes.push(leaf.ready().await?.call(copy).await.is_ok());
//!         }
//!         Ok::<_, BoxError>(outcomes)
//!     }
//! }));
//! let outcomes = stack.ready().await.unwrap().call(http::Request::new(())).await.unwrap();
//! assert_eq!(outcomes, [true, true, false]);
//! # let _ = AttemptsExhausted { limit: 2 };
//! # }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Request;
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::BoxError;
use crate::context::AttemptBudget;
use crate::error::AttemptsExhausted;

/// Gives each request an [`AttemptBudget`] of `limit` upstream attempts (see the
/// [module docs](self)).
#[derive(Clone, Copy, Debug)]
pub struct AttemptLimitLayer {
    limit: u32,
}

impl AttemptLimitLayer {
    /// A layer that allows each request `limit` upstream attempts.
    pub fn new(limit: u32) -> Self {
        Self { limit }
    }
}

impl<S> Layer<S> for AttemptLimitLayer {
    type Service = AttemptLimit<S>;

    fn layer(&self, inner: S) -> AttemptLimit<S> {
        AttemptLimit {
            inner,
            limit: self.limit,
        }
    }
}

/// Puts an [`AttemptBudget`] in each request's extensions, unless one is there already.
#[derive(Clone, Debug)]
pub struct AttemptLimit<S> {
    inner: S,
    limit: u32,
}

impl<S> AttemptLimit<S> {
    /// Allows each request through `inner` `limit` upstream attempts.
    pub fn new(inner: S, limit: u32) -> Self {
        Self { inner, limit }
    }

    /// A layer that allows each request `limit` upstream attempts.
    pub fn layer(limit: u32) -> AttemptLimitLayer {
        AttemptLimitLayer::new(limit)
    }

    /// A reference to the inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B> Service<Request<B>> for AttemptLimit<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> S::Future {
        if req.extensions().get::<AttemptBudget>().is_none() {
            req.extensions_mut().insert(AttemptBudget::new(self.limit));
        }
        self.inner.call(req)
    }
}

/// Spends one attempt of the request's [`AttemptBudget`] before each call (see the
/// [module docs](self)).
#[derive(Clone, Copy, Debug, Default)]
pub struct SpendAttemptLayer {
    _priv: (),
}

impl SpendAttemptLayer {
    /// The layer.
    pub fn new() -> Self {
        Self { _priv: () }
    }
}

impl<S> Layer<S> for SpendAttemptLayer {
    type Service = SpendAttempt<S>;

    fn layer(&self, inner: S) -> SpendAttempt<S> {
        SpendAttempt { inner }
    }
}

/// Takes one attempt from the request's [`AttemptBudget`] before calling the inner service;
/// answers [`AttemptsExhausted`] without calling it when none is left.
#[derive(Clone, Debug)]
pub struct SpendAttempt<S> {
    inner: S,
}

impl<S> SpendAttempt<S> {
    /// Spends one attempt of each request's budget before calling `inner`.
    pub fn new(inner: S) -> Self {
        Self { inner }
    }

    /// The layer.
    pub fn layer() -> SpendAttemptLayer {
        SpendAttemptLayer::new()
    }

    /// A reference to the inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B> Service<Request<B>> for SpendAttempt<S>
where
    S: Service<Request<B>>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        if let Some(budget) = req.extensions().get::<AttemptBudget>()
            && !budget.try_spend()
        {
            // The inner service stays ready, unused, for the next call.
            return ResponseFuture::exhausted(budget.limit());
        }
        ResponseFuture::inner(self.inner.call(req))
    }
}

pin_project! {
    /// The future of [`SpendAttempt`]: the inner call, or the answer that no attempt is left.
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Exhausted { limit: u32 },
        Inner { #[pin] future: F },
    }
}

impl<F> ResponseFuture<F> {
    fn exhausted(limit: u32) -> Self {
        Self {
            state: State::Exhausted { limit },
        }
    }

    fn inner(future: F) -> Self {
        Self {
            state: State::Inner { future },
        }
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.state {
            State::Exhausted { .. } => "exhausted",
            State::Inner { .. } => "inner",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Exhausted { limit } => {
                Poll::Ready(Err(AttemptsExhausted { limit: *limit }.into()))
            }
            StateProj::Inner { future } => future.poll(cx).map_err(Into::into),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tower::{Layer, Service, ServiceExt, service_fn};
    use tower_test::mock;

    use super::*;

    fn counting() -> (
        Arc<AtomicUsize>,
        impl Service<Request<()>, Response = (), Error = BoxError, Future: Send> + Clone,
    ) {
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = calls.clone();
        let svc = service_fn(move |_req: Request<()>| {
            seen.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, BoxError>(()) }
        });
        (calls, svc)
    }

    #[tokio::test]
    async fn a_spent_budget_answers_without_calling_inside() {
        let (calls, provider) = counting();
        let mut leaf = SpendAttemptLayer::new().layer(provider);
        let mut req = Request::new(());
        req.extensions_mut().insert(AttemptBudget::new(1));
        let copy = || {
            let mut r = Request::new(());
            *r.extensions_mut() = req.extensions().clone();
            r
        };
        leaf.ready().await.unwrap().call(copy()).await.unwrap();
        let err = leaf.ready().await.unwrap().call(copy()).await.unwrap_err();
        assert_eq!(
            err.downcast_ref::<AttemptsExhausted>(),
            Some(&AttemptsExhausted { limit: 1 })
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn without_a_budget_every_call_goes_through() {
        let (calls, provider) = counting();
        let mut leaf = SpendAttemptLayer::new().layer(provider);
        for _ in 0..3 {
            leaf.ready()
                .await
                .unwrap()
                .call(Request::new(()))
                .await
                .unwrap();
        }
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn the_outer_limit_wins() {
        let inner = AttemptLimitLayer::new(9).layer(service_fn(|req: Request<()>| async move {
            Ok::<_, BoxError>(req.extensions().get::<AttemptBudget>().unwrap().limit())
        }));
        let mut outer = AttemptLimitLayer::new(2).layer(inner);
        let limit = outer
            .ready()
            .await
            .unwrap()
            .call(Request::new(()))
            .await
            .unwrap();
        assert_eq!(limit, 2);
    }

    #[tokio::test]
    async fn readiness_comes_from_inside_and_a_refusal_leaves_it_ready() {
        let (mock, mut handle) = mock::pair::<Request<()>, ()>();
        let mut leaf = SpendAttemptLayer::new().layer(mock);
        handle.allow(0);
        assert!(poll_ready_now(&mut leaf).is_pending());
        handle.allow(1);
        assert!(poll_ready_now(&mut leaf).is_ready());
        let mut req = Request::new(());
        req.extensions_mut().insert(AttemptBudget::new(0));
        let err = leaf.call(req).await.unwrap_err();
        assert!(err.is::<AttemptsExhausted>());
        // The allowance was not used: the next call still reaches the mock.
        let call = leaf.call(Request::new(()));
        let (_, send) = handle.next_request().await.unwrap();
        send.send_response(());
        call.await.unwrap();
    }

    fn poll_ready_now<S: Service<Request<()>>>(svc: &mut S) -> Poll<Result<(), S::Error>> {
        let waker = std::task::Waker::noop();
        svc.poll_ready(&mut Context::from_waker(waker))
    }
}
