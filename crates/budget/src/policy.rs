//! What is limited: [`Policy`] (a name, a scope and its limits), [`UsageLimits`] (a cost or
//! token budget over a window) and [`RateRule`] (requests or tokens per minute, hour or day).
//!
//! Each type has a serde-free builder and a `from_json` that reads Portkey's shapes
//! (see [`crate::config`]).
//!
//! ```
//! use portcullis_budget::{Dimension, Policy, RateRule, Reset, UsageLimits};
//!
//! // Each end user (`metadata._user`) of each gateway key: $5 a month, alert at $4, and at
//! // most 20 requests a minute.
//! let policy = Policy::new("per-user")
//!     .per(Dimension::ApiKey)
//!     .per(Dimension::metadata("_user"))
//!     .usage(UsageLimits::cost_usd(5.0).alert_usd(4.0).reset(Reset::Monthly))
//!     .rate(RateRule::requests_per_minute(20));
//! assert_eq!(policy.name(), "per-user");
//! assert_eq!(policy.usage_limits().unwrap().credit_limit(), Some(5_000_000));
//! ```

use std::fmt;
use std::sync::Arc;

use portcullis_core::BuildError;

use crate::clock::{self, DAY, Weekday};
use crate::store::Window;

/// A part of a request that a policy is scoped by: each distinct value gets its own limits.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Dimension {
    /// The gateway API key the request presented (`Caller::api_key`), JSON `api_key`.
    ApiKey,
    /// The virtual key (provider credential) named (`Caller::virtual_key`), JSON `virtual_key`.
    VirtualKey,
    /// The end user (`Caller::user`), JSON `user`.
    User,
    /// The team (`Caller::team`), JSON `team`.
    Team,
    /// The provider (see [`crate::scope`] for where it is read), JSON `provider`.
    Provider,
    /// The requested model, without a `provider/` prefix, JSON `model`.
    Model,
    /// A request metadata key, JSON `metadata.<key>` (e.g. `metadata._user`).
    Metadata(Arc<str>),
}

impl Dimension {
    /// The metadata key `key`.
    pub fn metadata(key: impl Into<Arc<str>>) -> Self {
        Self::Metadata(key.into())
    }

    /// Reads a dimension by its JSON name: `api_key`, `virtual_key`, `user`, `team`,
    /// `provider`, `model` or `metadata.<key>`.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "api_key" => Self::ApiKey,
            "virtual_key" => Self::VirtualKey,
            "user" => Self::User,
            "team" => Self::Team,
            "provider" => Self::Provider,
            "model" => Self::Model,
            _ => {
                let key = name.strip_prefix("metadata.")?;
                if key.is_empty() {
                    return None;
                }
                Self::Metadata(key.into())
            }
        })
    }
}

impl Dimension {
    /// The JSON name in two parts (`metadata.` and the key for a metadata key): what
    /// `Display` writes, for the scope of every request without the formatting machinery.
    pub(crate) fn name_parts(&self) -> (&'static str, &str) {
        match self {
            Self::ApiKey => ("api_key", ""),
            Self::VirtualKey => ("virtual_key", ""),
            Self::User => ("user", ""),
            Self::Team => ("team", ""),
            Self::Provider => ("provider", ""),
            Self::Model => ("model", ""),
            Self::Metadata(key) => ("metadata.", key),
        }
    }
}

impl fmt::Display for Dimension {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (name, key) = self.name_parts();
        f.write_str(name)?;
        f.write_str(key)
    }
}

/// What a budget counts (`usage_limits.type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Measure {
    /// Cost in micro-USD (`"cost"`, configured in USD).
    Cost,
    /// Tokens, prompt and completion (`"tokens"`).
    Tokens,
}

/// When a budget starts over (`usage_limits.periodic_reset`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reset {
    /// Every day at 00:00 UTC (rolling: the last 24 hours).
    Daily,
    /// Every week at 00:00 UTC of its first day (rolling: the last 7 days).
    Weekly,
    /// On the 1st of every month at 00:00 UTC (rolling: the last 30 days).
    Monthly,
    /// Never: the budget is for the key's lifetime.
    Never,
}

impl Reset {
    fn name(self) -> &'static str {
        match self {
            Self::Daily => "daily",
            Self::Weekly => "weekly",
            Self::Monthly => "monthly",
            Self::Never => "never",
        }
    }
}

/// A budget: cost or tokens, a hard limit and a soft one, over a window.
///
/// A request is admitted while what is spent plus what is reserved by requests in flight
/// plus its own reservation stays within [`credit_limit`](Self::credit_limit); crossing
/// [`alert_threshold`](Self::alert_threshold) only logs, counts and sets a response header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageLimits {
    measure: Measure,
    credit_limit: Option<u64>,
    alert_threshold: Option<u64>,
    reset: Reset,
    rolling: bool,
    week_start: Weekday,
}

