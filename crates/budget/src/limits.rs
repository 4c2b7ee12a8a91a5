//! [`Limits`]: the compiled policies, prices, clock and stores that every service of one
//! layer shares; planning a request's charges, deciding, settling, and snapshots.

use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Extensions, HeaderMap};
use metrics::Counter;
use portcullis_core::RequestView;
use portcullis_core::context::{Caller, Metadata};
use portcullis_core::observe::Report;
use serde_json::{Value, json};
use smallvec::SmallVec;

use crate::answer::{self, Refusal};
use crate::clock::{self, Clock};
use crate::config::{LimitsConfig, OnStoreError, Unpriced};
use crate::estimate::{request_tokens, text_tokens};
use crate::policy::{Dimension, Measure, Policy, RateKind, RateRule, UsageLimits};
use crate::price::{Price, PriceTable, TokenUsage, bare_model};
use crate::store::{
    Charge, EntryState, LimitStore, MemoryStore, Reservation, Reserve, Rule, ScopeKey, Standing,
    StoreError, Verdict, Window,
};

/// What one charge of a reservation stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ChargeKind {
    CostBudget,
    TokenBudget,
    Requests,
    Tokens,
}

impl ChargeKind {
    fn is_budget(self) -> bool {
        matches!(self, Self::CostBudget | Self::TokenBudget)
    }
}

struct PolicyMetrics {
    admitted: Counter,
    refused_budget: Counter,
    refused_rate: Counter,
    alerts: Counter,
    spend: Counter,
    tokens: Counter,
    estimated: Counter,
    unpriced: Counter,
}

impl PolicyMetrics {
    fn new(name: &str) -> Self {
        let policy = name.to_owned();
        Self {
            admitted: metrics::counter!("portcullis_budget_admitted_total", "policy" => policy.clone()),
            refused_budget: metrics::counter!("portcullis_budget_refused_total", "policy" => policy.clone(), "limit" => "budget"),
            refused_rate: metrics::counter!("portcullis_budget_refused_total", "policy" => policy.clone(), "limit" => "rate"),
            alerts: metrics::counter!("portcullis_budget_alerts_total", "policy" => policy.clone()),
            spend: metrics::counter!("portcullis_budget_spend_micro_usd_total", "policy" => policy.clone()),
            tokens: metrics::counter!("portcullis_budget_tokens_total", "policy" => policy.clone()),
            estimated: metrics::counter!("portcullis_budget_estimated_settlements_total", "policy" => policy.clone()),
            unpriced: metrics::counter!("portcullis_budget_unpriced_total", "policy" => policy),
        }
    }
}

struct Compiled {
    policy: Policy,
    metrics: PolicyMetrics,
    /// The scope of a policy kept per nothing, shared by every request.
    global: Arc<str>,
}

/// Counts of what a layer did, for tests and health pages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Reservations taken (in either store).
    pub reserved: u64,
    /// Reservations settled or given back.
    pub settled: u64,
    /// Requests refused by a budget (402).
    pub refused_budget: u64,
    /// Requests refused by a rate limit (429).
    pub refused_rate: u64,
    /// Store failures met when reserving.
    pub store_errors: u64,
    /// Reservations decided by the local fallback store.
    pub fallback: u64,
}

#[derive(Default)]
struct Counters {
    reserved: std::sync::atomic::AtomicU64,
    settled: std::sync::atomic::AtomicU64,
    refused_budget: std::sync::atomic::AtomicU64,
    refused_rate: std::sync::atomic::AtomicU64,
    store_errors: std::sync::atomic::AtomicU64,
    fallback: std::sync::atomic::AtomicU64,
}

