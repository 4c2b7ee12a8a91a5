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
//! # The record of attempts
//!
//! The budget also records every attempt a leaf makes, as an [`AttemptRecord`]: the
//! [`TargetPath`] the request took to the leaf, the provider (named on the layer with
//! [`SpendAttemptLayer::provider`], else the one its response names), the status or the class
//! of error ([`AttemptOutcome`]), and the time to the response head (tokio's clock, so tests
//! with paused time read exact durations). An attempt dropped before its answer (a timeout
//! above it, the client gone) is recorded as [`AttemptOutcome::Cancelled`]. Every response a
//! leaf returns carries, in its [`ResponseFacts`], [`Attempts`]: a handle on the whole
//! request's record, so the response that answers the request shows every attempt, those of
//! other targets included. A layer that must also see the attempts of a request that ends in
//! an error (no response, no facts) puts the budget in the request itself and keeps
//! [`AttemptBudget::attempts`] (the gateway's server does, for its log line; the tag layer
//! reads it for its span).
//!
//! The cost, per attempt: two clock readings, one uncontended lock (a request's attempts run
//! one after another, so one `Mutex` per request is never waited on) and a push into the
//! budget's own allocation (four attempts inline, so the usual request allocates nothing
//! more). A request without a budget records nothing.
//!
//! ```
//! use portcullis_core::attempts::AttemptOutcome;
//! use portcullis_core::context::TargetPath;
//! use portcullis_core::facts::ResponseFacts;
//! use portcullis_core::{AttemptLimitLayer, BoxError, SpendAttemptLayer};
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let provider = service_fn(|_req: http::Request<()>| async {
//!     Ok::<_, BoxError>(http::Response::builder().status(503).body(()).unwrap())
//! });
//! let leaf = SpendAttemptLayer::new().provider("openai").layer(provider);
//! let stack = AttemptLimitLayer::new(5).layer(service_fn(move |mut req: http::Request<()>| {
//!     let leaf = leaf.clone();
//!     TargetPath::enter(&mut req, 1);
//!     leaf.oneshot(req)
//! }));
//! let response = stack.oneshot(http::Request::new(())).await.unwrap();
//! let attempts = &ResponseFacts::get(&response).unwrap().attempts;
//! assert_eq!(attempts.len(), 1);
//! assert_eq!(attempts.to_vec()[0].outcome, AttemptOutcome::Status(http::StatusCode::SERVICE_UNAVAILABLE));
//! assert_eq!(attempts.to_string(), "targets[1]/openai:503:0ms");
//! # }
//! ```
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
//!         Ok::<_, BoxError>(http::Response::new(outcomes))
//!     }
//! }));
//! let outcomes = stack.ready().await.unwrap().call(http::Request::new(())).await.unwrap();
//! assert_eq!(outcomes.into_body(), [true, true, false]);
//! # let _ = AttemptsExhausted { limit: 2 };
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, MutexGuard};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use pin_project_lite::pin_project;
use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

use crate::BoxError;
use crate::context::{Ascii, AttemptBudget, AttemptLog, BudgetState, TargetPath};
use crate::error::{
    AttemptsExhausted, HttpError, UpstreamError, UpstreamErrorKind, UpstreamTimeout,
};
use crate::facts::ResponseFacts;

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

/// Spends one attempt of the request's [`AttemptBudget`] before each call, and records it
/// (see the [module docs](self)).
#[derive(Clone, Debug, Default)]
pub struct SpendAttemptLayer {
    provider: Option<Arc<str>>,
}

impl SpendAttemptLayer {
    /// The layer.
    pub fn new() -> Self {
        Self { provider: None }
    }

    /// Names the provider in the record of each attempt, failed ones included. Without a
    /// name, an attempt names the provider its response's [`ResponseFacts`] name, if any.
    pub fn provider(mut self, name: impl Into<Arc<str>>) -> Self {
        self.provider = Some(name.into());
        self
    }
}

impl<S> Layer<S> for SpendAttemptLayer {
    type Service = SpendAttempt<S>;

    fn layer(&self, inner: S) -> SpendAttempt<S> {
        SpendAttempt {
            inner,
            provider: self.provider.clone(),
        }
    }
}

/// Takes one attempt from the request's [`AttemptBudget`] before calling the inner service,
/// and records it there; answers [`AttemptsExhausted`] without calling it when none is left.
#[derive(Clone, Debug)]
pub struct SpendAttempt<S> {
    inner: S,
    provider: Option<Arc<str>>,
}

impl<S> SpendAttempt<S> {
    /// Spends one attempt of each request's budget before calling `inner`.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            provider: None,
        }
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

impl<S, B, RB> Service<Request<B>> for SpendAttempt<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Error: Into<BoxError>,
{
    type Response = Response<RB>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let Some(budget) = req.extensions().get::<AttemptBudget>() else {
            return ResponseFuture::inner(self.inner.call(req), None);
        };
        if !budget.try_spend() {
            // The inner service stays ready, unused, for the next call.
            return ResponseFuture::exhausted(budget.limit());
        }
        let recording = Recording {
            budget: budget.share(),
            target: req
                .extensions()
                .get::<TargetPath>()
                .copied()
                .unwrap_or_default(),
            provider: self.provider.clone(),
            start: Instant::now(),
        };
        ResponseFuture::inner(self.inner.call(req), Some(recording))
    }
}

