use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use http::{Request, Response};
use portcullis_core::{Body, BoxError, BoxTarget, BufferedBody};
use tower::ServiceExt;
use tower_service::Service;

use crate::error::BuildError;
use crate::future::ResponseFuture;
use crate::pick::Picker;
use crate::strategy::{Strategy, mix};

/// One target of a balancer: a name, a relative weight and the service that answers.
pub struct Target<S> {
    name: Arc<str>,
    weight: f64,
    service: S,
}

impl<S> Target<S> {
    /// Target `name` served by `service`, of weight 1.
    ///
    /// Names identify targets for sticky keys (a key follows the name, not the position) and
    /// in errors; they must be unique within a balancer.
    pub fn new(name: impl Into<Arc<str>>, service: S) -> Self {
        Self {
            name: name.into(),
            weight: 1.0,
            service,
        }
    }

    /// Sets the relative weight: finite and >= 0; 0 means never chosen.
    pub fn weight(mut self, weight: f64) -> Self {
        self.weight = weight;
        self
    }
}

impl Target<BoxTarget> {
    /// Target `name` served by any service, boxed so targets of different types mix.
    pub fn boxed<T>(name: impl Into<Arc<str>>, service: T) -> Self
    where
        T: Service<Request<BufferedBody>, Response = Response<Body>>
            + Clone
            + Send
            + Sync
            + 'static,
        T::Error: Into<BoxError>,
        T::Future: Send + 'static,
    {
        Self::new(name, BoxTarget::new(service.map_err(Into::into)))
    }
}