fn bump(counter: &std::sync::atomic::AtomicU64) {
    counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// The shared state of a budget layer: its policies, prices, clock, store and the local
/// fallback store (see the [crate docs](crate)).
pub struct Limits<St = MemoryStore> {
    policies: Vec<Compiled>,
    prices: PriceTable,
    unpriced: Unpriced,
    default_max_tokens: u64,
    lease: Duration,
    provider: Option<Arc<str>>,
    /// Whether a policy reads the provider (a provider or model dimension, a cost budget's
    /// price): if none does, a request's provider is not looked for.
    needs_provider: bool,
    budgets_on_error: OnStoreError,
    rates_on_error: OnStoreError,
    clock: Clock,
    store: St,
    fallback: MemoryStore,
    counters: Counters,
    store_errors_closed: Counter,
    store_errors_open: Counter,
    logged_unpriced: Mutex<HashSet<String>>,
}

/// The plan of one admitted request: what to settle, and from what.
pub(crate) struct Plan {
    /// Inline for a request's few charges: the plan is shared in one allocation.
    kinds: SmallVec<[(ChargeKind, usize); 4]>,
    prompt: u64,
    completion: u64,
    price: Option<Price>,
}

thread_local! {
    /// Each thread's scope text under assembly, reused from one request to the next.
    static SCOPE: RefCell<String> = const { RefCell::new(String::new()) };
}

/// A scope buffer kept past this is given back: one client's huge metadata value should not
/// hold its memory for the thread's lifetime.
const SCOPE_KEPT: usize = 4096;

/// A request's charges, ready to reserve; or the answer that stops it first.
pub(crate) enum Planned {
    /// No limit applies.
    Free,
    /// Reserve these.
    Reserve(Arc<Reservation>, Arc<Plan>),
    /// Refused before any store was asked (an unpriced model).
    Answer(http::Response<portcullis_core::Body>),
}

/// A decided reservation: taken (and by which store), or refused with its answer.
pub(crate) enum Decision {
    Admitted {
        standings: Vec<Standing>,
        fallback: bool,
    },
    Answer(http::Response<portcullis_core::Body>),
}

fn dimension_value<'a>(
    dim: &Dimension,
    extensions: &'a Extensions,
    view: Option<&'a RequestView>,
    provider: &'a str,
) -> &'a str {
    // The caller is looked up only for the dimensions that read it.
    let field = |f: fn(&Caller) -> &Option<Arc<str>>| {
        extensions
            .get::<Caller>()
            .and_then(|c| f(c).as_deref())
            .unwrap_or("")
    };
    match dim {
        Dimension::ApiKey => field(|c| &c.api_key),
        Dimension::VirtualKey => field(|c| &c.virtual_key),
        Dimension::User => field(|c| &c.user),
        Dimension::Team => field(|c| &c.team),
        Dimension::Provider => provider,
        Dimension::Model => view
            .and_then(RequestView::model)
            .map_or("", |m| bare_model(Some(provider), m)),
        Dimension::Metadata(key) => extensions
            .get::<Metadata>()
            .and_then(|m| m.get(key))
            .unwrap_or(""),
    }
}

/// Writes `value` into a scope string, escaping the separators.
fn push_escaped(out: &mut String, mut value: &str) {
    // Copied a run at a time, not a character at a time.
    while let Some(at) = value.find(['\\', ',', '=']) {
        out.push_str(&value[..at]);
        out.push('\\');
        out.push_str(&value[at..=at]);
        value = &value[at + 1..];
    }
    out.push_str(value);
}

fn rate_rule_kind(rule: &RateRule) -> ChargeKind {
    match rule.kind() {
        RateKind::Requests => ChargeKind::Requests,
        RateKind::Tokens => ChargeKind::Tokens,
    }
}

impl<St: LimitStore> Limits<St> {
    pub(crate) fn new(config: LimitsConfig, store: St, clock: Clock) -> Self {
        if !store.is_shared() {
            tracing::info!(
                "portcullis-budget: limits are kept in this process; each replica enforces them on its own"
            );
        }
        let needs_provider = config.policies.iter().any(|policy| {
            let reads = |dim: &Dimension| matches!(dim, Dimension::Provider | Dimension::Model);
            policy.per.iter().any(reads)
                || policy.matching.iter().any(|(dim, _)| reads(dim))
                || policy
                    .usage
                    .as_ref()
                    .is_some_and(|u| u.measure() == Measure::Cost)
        });
        Self {
            needs_provider,
            policies: config
                .policies
                .into_iter()
                .map(|policy| Compiled {
                    metrics: PolicyMetrics::new(&policy.name),
                    global: Arc::from(""),
                    policy,
                })
                .collect(),
            prices: config.prices,
            unpriced: config.unpriced,
            default_max_tokens: config.default_max_tokens,
            lease: config.lease,
            provider: config.provider.map(Into::into),
            budgets_on_error: config.budgets_on_store_error,
            rates_on_error: config.rates_on_store_error,
            clock,
            store,
            fallback: MemoryStore::new(),
            counters: Counters::default(),
            store_errors_closed: metrics::counter!("portcullis_budget_store_errors_total", "op" => "reserve", "mode" => "closed"),
            store_errors_open: metrics::counter!("portcullis_budget_store_errors_total", "op" => "reserve", "mode" => "open"),
            logged_unpriced: Mutex::new(HashSet::new()),
        }
    }
}