pin_project! {
    /// The future of [`SpendAttempt`]: the inner call, or the answer that no attempt is left.
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
        // The attempt in flight: settled when the call ends, or as `Cancelled` when this
        // future is dropped before that.
        recording: Option<Recording>,
    }

    impl<F> PinnedDrop for ResponseFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(recording) = this.project().recording.take() {
                recording.settle(AttemptOutcome::Cancelled, None);
            }
        }
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
            recording: None,
        }
    }

    fn inner(future: F, recording: Option<Recording>) -> Self {
        Self {
            state: State::Inner { future },
            recording,
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

impl<F, RB, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response<RB>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match this.state.project() {
            StateProj::Exhausted { limit } => {
                Poll::Ready(Err(AttemptsExhausted { limit: *limit }.into()))
            }
            StateProj::Inner { future } => {
                let mut result = ready!(future.poll(cx)).map_err(Into::into);
                if let Some(recording) = this.recording.take() {
                    match &mut result {
                        Ok(response) => {
                            let outcome = AttemptOutcome::Status(response.status());
                            let facts = ResponseFacts::get_mut(response);
                            // The budget's handle moves from the recording into the facts.
                            let attempts = recording.settle(outcome, facts.provider.as_ref());
                            facts.attempts = attempts;
                        }
                        Err(err) => {
                            recording.settle(AttemptOutcome::of_error(err), None);
                        }
                    }
                }
                Poll::Ready(result)
            }
        }
    }
}

/// One attempt in flight: what is known of it before its answer.
struct Recording {
    budget: Arc<BudgetState>,
    target: TargetPath,
    /// The layer's provider name; else the answer's, when it names one.
    provider: Option<Arc<str>>,
    start: Instant,
}

impl Recording {
    /// Appends the attempt to the request's record (one clock reading, one uncontended lock)
    /// and hands back the record, reusing this recording's reference to it.
    fn settle(self, outcome: AttemptOutcome, answered_by: Option<&Arc<str>>) -> Attempts {
        let record = AttemptRecord {
            target: self.target,
            provider: self.provider.or_else(|| answered_by.cloned()),
            outcome,
            duration: self.start.elapsed(),
        };
        lock(&self.budget).push(record);
        Attempts::of(self.budget)
    }
}

fn lock(state: &BudgetState) -> MutexGuard<'_, AttemptLog> {
    // A panic while the record was held leaves whole records: keep reading them.
    state.log.lock().unwrap_or_else(|e| e.into_inner())
}

