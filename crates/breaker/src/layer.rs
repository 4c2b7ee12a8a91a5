use std::fmt;
use std::sync::Arc;

use tower_layer::Layer;

use crate::store::{BreakerStore, MemoryStore};
use crate::{Circuit, CircuitBreaker, CircuitBreakerBuilder, DefaultClassifier};

/// Applies a [`CircuitBreaker`] to a service.
///
/// A layer *is* one target's circuit: every service it wraps, and every clone of those,
/// shares it. Build one layer per target.
pub struct CircuitBreakerLayer<C = DefaultClassifier, St = MemoryStore> {
    circuit: Arc<Circuit<C, St>>,
}

impl CircuitBreakerLayer {
    /// A breaker for the target `name` with the default [`BreakerPolicy`](crate::BreakerPolicy), classifier
    /// and in-memory store.
    pub fn new(name: impl Into<String>) -> Self {
        // The defaults are in range: nothing to check.
        CircuitBreakerLayer::from_circuit(CircuitBreakerBuilder::new().name(name).circuit())
    }

    /// A builder, to set the policy, classifier, store or transition callback.
    pub fn builder() -> CircuitBreakerBuilder {
        CircuitBreakerBuilder::new()
    }
}

impl<C, St> CircuitBreakerLayer<C, St> {
    /// A layer over an existing circuit (several layers may share one).
    pub fn from_circuit(circuit: Arc<Circuit<C, St>>) -> Self {
        Self { circuit }
    }

    /// The shared circuit: its state and transition counts.
    pub fn circuit(&self) -> &Arc<Circuit<C, St>> {
        &self.circuit
    }
}

impl<C, St> Clone for CircuitBreakerLayer<C, St> {
    fn clone(&self) -> Self {
        Self {
            circuit: self.circuit.clone(),
        }
    }
}

impl<C, St: BreakerStore> fmt::Debug for CircuitBreakerLayer<C, St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerLayer")
            .field("circuit", &self.circuit)
            .finish()
    }
}

impl<S, C, St> Layer<S> for CircuitBreakerLayer<C, St> {
    type Service = CircuitBreaker<S, C, St>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreaker::from_circuit(inner, self.circuit.clone())
    }
}