impl<St> Limits<St> {
    /// The store.
    pub fn store(&self) -> &St {
        &self.store
    }

    /// The local store that decides while the main store fails (fail-open limits).
    pub fn fallback_store(&self) -> &MemoryStore {
        &self.fallback
    }

    /// The clock.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The policies.
    pub fn policies(&self) -> impl Iterator<Item = &Policy> {
        self.policies.iter().map(|c| &c.policy)
    }

    /// What the layer did so far.
    pub fn counts(&self) -> Counts {
        let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        Counts {
            reserved: load(&self.counters.reserved),
            settled: load(&self.counters.settled),
            refused_budget: load(&self.counters.refused_budget),
            refused_rate: load(&self.counters.refused_rate),
            store_errors: load(&self.counters.store_errors),
            fallback: load(&self.counters.fallback),
        }
    }

    fn provider<'a>(
        &'a self,
        headers: &'a HeaderMap,
        extensions: &'a Extensions,
        view: Option<&'a RequestView>,
    ) -> &'a str {
        // Known for certain where a leaf set it; otherwise read from what the client named.
        if let Some(p) = extensions.get::<portcullis_core::context::ProviderName>() {
            return &p.0;
        }
        if let Some(model) = view.and_then(RequestView::model)
            && let Some(rest) = model.strip_prefix('@')
            && let Some((provider, _)) = rest.split_once('/')
        {
            return provider;
        }
        if let Some(p) = headers
            .get("x-portkey-provider")
            .and_then(|v| v.to_str().ok())
        {
            return p;
        }
        if let Some(vk) = extensions
            .get::<Caller>()
            .and_then(|c| c.virtual_key.as_deref())
        {
            return vk;
        }
        self.provider.as_deref().unwrap_or("")
    }

    fn log_unpriced(&self, provider: &str, model: &str, policy: &str, refused: bool) {
        let mut logged = self
            .logged_unpriced
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if logged.len() < 1024 && logged.insert(format!("{provider}/{model}")) {
            tracing::warn!(
                provider,
                model,
                policy,
                refused,
                "portcullis-budget: no price for this model; cost budgets cannot count it"
            );
        }
    }

    /// The charges of a request in every scope that applies.
    pub(crate) fn plan(
        &self,
        headers: &HeaderMap,
        extensions: &Extensions,
        view: Option<&RequestView>,
    ) -> Planned {
        let provider = if self.needs_provider {
            self.provider(headers, extensions, view)
        } else {
            ""
        };
        let model = view.and_then(RequestView::model).unwrap_or("");
        let mut tokens: Option<(u64, u64)> = None;
        let mut estimate = || {
            *tokens.get_or_insert_with(|| match view {
                Some(view) => request_tokens(view, self.default_max_tokens),
                None => (0, 0),
            })
        };
        let mut price: Option<Option<Price>> = None;
        let now = self.clock.now_micros();
        let now_secs = now / 1_000_000;
        let mut charges = Vec::with_capacity(4);
        let mut kinds = SmallVec::new();
        for (index, compiled) in self.policies.iter().enumerate() {
            let policy = &compiled.policy;
            if !policy
                .matching
                .iter()
                .all(|(dim, want)| dimension_value(dim, extensions, view, provider) == &**want)
            {
                continue;
            }
            let scope: Arc<str> = if policy.per.is_empty() {
                compiled.global.clone()
            } else {
                // Written in a buffer of the thread's, then shared: one allocation, not two.
                SCOPE.with_borrow_mut(|scope| {
                    scope.clear();
                    for (i, dim) in policy.per.iter().enumerate() {
                        if i > 0 {
                            scope.push(',');
                        }
                        let (name, key) = dim.name_parts();
                        scope.push_str(name);
                        scope.push_str(key);
                        scope.push('=');
                        push_escaped(scope, dimension_value(dim, extensions, view, provider));
                    }
                    let shared = Arc::from(scope.as_str());
                    if scope.capacity() > SCOPE_KEPT {
                        *scope = String::new();
                    }
                    shared
                })
            };
            let key = |limit: u16| ScopeKey {
                policy: policy.name.clone(),
                limit,
                scope: scope.clone(),
            };
            if let Some(usage) = &policy.usage {
                let (prompt, completion) = estimate();
                let (kind, amount) = match usage.measure() {
                    Measure::Tokens => (ChargeKind::TokenBudget, prompt + completion),
                    Measure::Cost => {
                        let found =
                            *price.get_or_insert_with(|| self.prices.lookup(Some(provider), model));
                        match found {
                            Some(p) => {
                                let usage = TokenUsage {
                                    input: prompt,
                                    output: completion,
                                    ..TokenUsage::default()
                                };
                                (ChargeKind::CostBudget, p.cost(&usage).micro_usd)
                            }
                            None => {
                                compiled.metrics.unpriced.increment(1);
                                let refuse = self.unpriced == Unpriced::Refuse;
                                self.log_unpriced(provider, model, &policy.name, refuse);
                                if refuse {
                                    return Planned::Answer(answer::unpriced(model, &policy.name));
                                }
                                (ChargeKind::CostBudget, u64::MAX)
                            }
                        }
                    }
                };
                // u64::MAX marks a cost budget skipped for an unpriced model.
                if amount != u64::MAX {
                    charges.push(Charge {
                        key: key(0),
                        rule: Rule::Budget {
                            limit: usage.credit_limit(),
                            alert: usage.alert_threshold(),
                            window: usage.window(now_secs),
                        },
                        amount,
                    });
                    kinds.push((kind, index));
                }
            }
            for (i, rule) in policy.rates.iter().enumerate() {
                let kind = rate_rule_kind(rule);
                let amount = match kind {
                    ChargeKind::Requests => 1,
                    // Capped at the bucket: a large request waits for a full bucket
                    // instead of never fitting; its real usage is settled all the same.
                    _ => {
                        let (prompt, completion) = estimate();
                        (prompt + completion).min(rule.value())
                    }
                };
                charges.push(Charge {
                    key: key(i as u16 + 1),
                    rule: Rule::Rate {
                        value: rule.value(),
                        period_secs: rule.unit().period_secs(),
                    },
                    amount,
                });
                kinds.push((kind, index));
            }
        }
        if charges.is_empty() {
            return Planned::Free;
        }
        let (prompt, completion) = tokens.unwrap_or_default();
        let reservation = Arc::new(Reservation::new(now, self.lease, charges));
        let plan = Arc::new(Plan {
            kinds,
            prompt,
            completion,
            price: price.flatten(),
        });
        Planned::Reserve(reservation, plan)
    }

    /// Turns a store's answer into a decision, falling back to the local store as the
    /// failure policy says.
    pub(crate) fn decide(
        &self,
        reservation: &Arc<Reservation>,
        plan: &Plan,
        result: Result<Verdict, StoreError>,
    ) -> Decision {
        let (verdict, fallback) = match result {
            Ok(verdict) => (verdict, false),
            Err(error) => {
                bump(&self.counters.store_errors);
                let closed = plan.kinds.iter().any(|(kind, _)| {
                    let mode = if kind.is_budget() {
                        self.budgets_on_error
                    } else {
                        self.rates_on_error
                    };
                    mode == OnStoreError::Closed
                });
                if closed {
                    self.store_errors_closed.increment(1);
                    tracing::warn!(%error, "portcullis-budget: store failed; refusing (fail-closed)");
                    return Decision::Answer(answer::store_unavailable(&error));
                }
                self.store_errors_open.increment(1);
                tracing::warn!(%error, "portcullis-budget: store failed; deciding locally (fail-open)");
                bump(&self.counters.fallback);
                let Reserve::Ready(local) = self.fallback.reserve(reservation) else {
                    unreachable!("the memory store answers at once")
                };
                match local {
                    Ok(verdict) => (verdict, true),
                    Err(error) => return Decision::Answer(answer::store_unavailable(&error)),
                }
            }
        };
        match verdict {
            Verdict::Admitted(standings) => {
                bump(&self.counters.reserved);
                let mut seen = usize::MAX;
                for ((kind, index), standing) in plan.kinds.iter().zip(&standings) {
                    let compiled = &self.policies[*index];
                    if *index != seen {
                        compiled.metrics.admitted.increment(1);
                        seen = *index;
                    }
                    if kind.is_budget() && standing.crossed_alert {
                        compiled.metrics.alerts.increment(1);
                        tracing::warn!(
                            policy = %compiled.policy.name,
                            used = standing.used,
                            reserved = standing.reserved,
                            threshold = compiled.policy.usage.as_ref().and_then(UsageLimits::alert_threshold),
                            "portcullis-budget: alert threshold reached"
                        );
                    }
                }
                Decision::Admitted {
                    standings,
                    fallback,
                }
            }
            Verdict::Refused { index, standing } => {
                let (kind, policy_index) = plan.kinds[index];
                let compiled = &self.policies[policy_index];
                let charge = &reservation.charges[index];
                let refusal = if kind.is_budget() {
                    bump(&self.counters.refused_budget);
                    compiled.metrics.refused_budget.increment(1);
                    let usage = compiled.policy.usage.as_ref();
                    Refusal::Budget {
                        policy: compiled.policy.name.clone(),
                        scope: charge.key.scope.clone(),
                        measure: usage.map_or(Measure::Cost, UsageLimits::measure),
                        window: usage.map_or_else(|| "never".to_owned(), UsageLimits::window_name),
                        limit: usage.and_then(UsageLimits::credit_limit).unwrap_or(0),
                        requested: charge.amount,
                        standing,
                        resets_at: match charge.rule {
                            Rule::Budget { window, .. } => window.resets_at(),
                            Rule::Rate { .. } => None,
                        },
                    }
                } else {
                    bump(&self.counters.refused_rate);
                    compiled.metrics.refused_rate.increment(1);
                    let rule = compiled.policy.rates[usize::from(charge.key.limit) - 1];
                    Refusal::Rate {
                        policy: compiled.policy.name.clone(),
                        scope: charge.key.scope.clone(),
                        rule,
                        standing,
                    }
                };
                Decision::Answer(refusal.into_response())
            }
        }
    }

    /// Headers for an admitted request: the tightest rate rule of each kind, and the names
    /// of the budgets over their alert threshold.
    pub(crate) fn success_headers(
        &self,
        reservation: &Reservation,
        plan: &Plan,
        standings: &[Standing],
        headers: &mut http::HeaderMap,
    ) {
        let mut tightest: [Option<(u64, &Standing)>; 2] = [None, None];
        let mut alerts: Vec<&str> = Vec::new();
        for (((kind, index), standing), charge) in
            plan.kinds.iter().zip(standings).zip(&reservation.charges)
        {
            let slot = match kind {
                ChargeKind::Requests => 0,
                ChargeKind::Tokens => 1,
                _ => {
                    if standing.over_alert {
                        let name = &*self.policies[*index].policy.name;
                        if !alerts.contains(&name) {
                            alerts.push(name);
                        }
                    }
                    continue;
                }
            };
            let value = match charge.rule {
                Rule::Rate { value, .. } => value,
                Rule::Budget { .. } => continue,
            };
            if tightest[slot].is_none_or(|(_, s)| standing.remaining < s.remaining) {
                tightest[slot] = Some((value, standing));
            }
        }
        for (slot, kind) in [RateKind::Requests, RateKind::Tokens]
            .into_iter()
            .enumerate()
        {
            if let Some((value, standing)) = tightest[slot] {
                answer::rate_headers(headers, kind, value, standing);
            }
        }
        if !alerts.is_empty()
            && let Ok(value) = http::HeaderValue::from_str(&alerts.join(", "))
        {
            headers.insert(answer::ALERT_HEADER, value);
        }
    }

    /// The actual amounts to settle, charge by charge.
    fn actual(
        &self,
        reservation: &Reservation,
        plan: &Plan,
        spent: Option<(u64, Option<u64>)>,
    ) -> SmallVec<[u64; 4]> {
        // A request has a few charges: the amounts stay on the stack.
        reservation
            .charges
            .iter()
            .zip(&plan.kinds)
            .map(|(charge, (kind, _))| match (kind, spent) {
                (ChargeKind::Requests, _) => charge.amount,
                (_, None) => 0,
                (ChargeKind::CostBudget, Some((_, cost))) => cost.unwrap_or(0),
                (ChargeKind::TokenBudget | ChargeKind::Tokens, Some((tokens, _))) => tokens,
            })
            .collect()
    }

    fn store_settle(&self, reservation: &Arc<Reservation>, actual: &[u64], fallback: bool)
    where
        St: LimitStore,
    {
        bump(&self.counters.settled);
        if fallback {
            self.fallback.settle(reservation, actual);
        } else {
            self.store.settle(reservation, actual);
        }
    }

    /// Gives a reservation back with nothing spent (an error, a cancel before the answer).
    pub(crate) fn release(&self, reservation: &Arc<Reservation>, plan: &Plan, fallback: bool)
    where
        St: LimitStore,
    {
        let actual = self.actual(reservation, plan, None);
        self.store_settle(reservation, &actual, fallback);
    }

    /// Settles from the observer's report of the answer.
    pub(crate) fn settle(
        &self,
        reservation: &Arc<Reservation>,
        plan: &Plan,
        fallback: bool,
        report: &Report,
        cache_hit: bool,
        provider: Option<&str>,
    ) where
        St: LimitStore,
    {
        if cache_hit || !report.status.is_success() {
            return self.release(reservation, plan, fallback);
        }
        // The core numbers suffice unless the body holds cache or thinking details (or
        // a shape they do not cover): only then is it parsed again.
        let reported = report
            .body
            .as_ref()
            .filter(|b| report.usage.is_none() || has_usage_detail(b))
            .and_then(|b| serde_json::from_slice::<Value>(b).ok())
            .and_then(|v| TokenUsage::from_json(&v))
            .or_else(|| report.usage.as_ref().map(TokenUsage::from_usage));
        let estimated = reported.is_none();
        let usage = reported.unwrap_or_else(|| TokenUsage {
            input: plan.prompt,
            output: text_tokens(&report.text).min(plan.completion.max(1)),
            ..TokenUsage::default()
        });
        // Only a cost budget reads the price (its charge and its spend metric).
        let price = plan
            .kinds
            .iter()
            .any(|(kind, _)| *kind == ChargeKind::CostBudget)
            .then(|| {
                report
                    .model
                    .as_deref()
                    .and_then(|m| self.prices.lookup(provider, m))
                    .or(plan.price)
            })
            .flatten();
        let cost = price.map(|p| p.cost(&usage).micro_usd);
        let tokens = usage.total();
        let actual = self.actual(reservation, plan, Some((tokens, cost)));
        let mut seen = usize::MAX;
        for (kind, index) in &plan.kinds {
            if *index == seen {
                continue;
            }
            seen = *index;
            let metrics = &self.policies[*index].metrics;
            metrics.tokens.increment(tokens);
            if let Some(cost) = cost
                && *kind == ChargeKind::CostBudget
            {
                metrics.spend.increment(cost);
            }
            if estimated {
                metrics.estimated.increment(1);
            }
        }
        self.store_settle(reservation, &actual, fallback);
    }

    /// Every scope's usage, remaining and reset, as the store holds it now.
    ///
    /// # Errors
    /// The store failed.
    pub async fn snapshot(&self) -> Result<Snapshot, StoreError>
    where
        St: LimitStore,
    {
        let entries = self.store.entries().await?;
        let now = self.clock.now_micros();
        let now_secs = now / 1_000_000;
        let mut scopes = Vec::new();
        for entry in entries {
            let Some(policy) = self
                .policies
                .iter()
                .map(|c| &c.policy)
                .find(|p| *p.name == *entry.key.policy)
            else {
                continue;
            };
            let usage = if entry.key.limit == 0 {
                policy.usage.as_ref()
            } else {
                None
            };
            let scope = ScopeUsage {
                policy: entry.key.policy.to_string(),
                scope: entry.key.scope.to_string(),
                limit_index: entry.key.limit,
                limit: String::new(),
                window: String::new(),
                used: 0,
                reserved: 0,
                max: None,
                remaining: None,
                resets_at: None,
            };
            let scope = match (&entry.state, usage) {
                (
                    EntryState::Budget {
                        window,
                        used,
                        reserved,
                    },
                    Some(usage),
                ) => {
                    let current = usage.window(now_secs);
                    let start = match current {
                        Window::Calendar { start, .. } => start,
                        _ => 0,
                    };
                    if *window != start {
                        continue; // a window that has ended
                    }
                    budget_usage(scope, usage, current, *used, *reserved)
                }
                (EntryState::Rolling { buckets, reserved }, Some(usage)) => {
                    let current = usage.window(now_secs);
                    let Window::Rolling { bucket, .. } = current else {
                        continue;
                    };
                    let oldest = current.oldest_bucket();
                    let used = buckets
                        .iter()
                        .filter(|(b, _)| *b >= oldest && *b <= bucket)
                        .map(|(_, v)| v)
                        .sum();
                    budget_usage(scope, usage, current, used, *reserved)
                }
                (EntryState::Rate { level, at }, None) => {
                    let Some(rule) = policy.rates.get(usize::from(entry.key.limit) - 1) else {
                        continue;
                    };
                    let period = rule.unit().period_secs();
                    let level = crate::store::drain(*level, *at, now, rule.value(), period);
                    let standing = crate::store::rate_standing(rule.value(), period, level);
                    ScopeUsage {
                        limit: format!("{} {}", rule.kind().as_str(), rule.unit().as_str()),
                        window: rule.unit().as_str().to_owned(),
                        used: standing.used,
                        max: Some(rule.value()),
                        remaining: Some(standing.remaining),
                        resets_at: Some(now_secs + standing.reset_after.map_or(0, |d| d.as_secs())),
                        ..scope
                    }
                }
                _ => continue,
            };
            scopes.push(scope);
        }
        scopes.sort_by(|a, b| {
            (&a.policy, a.limit_index, &a.scope).cmp(&(&b.policy, b.limit_index, &b.scope))
        });
        Ok(Snapshot {
            taken_at: now_secs,
            scopes,
        })
    }
}