/// Buckets of a rolling window: spend leaves it a twenty-fourth of the window at a time.
pub const ROLLING_BUCKETS: u32 = 24;

pub(crate) fn usd_to_micros(usd: f64) -> u64 {
    if usd.is_finite() && usd > 0.0 {
        (usd * 1e6).round().min(9e15) as u64
    } else {
        0
    }
}

impl UsageLimits {
    fn with(measure: Measure, limit: u64) -> Self {
        Self {
            measure,
            credit_limit: (limit > 0).then_some(limit),
            alert_threshold: None,
            reset: Reset::Never,
            rolling: false,
            week_start: Weekday::Monday,
        }
    }

    /// A cost budget of `usd` US dollars (0 or less: no hard limit), never reset.
    pub fn cost_usd(usd: f64) -> Self {
        Self::with(Measure::Cost, usd_to_micros(usd))
    }

    /// A cost budget in micro-USD (0: no hard limit), never reset.
    pub fn cost_micros(micro_usd: u64) -> Self {
        Self::with(Measure::Cost, micro_usd)
    }

    /// A token budget (0: no hard limit), never reset.
    pub fn tokens(tokens: u64) -> Self {
        Self::with(Measure::Tokens, tokens)
    }

    /// Alerts at `usd` (cost budgets).
    pub fn alert_usd(self, usd: f64) -> Self {
        self.alert_at(usd_to_micros(usd))
    }

    /// Alerts at `amount`, in the budget's unit (micro-USD or tokens; 0: no alert).
    pub fn alert_at(mut self, amount: u64) -> Self {
        self.alert_threshold = (amount > 0).then_some(amount);
        self
    }

    /// Sets when the budget starts over.
    pub fn reset(mut self, reset: Reset) -> Self {
        self.reset = reset;
        self
    }

    /// Makes the window rolling (the last day, 7 days or 30 days) instead of calendar-aligned.
    pub fn rolling(mut self, rolling: bool) -> Self {
        self.rolling = rolling;
        self
    }

    /// Sets the first day of weekly windows (default Monday, ISO 8601).
    pub fn week_start(mut self, day: Weekday) -> Self {
        self.week_start = day;
        self
    }

    /// What the budget counts.
    pub fn measure(&self) -> Measure {
        self.measure
    }

    /// The hard limit, in micro-USD or tokens; `None` for a budget that only alerts.
    pub fn credit_limit(&self) -> Option<u64> {
        self.credit_limit
    }

    /// The soft limit, in the same unit.
    pub fn alert_threshold(&self) -> Option<u64> {
        self.alert_threshold
    }

    /// When the budget starts over.
    pub fn periodic_reset(&self) -> Reset {
        self.reset
    }

    /// Whether the window is rolling.
    pub fn is_rolling(&self) -> bool {
        self.rolling
    }

    /// The window holding `now` (unix seconds).
    pub fn window(&self, now: u64) -> Window {
        if self.rolling {
            let len = match self.reset {
                Reset::Daily => DAY,
                Reset::Weekly => 7 * DAY,
                Reset::Monthly => 30 * DAY,
                Reset::Never => return Window::Never,
            };
            let bucket_secs = len / u64::from(ROLLING_BUCKETS);
            return Window::Rolling {
                bucket: now / bucket_secs,
                buckets: ROLLING_BUCKETS,
                bucket_secs,
            };
        }
        let (start, end) = match self.reset {
            Reset::Daily => (clock::day_start(now), clock::day_start(now) + DAY),
            Reset::Weekly => {
                let start = clock::week_start(now, self.week_start);
                (start, start + 7 * DAY)
            }
            Reset::Monthly => (clock::month_start(now), clock::next_month_start(now)),
            Reset::Never => return Window::Never,
        };
        Window::Calendar { start, end }
    }

    /// The window's name in messages and snapshots: `daily`, `rolling weekly`, `never`.
    pub fn window_name(&self) -> String {
        match (self.rolling, self.reset) {
            (_, Reset::Never) => "never".to_owned(),
            (true, reset) => format!("rolling {}", reset.name()),
            (false, reset) => reset.name().to_owned(),
        }
    }

    pub(crate) fn check(&self) -> Result<(), BuildError> {
        if let (Some(limit), Some(alert)) = (self.credit_limit, self.alert_threshold)
            && alert > limit
        {
            return Err(BuildError::at(
                "alert_threshold",
                "must not be above credit_limit",
            ));
        }
        if self.credit_limit.is_none() && self.alert_threshold.is_none() {
            return Err(BuildError::at(
                "credit_limit",
                "a budget needs a credit_limit or an alert_threshold above 0",
            ));
        }
        Ok(())
    }
}

