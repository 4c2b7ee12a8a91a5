//! [`Circuit`]: the breaker of one target, shared by every service and layer built for it.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use portcullis_core::BuildError;
use portcullis_core::error::Unavailable;
use tokio::time::Instant;

use crate::store::{Admission, BreakerStore, MemoryStore, Permit, State, Transition};
use crate::{BreakerPolicy, CircuitBreakerLayer, Classify, DefaultClassifier, Outcome};

type OnTransition = Box<dyn Fn(&str, &Transition) + Send + Sync>;

/// The circuit breaker of one named target: its policy, classifier and store, and counts of
/// its transitions.
///
/// Every [`CircuitBreaker`](crate::CircuitBreaker) made by one layer, and every clone of
/// them, shares one `Arc<Circuit>`; reach it with `circuit()` on the layer or the service
/// to read the state or count transitions.
pub struct Circuit<C = DefaultClassifier, St = MemoryStore> {
    name: Box<str>,
    message: Box<str>,
    policy: BreakerPolicy,
    classifier: C,
    store: St,
    opened: AtomicU64,
    half_opened: AtomicU64,
    closed: AtomicU64,
    on_transition: Option<OnTransition>,
}

/// How many transitions a circuit made, by the state it entered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Transitions {
    /// Into `Open`, from closed or from a failed probe.
    pub opened: u64,
    /// Into `HalfOpen`: cooldowns that ended with a call to probe the target.
    pub half_opened: u64,
    /// Into `Closed`: probes that succeeded.
    pub closed: u64,
}

impl<C, St> Circuit<C, St> {
    /// The target's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The thresholds.
    pub fn policy(&self) -> &BreakerPolicy {
        &self.policy
    }

    /// The classifier.
    pub fn classifier(&self) -> &C {
        &self.classifier
    }

    /// The store.
    pub fn store(&self) -> &St {
        &self.store
    }

    /// The transitions made so far.
    pub fn transitions(&self) -> Transitions {
        Transitions {
            opened: self.opened.load(Ordering::Relaxed),
            half_opened: self.half_opened.load(Ordering::Relaxed),
            closed: self.closed.load(Ordering::Relaxed),
        }
    }

    fn announce(&self, transition: Option<Transition>) {
        let Some(transition) = transition else {
            return;
        };
        let counter = match transition.to {
            State::Open => &self.opened,
            State::HalfOpen => &self.half_opened,
            State::Closed => &self.closed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if let Some(callback) = &self.on_transition {
            callback(&self.name, &transition);
        }
    }
}

impl<C, St: BreakerStore> Circuit<C, St> {
    /// The state as last stored (see [`BreakerStore::state`]).
    pub fn state(&self) -> State {
        self.store.state()
    }

    /// Asks the store whether a call may go ahead: a permit, or the error to fail fast with.
    pub(crate) fn admit(&self, now: Instant) -> Result<Permit, Unavailable> {
        let (admission, transition) = self.store.check(&self.policy, now);
        self.announce(transition);
        match admission {
            Admission::Allowed(permit) => Ok(permit),
            Admission::Rejected { retry_after } => Err(Unavailable {
                message: self.message.to_string(),
                retry_after,
            }),
        }
    }

    /// Records the outcome of a call let through with `permit`.
    pub(crate) fn record(&self, permit: Permit, outcome: Outcome, retry_after: Option<Duration>) {
        let transition =
            self.store
                .record(&self.policy, Instant::now(), permit, outcome, retry_after);
        self.announce(transition);
    }
}

impl<C, St: BreakerStore> fmt::Debug for Circuit<C, St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Circuit")
            .field("name", &self.name)
            .field("state", &self.state())
            .field("policy", &self.policy)
            .field("transitions", &self.transitions())
            .finish_non_exhaustive()
    }
}