/// Whether a body may hold usage details beyond the core numbers: a non-zero
/// `cached_tokens`, Anthropic's cache fields, Gemini's `usageMetadata`.
///
/// Every cache field has "cache" in its name and Gemini's usage is "usageMetadata" (looked
/// for as "ageMe"); both are found with `memchr`'s substring search, not a byte-by-byte
/// window (which cost 6,600 instructions on a 515-byte answer).
fn has_usage_detail(body: &[u8]) -> bool {
    use memchr::memmem::Finder;
    use std::sync::LazyLock;
    // Built once: `memmem::find` builds its searcher again on every call.
    static GEMINI: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"ageMe"));
    static CACHE: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"cache"));
    if GEMINI.find(body).is_some() {
        return true;
    }
    let mut rest = body;
    while let Some(at) = CACHE.find(rest) {
        let Some(after) = rest[at..].strip_prefix(b"cached_tokens\":") else {
            return true;
        };
        // OpenAI always sends `cached_tokens`, usually 0: only a non-zero count matters.
        if after
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|d| *d != b'0')
        {
            return true;
        }
        rest = after;
    }
    false
}

fn budget_usage(
    scope: ScopeUsage,
    usage: &UsageLimits,
    window: Window,
    used: u64,
    reserved: u64,
) -> ScopeUsage {
    let measure = match usage.measure() {
        Measure::Cost => "cost",
        Measure::Tokens => "tokens",
    };
    ScopeUsage {
        limit: format!("{measure} budget"),
        window: usage.window_name(),
        used,
        reserved,
        max: usage.credit_limit(),
        remaining: usage
            .credit_limit()
            .map(|l| l.saturating_sub(used.saturating_add(reserved))),
        resets_at: window.resets_at(),
        ..scope
    }
}

