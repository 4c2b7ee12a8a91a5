use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use portcullis_core::BoxError;
use tokio::time::Instant;
use tower_service::Service;

use crate::future::{Recorder, ResponseFuture};
use crate::store::{BreakerStore, MemoryStore};
use crate::{Circuit, CircuitBreakerBuilder, CircuitBreakerLayer, Classify, DefaultClassifier};

/// Guards one target: while its circuit is open, calls fail fast with
/// [`Unavailable`](portcullis_core::error::Unavailable) and never reach it (see the
/// [crate docs](crate)).
///
/// `poll_ready` is the inner service's: an open circuit does not make the service pending,
/// since a lone breaker must answer at once rather than hold a client for the cooldown.
pub struct CircuitBreaker<S, C = DefaultClassifier, St = MemoryStore> {
    inner: S,
    circuit: Arc<Circuit<C, St>>,
}

impl CircuitBreaker<()> {
    /// A layer for the target `name` with the defaults (see [`CircuitBreakerLayer::new`]).
    pub fn layer(name: impl Into<String>) -> CircuitBreakerLayer {
        CircuitBreakerLayer::new(name)
    }

    /// A builder for a layer (see [`CircuitBreakerBuilder`]).
    pub fn builder() -> CircuitBreakerBuilder {
        CircuitBreakerBuilder::new()
    }
}

impl<S> CircuitBreaker<S> {
    /// Wraps `inner`, the target `name`, with a circuit of its own and the defaults.
    pub fn new(inner: S, name: impl Into<String>) -> Self {
        Self::from_circuit(inner, CircuitBreakerBuilder::new().name(name).circuit())
    }
}

impl<S, C, St> CircuitBreaker<S, C, St> {
    /// Wraps `inner` with an existing circuit.
    pub fn from_circuit(inner: S, circuit: Arc<Circuit<C, St>>) -> Self {
        Self { inner, circuit }
    }

    /// The shared circuit: its state and transition counts.
    pub fn circuit(&self) -> &Arc<Circuit<C, St>> {
        &self.circuit
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

impl<S: Clone, C, St> Clone for CircuitBreaker<S, C, St> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            circuit: self.circuit.clone(),
        }
    }
}

impl<S: fmt::Debug, C, St: BreakerStore> fmt::Debug for CircuitBreaker<S, C, St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("inner", &self.inner)
            .field("circuit", &self.circuit)
            .finish()
    }
}

impl<S, C, St, ReqBody, ResBody> Service<Request<ReqBody>> for CircuitBreaker<S, C, St>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Error: Into<BoxError>,
    C: Classify,
    St: BreakerStore,
{
    type Response = Response<ResBody>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C, St>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        match self.circuit.admit(Instant::now()) {
            // The readied inner service is called in place: nothing needs to own it, and on
            // a refusal it stays ready for the next call.
            Ok(permit) => ResponseFuture::called(
                self.inner.call(req),
                Recorder::new(self.circuit.clone(), permit),
            ),
            Err(unavailable) => ResponseFuture::rejected(unavailable),
        }
    }
}