/// One upstream attempt: where it went, what came of it, and how long it took.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AttemptRecord {
    /// The path of the target the attempt went to (the root when no multi-target layer chose
    /// one).
    pub target: TargetPath,
    /// The provider, when known.
    pub provider: Option<Arc<str>>,
    /// The status of the answer, or the class of error.
    pub outcome: AttemptOutcome,
    /// The time from the call to the response head (or the error, or the drop).
    pub duration: Duration,
}

/// What came of one upstream attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AttemptOutcome {
    /// An answer with this status (including one carried as an [`HttpError`]).
    Status(StatusCode),
    /// No answer in time ([`UpstreamTimeout`]).
    Timeout,
    /// The connection could not be opened ([`UpstreamErrorKind::Connect`]).
    Connect,
    /// The connection broke or spoke bad HTTP ([`UpstreamErrorKind::Protocol`]).
    Protocol,
    /// Any other error.
    Error,
    /// No answer: the call was dropped before its response head (a per-attempt or request
    /// timeout above it, the client gone), or it is still in flight.
    Cancelled,
}

impl AttemptOutcome {
    /// The outcome an error stands for.
    pub fn of_error(err: &BoxError) -> Self {
        if let Some(e) = err.downcast_ref::<HttpError>() {
            Self::Status(e.status())
        } else if err.is::<UpstreamTimeout>() {
            Self::Timeout
        } else if let Some(e) = err.downcast_ref::<UpstreamError>() {
            match e.kind() {
                UpstreamErrorKind::Connect => Self::Connect,
                UpstreamErrorKind::Protocol => Self::Protocol,
            }
        } else {
            Self::Error
        }
    }

    /// The status, for an answer.
    pub fn status(self) -> Option<StatusCode> {
        match self {
            Self::Status(status) => Some(status),
            _ => None,
        }
    }
}

impl AttemptOutcome {
    fn as_str(&self) -> &str {
        match self {
            Self::Status(status) => status.as_str(),
            Self::Timeout => "timeout",
            Self::Connect => "connect",
            Self::Protocol => "protocol",
            Self::Error => "error",
            Self::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for AttemptOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `targets[0]/openai:503:12ms`: the path (left out at the root), `/` and the provider when
/// known (`-` when neither is), the outcome, the whole milliseconds.
///
/// Written in pieces, without `write!`: the records are displayed in every request's span and
/// log line.
impl fmt::Display for AttemptRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.target.is_root(), &self.provider) {
            (false, Some(provider)) => {
                fmt::Display::fmt(&self.target, f)?;
                f.write_str("/")?;
                f.write_str(provider)?;
            }
            (false, None) => fmt::Display::fmt(&self.target, f)?,
            (true, Some(provider)) => f.write_str(provider)?,
            (true, None) => f.write_str("-")?,
        }
        // `:`, the outcome (at most 9 bytes), `:`, up to 20 digits, `ms`.
        let mut tail = Ascii::<33>::new();
        tail.push(":");
        tail.push(self.outcome.as_str());
        tail.push(":");
        match u64::try_from(self.duration.as_millis()) {
            Ok(millis) => tail.push_u64(millis),
            // Past 584 million years: not worth a faster path.
            Err(_) => return write!(f, "{}{}ms", tail.as_str(), self.duration.as_millis()),
        }
        tail.push("ms");
        f.write_str(tail.as_str())
    }
}

/// The upstream attempts of one request, in the order they ended: a handle on the request's
/// [`AttemptBudget`] (cloning it copies nothing), empty when the request had none.
///
/// Displayed as the records joined by commas:
/// `targets[0]/a:503:12ms,targets[0]/a:503:9ms,targets[1]/b:200:20ms`.
#[derive(Clone, Default)]
pub struct Attempts {
    state: Option<Arc<BudgetState>>,
}