impl<St: fmt::Debug> fmt::Debug for Limits<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Limits")
            .field(
                "policies",
                &self
                    .policies
                    .iter()
                    .map(|c| &c.policy.name)
                    .collect::<Vec<_>>(),
            )
            .field("store", &self.store)
            .field("clock", &self.clock)
            .field("counts", &self.counts())
            .finish_non_exhaustive()
    }
}

/// Every scope's usage at one moment (what `GET /v1/limits` serves).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// When it was taken, unix seconds.
    pub taken_at: u64,
    /// The scopes, by policy, limit and scope.
    pub scopes: Vec<ScopeUsage>,
}

/// One limit in one scope, in a [`Snapshot`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScopeUsage {
    /// The policy's name.
    pub policy: String,
    /// The scope's values, `dimension=value` joined with `,`.
    pub scope: String,
    /// The limit's index in the policy (0: the budget, 1..: the rate rules).
    pub limit_index: u16,
    /// What the limit counts: `cost budget`, `tokens budget`, `requests rpm`, `tokens rph`.
    pub limit: String,
    /// Its window: `daily`, `rolling weekly`, `never`, `rpm`…
    pub window: String,
    /// Spent in the window (micro-USD or tokens), or units in use of a rate.
    pub used: u64,
    /// Reserved by requests in flight (budgets).
    pub reserved: u64,
    /// The hard limit, if any.
    pub max: Option<u64>,
    /// What is left, if there is a hard limit.
    pub remaining: Option<u64>,
    /// When the window resets or the bucket is full, unix seconds.
    pub resets_at: Option<u64>,
}