/// What a rate rule counts (`rate_limits[].type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RateKind {
    /// Requests, one each, taken when admitted and never given back.
    Requests,
    /// Tokens: the estimate is taken when admitted, settled to the actual usage at the end.
    Tokens,
}

impl RateKind {
    /// `requests` or `tokens`, as in the `x-ratelimit-*-requests|tokens` headers.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requests => "requests",
            Self::Tokens => "tokens",
        }
    }
}

/// The period of a rate rule (`rate_limits[].unit`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RateUnit {
    /// Per minute (`rpm`).
    Minute,
    /// Per hour (`rph`).
    Hour,
    /// Per day (`rpd`).
    Day,
}

impl RateUnit {
    /// The period's length.
    pub fn period_secs(self) -> u64 {
        match self {
            Self::Minute => 60,
            Self::Hour => 3600,
            Self::Day => DAY,
        }
    }

    /// `rpm`, `rph` or `rpd`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Minute => "rpm",
            Self::Hour => "rph",
            Self::Day => "rpd",
        }
    }
}

/// A rate limit: at most `value` requests or tokens per period, enforced by GCRA (a token
/// bucket of capacity `value` refilled evenly over the period, kept as one timestamp).
///
/// A `value` of 0 refuses everything (Portkey: a way to switch a key off).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RateRule {
    kind: RateKind,
    unit: RateUnit,
    value: u64,
}

impl RateRule {
    /// `value` of `kind` per `unit`.
    pub fn new(kind: RateKind, unit: RateUnit, value: u64) -> Self {
        Self { kind, unit, value }
    }

    /// `value` requests a minute.
    pub fn requests_per_minute(value: u64) -> Self {
        Self::new(RateKind::Requests, RateUnit::Minute, value)
    }

    /// `value` tokens a minute.
    pub fn tokens_per_minute(value: u64) -> Self {
        Self::new(RateKind::Tokens, RateUnit::Minute, value)
    }

    /// What it counts.
    pub fn kind(&self) -> RateKind {
        self.kind
    }

    /// Its period.
    pub fn unit(&self) -> RateUnit {
        self.unit
    }

    /// How many per period.
    pub fn value(&self) -> u64 {
        self.value
    }
}

/// A named set of limits over a scope.
///
/// The scope is the list of [`Dimension`]s in [`per`](Self::per): every distinct combination
/// of their values has its own budget and rate counters (no dimension: one shared scope).
/// A request that lacks a value (no `metadata._user`) shares the scope of the empty value
/// with the others that lack it, so leaving a field out never escapes a limit.
/// [`matching`](Self::matching) narrows the requests the policy applies to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub(crate) name: Arc<str>,
    pub(crate) per: Vec<Dimension>,
    pub(crate) matching: Vec<(Dimension, Arc<str>)>,
    pub(crate) usage: Option<UsageLimits>,
    pub(crate) rates: Vec<RateRule>,
}

impl Policy {
    /// A policy named `name` (used in errors, headers, snapshots, metric labels and store
    /// keys: keep it stable), with no scope and no limits yet.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Self {
            name: name.into(),
            per: Vec::new(),
            matching: Vec::new(),
            usage: None,
            rates: Vec::new(),
        }
    }

    /// Adds a dimension to the scope.
    pub fn per(mut self, dimension: Dimension) -> Self {
        self.per.push(dimension);
        self
    }

    /// Applies the policy only to requests whose `dimension` is `value`.
    pub fn matching(mut self, dimension: Dimension, value: impl Into<Arc<str>>) -> Self {
        self.matching.push((dimension, value.into()));
        self
    }

    /// Sets the budget.
    pub fn usage(mut self, limits: UsageLimits) -> Self {
        self.usage = Some(limits);
        self
    }

    /// Adds a rate rule.
    pub fn rate(mut self, rule: RateRule) -> Self {
        self.rates.push(rule);
        self
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The scope's dimensions.
    pub fn scope(&self) -> &[Dimension] {
        &self.per
    }

    /// The budget, if any.
    pub fn usage_limits(&self) -> Option<&UsageLimits> {
        self.usage.as_ref()
    }

    /// The rate rules.
    pub fn rate_rules(&self) -> &[RateRule] {
        &self.rates
    }

    pub(crate) fn check(&self) -> Result<(), BuildError> {
        if self.name.is_empty() {
            return Err(BuildError::at("name", "must not be empty"));
        }
        if self.usage.is_none() && self.rates.is_empty() {
            return Err(BuildError::new(
                "a policy needs usage_limits or rate_limits",
            ));
        }
        if let Some(usage) = &self.usage {
            usage.check().map_err(|e| e.prefixed("usage_limits"))?;
        }
        if self.rates.len() > usize::from(u16::MAX) - 1 {
            return Err(BuildError::at("rate_limits", "too many rules"));
        }
        Ok(())
    }
}