impl<S> fmt::Debug for Target<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target")
            .field("name", &self.name)
            .field("weight", &self.weight)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Balance`]: targets, a strategy, optionally a seed.
pub struct BalanceBuilder<S> {
    targets: Vec<Target<S>>,
    strategy: Strategy,
    seed: Option<u64>,
}

impl<S> BalanceBuilder<S> {
    /// Adds a target.
    pub fn target(mut self, target: Target<S>) -> Self {
        self.targets.push(target);
        self
    }

    /// Adds targets.
    pub fn targets(mut self, targets: impl IntoIterator<Item = Target<S>>) -> Self {
        self.targets.extend(targets);
        self
    }

    /// Sets the strategy ([`Strategy::Weighted`] by default).
    pub fn strategy(mut self, strategy: Strategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// Seeds the random draws, for reproducible choices (tests, simulations). Without a
    /// seed, each balancer draws its own at random.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Checks the configuration and builds the balancer.
    ///
    /// # Errors
    /// No targets; more than 65,536 targets; a weight negative, NaN or infinite; every
    /// weight 0; two targets of the same name; a peak-EWMA decay of zero. The error names
    /// the field, e.g. `targets[1].weight: must be >= 0`.
    pub fn build(self) -> Result<Balance<S>, BuildError> {
        if self.targets.is_empty() {
            return Err(BuildError::at("targets", "at least one target is required"));
        }
        // Indices travel as u16 in target paths.
        if self.targets.len() > usize::from(u16::MAX) + 1 {
            return Err(BuildError::at("targets", "at most 65536 targets"));
        }
        for (i, target) in self.targets.iter().enumerate() {
            let w = target.weight;
            if w.is_nan() {
                return Err(BuildError::at(
                    format!("targets[{i}].weight"),
                    "must be a number, not NaN",
                ));
            }
            if w.is_infinite() {
                return Err(BuildError::at(
                    format!("targets[{i}].weight"),
                    "must be finite",
                ));
            }
            if w < 0.0 {
                return Err(BuildError::at(
                    format!("targets[{i}].weight"),
                    "must be >= 0",
                ));
            }
            if let Some(first) = self.targets[..i].iter().position(|t| t.name == target.name) {
                return Err(BuildError::at(
                    format!("targets[{i}].name"),
                    format!("duplicate of targets[{first}] ({:?})", &*target.name),
                ));
            }
        }
        if self.targets.iter().all(|t| t.weight == 0.0) {
            return Err(BuildError::at(
                "targets",
                "every weight is 0: at least one target must have weight > 0",
            ));
        }
        // A sum of finite weights can still overflow to infinity.
        if !self
            .targets
            .iter()
            .map(|t| t.weight)
            .sum::<f64>()
            .is_finite()
        {
            return Err(BuildError::at("targets", "the weights' sum must be finite"));
        }
        if let Strategy::PeakEwma(settings) = &self.strategy
            && settings.decay.is_zero()
        {
            return Err(BuildError::at("strategy.decay", "must be > 0"));
        }

        let mut names = Vec::with_capacity(self.targets.len());
        let mut weights = Vec::with_capacity(self.targets.len());
        let mut services = Vec::with_capacity(self.targets.len());
        for target in self.targets {
            names.push(target.name);
            weights.push(target.weight);
            services.push(target.service);
        }
        let seed = self.seed.unwrap_or_else(|| fastrand::u64(..));
        let shared = Arc::new(Shared {
            picker: Picker::new(names.into(), weights.into(), self.strategy),
            services: services.into(),
            seeds: AtomicU64::new(seed),
        });
        Ok(Balance {
            rng: shared.next_rng(),
            shared,
        })
    }
}

impl<S> fmt::Debug for BalanceBuilder<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BalanceBuilder")
            .field("targets", &self.targets)
            .field("strategy", &self.strategy)
            .field("seed", &self.seed)
            .finish()
    }
}

/// Chooses one of its targets for each request (see the [crate docs](crate)).
///
/// Built with [`Balance::builder`]. Its `poll_ready` is always ready: which target is
/// readied depends on the request, so the response future drives the chosen target ready
/// before calling it, and draws another when the choice is not ready or answers
/// [`Unavailable`](portcullis_core::error::Unavailable). Clones share the targets and the
/// load counters; each clone has its own random stream.
pub struct Balance<S> {
    shared: Arc<Shared<S>>,
    rng: fastrand::Rng,
}

/// What clones and futures share.
pub(crate) struct Shared<S> {
    pub(crate) picker: Picker,
    /// The targets' services, cloned for each call and never called themselves: no lock,
    /// since a clone needs only `&S`.
    services: Box<[S]>,
    /// Seeds for the clones' random streams.
    seeds: AtomicU64,
}

impl<S: Clone> Shared<S> {
    pub(crate) fn service(&self, index: usize) -> S {
        self.services[index].clone()
    }
}

impl<S> Shared<S> {
    /// A random stream of its own for a new clone: seeded in sequence from the builder's
    /// seed, so a seeded balancer and its clones are reproducible.
    fn next_rng(&self) -> fastrand::Rng {
        let seed = self
            .seeds
            .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed);
        fastrand::Rng::with_seed(mix(seed))
    }
}

impl<S> Balance<S> {
    /// Starts building a balancer.
    pub fn builder() -> BalanceBuilder<S> {
        BalanceBuilder {
            targets: Vec::new(),
            strategy: Strategy::default(),
            seed: None,
        }
    }

    /// The number of targets.
    pub fn len(&self) -> usize {
        self.shared.picker.len()
    }

    /// Whether there are no targets (never, for a built balancer).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The name of target `index`.
    ///
    /// # Panics
    /// If there is no such target.
    pub fn name(&self, index: usize) -> &str {
        &self.shared.picker.names[index]
    }

    /// The weight of target `index`.
    ///
    /// # Panics
    /// If there is no such target.
    pub fn weight(&self, index: usize) -> f64 {
        self.shared.picker.weights[index]
    }

    /// The strategy.
    pub fn strategy(&self) -> &Strategy {
        &self.shared.picker.strategy
    }

    /// The requests in flight to target `index`, counted from the call to the end of the
    /// response body; `None` for the strategies that do not count them
    /// ([`Strategy::Weighted`], [`Strategy::Sticky`]).
    ///
    /// # Panics
    /// If there is no such target.
    pub fn in_flight(&self, index: usize) -> Option<usize> {
        assert!(index < self.len(), "no target {index}");
        let loads = self.shared.picker.loads.as_deref()?;
        Some(loads.in_flight(index))
    }

    /// The target a call with `req` would try first, were it ready. Draws from this
    /// balancer's random stream, as a call does.
    pub fn pick(&mut self, req: &Request<BufferedBody>) -> usize {
        let key = self.shared.picker.key(req);
        self.shared.picker.first(&mut self.rng, key)
    }
}

impl<S> Clone for Balance<S> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            rng: self.shared.next_rng(),
        }
    }
}

impl<S> fmt::Debug for Balance<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let picker = &self.shared.picker;
        f.debug_struct("Balance")
            .field("targets", &picker.names)
            .field("weights", &picker.weights)
            .field("strategy", &picker.strategy)
            .finish()
    }
}

impl<S> Service<Request<BufferedBody>> for Balance<S>
where
    S: Service<Request<BufferedBody>, Response = Response<Body>> + Clone,
    S::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = BoxError;
    type Future = ResponseFuture<S, S::Future>;

    /// Always ready: the targets are driven ready in the response future, once the request
    /// has said which one to choose. A balancer never holds a caller back while any target
    /// could take the request.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<BufferedBody>) -> Self::Future {
        let picker = &self.shared.picker;
        let key = picker.key(&req);
        let index = picker.first(&mut self.rng, key);
        let service = self.shared.service(index);
        ResponseFuture::new(
            self.shared.clone(),
            req,
            self.rng.fork(),
            key,
            index,
            service,
        )
    }
}