impl Snapshot {
    /// The snapshot as JSON: `{"taken_at": "…Z", "scopes": [{"policy", "scope", "limit",
    /// "window", "used", "reserved", "limit_value", "remaining", "resets_at"}]}`, with cost
    /// amounts in USD as well as micro-USD.
    pub fn to_json(&self) -> Value {
        let scopes: Vec<Value> = self
            .scopes
            .iter()
            .map(|s| {
                let mut v = json!({
                    "policy": s.policy,
                    "scope": s.scope,
                    "limit": s.limit,
                    "window": s.window,
                    "used": s.used,
                    "reserved": s.reserved,
                    "limit_value": s.max,
                    "remaining": s.remaining,
                    "resets_at": s.resets_at.map(clock::format_utc),
                });
                if s.limit == "cost budget" {
                    v["unit"] = json!("micro_usd");
                    v["used_usd"] = json!(s.used as f64 / 1e6);
                }
                v
            })
            .collect();
        json!({"taken_at": clock::format_utc(self.taken_at), "scopes": scopes})
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::{has_usage_detail, push_escaped};
    use crate::policy::Dimension;

    /// The first version: a character at a time.
    fn escaped_by_char(value: &str) -> String {
        let mut out = String::new();
        for c in value.chars() {
            if matches!(c, '\\' | ',' | '=') {
                out.push('\\');
            }
            out.push(c);
        }
        out
    }

    /// The first version: a five-byte window over the body.
    fn by_window(body: &[u8]) -> bool {
        let Some(at) = body.windows(5).position(|w| w == b"cache" || w == b"ageMe") else {
            return false;
        };
        let rest = &body[at..];
        if !rest.starts_with(b"cached_tokens\":") {
            return true;
        }
        let after = &rest[b"cached_tokens\":".len()..];
        after
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|d| *d != b'0')
            || by_window(after)
    }