/// Builds a [`CircuitBreakerLayer`]: the target's name, the [`BreakerPolicy`], and optionally a
/// classifier, a store and a transition callback.
///
/// ```
/// use portcullis_breaker::{CircuitBreaker, BreakerPolicy, State};
/// use std::sync::{Arc, atomic::{AtomicUsize, Ordering}};
/// use std::time::Duration;
///
/// let opened = Arc::new(AtomicUsize::new(0));
/// let counter = opened.clone();
/// let layer = CircuitBreaker::builder()
///     .name("openai")
///     .policy(BreakerPolicy::new().consecutive_failures(3).cooldown(Duration::from_secs(10)))
///     .classifier(|status: http::StatusCode| status.is_server_error())
///     .on_transition(move |_name, t| {
///         if t.to == State::Open {
///             counter.fetch_add(1, Ordering::Relaxed);
///         }
///     })
///     .build()
///     .unwrap();
/// assert_eq!(layer.circuit().name(), "openai");
/// assert_eq!(layer.circuit().state(), State::Closed);
/// ```
pub struct CircuitBreakerBuilder<C = DefaultClassifier, St = MemoryStore> {
    name: Box<str>,
    policy: BreakerPolicy,
    classifier: C,
    store: St,
    on_transition: Option<OnTransition>,
}

impl CircuitBreakerBuilder {
    /// A breaker named `target` with the default policy, classifier and an in-memory store.
    pub fn new() -> Self {
        Self {
            name: "target".into(),
            policy: BreakerPolicy::default(),
            classifier: DefaultClassifier,
            store: MemoryStore::new(),
            on_transition: None,
        }
    }
}

impl Default for CircuitBreakerBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl<C, St> CircuitBreakerBuilder<C, St> {
    /// Names the target, for messages (`circuit open for NAME`) and callbacks.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into().into_boxed_str();
        self
    }

    /// Sets the thresholds.
    pub fn policy(mut self, policy: BreakerPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Sets what counts as a failure.
    pub fn classifier<C2: Classify>(self, classifier: C2) -> CircuitBreakerBuilder<C2, St> {
        CircuitBreakerBuilder {
            name: self.name,
            policy: self.policy,
            classifier,
            store: self.store,
            on_transition: self.on_transition,
        }
    }

    /// Sets where the state lives.
    pub fn store<St2: BreakerStore>(self, store: St2) -> CircuitBreakerBuilder<C, St2> {
        CircuitBreakerBuilder {
            name: self.name,
            policy: self.policy,
            classifier: self.classifier,
            store,
            on_transition: self.on_transition,
        }
    }

    /// Calls `f` with the target's name on every transition, on the task whose call caused
    /// it (keep it short: a counter, a log line).
    pub fn on_transition<F>(mut self, f: F) -> Self
    where
        F: Fn(&str, &Transition) + Send + Sync + 'static,
    {
        self.on_transition = Some(Box::new(f));
        self
    }

    /// The shared circuit.
    ///
    /// # Errors
    /// A policy setting out of range (see [`BreakerPolicy::check`]), at its name.
    pub fn into_circuit(self) -> Result<Arc<Circuit<C, St>>, BuildError> {
        self.policy.check()?;
        Ok(self.circuit())
    }

    /// The circuit, for settings already checked.
    pub(crate) fn circuit(self) -> Arc<Circuit<C, St>> {
        Arc::new(Circuit {
            message: format!("circuit open for {}", self.name).into_boxed_str(),
            name: self.name,
            policy: self.policy,
            classifier: self.classifier,
            store: self.store,
            opened: AtomicU64::new(0),
            half_opened: AtomicU64::new(0),
            closed: AtomicU64::new(0),
            on_transition: self.on_transition,
        })
    }

    /// The layer: every service it wraps shares this one circuit.
    ///
    /// # Errors
    /// A policy setting out of range (see [`BreakerPolicy::check`]), at its name:
    /// `failure_rate`, `window` or `probes`.
    pub fn build(self) -> Result<CircuitBreakerLayer<C, St>, BuildError> {
        self.into_circuit().map(CircuitBreakerLayer::from_circuit)
    }
}

impl<C: fmt::Debug, St: fmt::Debug> fmt::Debug for CircuitBreakerBuilder<C, St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerBuilder")
            .field("name", &self.name)
            .field("policy", &self.policy)
            .field("classifier", &self.classifier)
            .field("store", &self.store)
            .field("on_transition", &self.on_transition.is_some())
            .finish()
    }
}
