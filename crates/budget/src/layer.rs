//! [`BudgetLayer`] and its builder.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use portcullis_core::BuildError;
use tower_layer::Layer;

use crate::clock::Clock;
use crate::config::{LimitsConfig, OnStoreError, Unpriced};
use crate::limits::{Limits, Snapshot};
use crate::policy::Policy;
use crate::price::PriceTable;
use crate::service::Budget;
use crate::store::{LimitStore, MemoryStore, StoreError};

/// Applies [`Budget`] to a service: every service it wraps, and their clones, share one
/// [`Limits`] (policies, store, counters).
pub struct BudgetLayer<St = MemoryStore> {
    limits: Arc<Limits<St>>,
}

impl BudgetLayer {
    /// A builder with the in-memory store.
    pub fn builder() -> BudgetBuilder {
        BudgetBuilder::new()
    }
}

impl<St> BudgetLayer<St> {
    /// A layer over existing limits (several layers may share them).
    pub fn from_limits(limits: Arc<Limits<St>>) -> Self {
        Self { limits }
    }

    /// The shared limits: counts, store, clock.
    pub fn limits(&self) -> &Arc<Limits<St>> {
        &self.limits
    }

    /// Every scope's usage, remaining and reset (see [`Limits::snapshot`]).
    ///
    /// # Errors
    /// The store failed.
    pub async fn snapshot(&self) -> Result<Snapshot, StoreError>
    where
        St: LimitStore,
    {
        self.limits.snapshot().await
    }
}

impl<St> Clone for BudgetLayer<St> {
    fn clone(&self) -> Self {
        Self {
            limits: self.limits.clone(),
        }
    }
}

impl<St: fmt::Debug> fmt::Debug for BudgetLayer<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BudgetLayer")
            .field("limits", &self.limits)
            .finish()
    }
}

impl<S, St> Layer<S> for BudgetLayer<St> {
    type Service = Budget<S, St>;

    fn layer(&self, inner: S) -> Self::Service {
        Budget::from_limits(inner, self.limits.clone())
    }
}

/// Builds a [`BudgetLayer`]: policies, prices, settings, and optionally a store and a clock.
///
/// ```
/// use portcullis_budget::{BudgetLayer, Policy, RateRule, UsageLimits, Unpriced};
/// use portcullis_budget::store::MemoryStore;
///
/// let layer = BudgetLayer::builder()
///     .policy(Policy::new("everyone").usage(UsageLimits::cost_usd(100.0)))
///     .policy(Policy::new("everyone").rate(RateRule::requests_per_minute(10)))
///     .build();
/// assert_eq!(layer.unwrap_err().to_string(), "policies[1].name: `everyone` is used twice");
///
/// let layer = BudgetLayer::builder()
///     .policy(Policy::new("everyone").usage(UsageLimits::cost_usd(100.0)))
///     .unpriced(Unpriced::TokensOnly)
///     .store(MemoryStore::with_max_scopes(10_000))
///     .build()
///     .unwrap();
/// assert_eq!(layer.limits().policies().count(), 1);
/// ```
pub struct BudgetBuilder<St = MemoryStore> {
    config: LimitsConfig,
    store: St,
    clock: Option<Clock>,
}

impl BudgetBuilder {
    /// No policies, the built-in prices, the in-memory store, the system clock.
    pub fn new() -> Self {
        Self {
            config: LimitsConfig::default(),
            store: MemoryStore::new(),
            clock: None,
        }
    }
}

impl Default for BudgetBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl<St> BudgetBuilder<St> {
    /// Replaces every setting with `config` (as read by [`LimitsConfig::from_json`]).
    pub fn config(mut self, config: LimitsConfig) -> Self {
        self.config = config;
        self
    }

    /// Adds a policy.
    pub fn policy(mut self, policy: Policy) -> Self {
        self.config.policies.push(policy);
        self
    }

    /// Replaces the price table (default: [`PriceTable::builtin`]).
    pub fn prices(mut self, prices: PriceTable) -> Self {
        self.config.prices = prices;
        self
    }

    /// What to do with unpriced models under a cost budget (default: refuse).
    pub fn unpriced(mut self, unpriced: Unpriced) -> Self {
        self.config.unpriced = unpriced;
        self
    }

    /// The output reserved when a request sets no `max_tokens` (default 4096).
    pub fn default_max_tokens(mut self, tokens: u64) -> Self {
        self.config.default_max_tokens = tokens;
        self
    }

    /// How long a shared store keeps a reservation that is never settled (default 15 min).
    pub fn lease(mut self, lease: Duration) -> Self {
        self.config.lease = lease;
        self
    }

    /// The provider of requests that name none (by `@provider/model`, `x-portkey-provider`
    /// or a virtual key): for a layer in front of one provider.
    pub fn provider(mut self, provider: impl Into<String>) -> Self {
        self.config.provider = Some(provider.into());
        self
    }

    /// What to do when the store fails, for budgets and for rate limits (default: budgets
    /// closed, rate limits open).
    pub fn on_store_error(mut self, budgets: OnStoreError, rate_limits: OnStoreError) -> Self {
        self.config.budgets_on_store_error = budgets;
        self.config.rates_on_store_error = rate_limits;
        self
    }

    /// The clock (default [`Clock::system`], anchored at build).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Sets where the limits live.
    pub fn store<St2: LimitStore>(self, store: St2) -> BudgetBuilder<St2> {
        BudgetBuilder {
            config: self.config,
            store,
            clock: self.clock,
        }
    }

    /// The shared limits.
    ///
    /// # Errors
    /// A policy that does not check out, or two policies with one name, at its path
    /// (`policies[1].name: …`).
    pub fn into_limits(self) -> Result<Arc<Limits<St>>, BuildError>
    where
        St: LimitStore,
    {
        let mut names = HashSet::new();
        for (i, policy) in self.config.policies.iter().enumerate() {
            policy
                .check()
                .map_err(|e| e.in_index(i).in_key("policies"))?;
            if !names.insert(policy.name()) {
                return Err(BuildError::at(
                    format!("policies[{i}].name"),
                    format!("`{}` is used twice", policy.name()),
                ));
            }
        }
        if self.config.lease.is_zero() {
            return Err(BuildError::at("lease_seconds", "must be > 0"));
        }
        let clock = self.clock.unwrap_or_else(Clock::system);
        Ok(Arc::new(Limits::new(self.config, self.store, clock)))
    }

    /// The layer.
    ///
    /// # Errors
    /// See [`into_limits`](Self::into_limits).
    pub fn build(self) -> Result<BudgetLayer<St>, BuildError>
    where
        St: LimitStore,
    {
        self.into_limits().map(BudgetLayer::from_limits)
    }
}

impl<St: fmt::Debug> fmt::Debug for BudgetBuilder<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BudgetBuilder")
            .field("config", &self.config)
            .field("store", &self.store)
            .field("clock", &self.clock)
            .finish()
    }
}