    proptest! {
        #[test]
        fn the_search_answers_as_the_window_did(
            parts in prop::collection::vec(
                prop::sample::select(vec![
                    "cache", "cached_tokens\":", "cached_tokens\": 0", "cached_tokens\":3",
                    "ageMe", "usageMetadata", "cach", "geMe", " ", "0", "7", "{\"usage\":", "x",
                ]),
                0..12,
            )
        ) {
            let body = parts.concat();
            prop_assert_eq!(has_usage_detail(body.as_bytes()), by_window(body.as_bytes()), "{}", body);
        }
    }

    proptest! {
        #[test]
        fn scope_values_are_escaped_as_they_were(
            value in "[a-z\\\\,=é東 ]{0,12}",
            before in "[a-z=,]{0,4}",
        ) {
            let mut out = before.clone();
            push_escaped(&mut out, &value);
            prop_assert_eq!(out, before + &escaped_by_char(&value));
        }
    }

    #[test]
    fn dimensions_are_named_as_they_were() {
        for (dim, name) in [
            (Dimension::ApiKey, "api_key"),
            (Dimension::VirtualKey, "virtual_key"),
            (Dimension::User, "user"),
            (Dimension::Team, "team"),
            (Dimension::Provider, "provider"),
            (Dimension::Model, "model"),
            (Dimension::metadata("_user"), "metadata._user"),
        ] {
            let (head, key) = dim.name_parts();
            assert_eq!(dim.to_string(), name);
            assert_eq!(format!("{head}{key}"), name);
            assert_eq!(Dimension::parse(name), Some(dim));
        }
    }

    #[test]
    fn usage_details_are_found_in_one_pass() {
        let openai =
            br#"{"usage":{"prompt_tokens":9,"prompt_tokens_details":{"cached_tokens":0}}}"#;
        assert!(!has_usage_detail(openai));
        let cached =
            br#"{"usage":{"prompt_tokens":9,"prompt_tokens_details":{"cached_tokens": 4}}}"#;
        assert!(has_usage_detail(cached));
        assert!(has_usage_detail(
            br#"{"usage":{"cache_read_input_tokens":3}}"#
        ));
        assert!(has_usage_detail(
            br#"{"usageMetadata":{"promptTokenCount":3}}"#
        ));
        assert!(!has_usage_detail(br#"{"usage":{"prompt_tokens":9}}"#));
    }
}