impl Attempts {
    pub(crate) fn of(state: Arc<BudgetState>) -> Self {
        Self { state: Some(state) }
    }

    /// Runs `f` over the records (the record is locked meanwhile: keep `f` short).
    pub fn with<R>(&self, f: impl FnOnce(&[AttemptRecord]) -> R) -> R {
        match &self.state {
            Some(state) => f(&lock(state)),
            None => f(&[]),
        }
    }

    /// A copy of the records.
    pub fn to_vec(&self) -> Vec<AttemptRecord> {
        self.with(<[AttemptRecord]>::to_vec)
    }

    /// How many attempts were made.
    pub fn len(&self) -> usize {
        self.with(<[AttemptRecord]>::len)
    }

    /// Whether none was made.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl PartialEq for Attempts {
    fn eq(&self, other: &Self) -> bool {
        match (&self.state, &other.state) {
            (Some(a), Some(b)) if Arc::ptr_eq(a, b) => true,
            // Copied out first: two handles are never locked at once.
            _ => self.to_vec() == other.to_vec(),
        }
    }
}

impl fmt::Debug for Attempts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.with(|records| f.debug_list().entries(records).finish())
    }
}

impl fmt::Display for Attempts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.with(|records| {
            for (i, record) in records.iter().enumerate() {
                if i > 0 {
                    f.write_str(",")?;
                }
                record.fmt(f)?;
            }
            Ok(())
        })
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
        impl Service<Request<()>, Response = Response<()>, Error = BoxError, Future: Send> + Clone,
    ) {
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = calls.clone();
        let svc = service_fn(move |_req: Request<()>| {
            seen.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, BoxError>(Response::new(())) }
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
            Ok::<_, BoxError>(Response::new(
                req.extensions().get::<AttemptBudget>().unwrap().limit(),
            ))
        }));
        let mut outer = AttemptLimitLayer::new(2).layer(inner);
        let limit = outer
            .ready()
            .await
            .unwrap()
            .call(Request::new(()))
            .await
            .unwrap();
        assert_eq!(*limit.body(), 2);
    }

    #[tokio::test]
    async fn readiness_comes_from_inside_and_a_refusal_leaves_it_ready() {
        let (mock, mut handle) = mock::pair::<Request<()>, Response<()>>();
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
        send.send_response(Response::new(()));
        call.await.unwrap();
    }

    #[test]
    fn records_read_as_write_gave_them() {
        let mut deep = TargetPath::root();
        for i in [1, 65535, 0] {
            deep.push(i);
        }
        let outcomes = [
            AttemptOutcome::Status(StatusCode::SERVICE_UNAVAILABLE),
            AttemptOutcome::Timeout,
            AttemptOutcome::Connect,
            AttemptOutcome::Protocol,
            AttemptOutcome::Error,
            AttemptOutcome::Cancelled,
        ];
        let durations = [
            Duration::ZERO,
            Duration::from_micros(12_999),
            Duration::from_secs(86_400),
            Duration::MAX,
        ];
        for target in [TargetPath::root(), deep] {
            for provider in [None, Some(Arc::<str>::from("openai"))] {
                for outcome in outcomes {
                    for duration in durations {
                        let record = AttemptRecord {
                            target,
                            provider: provider.clone(),
                            outcome,
                            duration,
                        };
                        let place = match (target.is_root(), &provider) {
                            (false, Some(p)) => format!("{target}/{p}"),
                            (false, None) => target.to_string(),
                            (true, Some(p)) => p.to_string(),
                            (true, None) => "-".to_owned(),
                        };
                        let expected = format!("{place}:{outcome}:{}ms", duration.as_millis());
                        assert_eq!(record.to_string(), expected);
                    }
                }
            }
        }
    }

    fn poll_ready_now<S: Service<Request<()>>>(svc: &mut S) -> Poll<Result<(), S::Error>> {
        let waker = std::task::Waker::noop();
        svc.poll_ready(&mut Context::from_waker(waker))
    }
}
