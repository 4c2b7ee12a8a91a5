//! [`RetryPolicy`]: which answers to retry, how long to wait, and when to stop.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{Request, Response, StatusCode};
use portcullis_core::context::{Attempt, AttemptBudget};
use portcullis_core::error::{ErrorClass, to_http_error};
use portcullis_core::facts::{ResponseFacts, Retries};
use portcullis_core::{BoxError, BuildError, StatusSet, retry_after};
use tower::retry::budget::{Budget, TpsBudget};

use crate::backoff::{self, Backoff, Jitter, RandomJitter, SeededJitter};

/// The most retries a policy may make after the first try.
pub const MAX_ATTEMPTS: u32 = 10;

/// The statuses retried when no list is given: 429, 500, 502, 503, 504 (Portkey's).
pub const DEFAULT_STATUS_CODES: [u16; 5] = [429, 500, 502, 503, 504];

/// The default base of the backoff: the first retry waits up to this long.
pub const DEFAULT_BACKOFF_BASE: Duration = Duration::from_millis(500);

/// The default cap of the backoff window.
pub const DEFAULT_BACKOFF_CAP: Duration = Duration::from_secs(8);

/// The default cap on the total wait of one request across its retries (Portkey's 60 s).
pub const DEFAULT_MAX_TOTAL_WAIT: Duration = Duration::from_secs(60);

/// The default budget window: retries are counted against the requests of the last 10 s.
pub const DEFAULT_BUDGET_TTL: Duration = Duration::from_secs(10);

/// The default budget floor: 10 retries per second are always allowed.
pub const DEFAULT_BUDGET_MIN_PER_SEC: u32 = 10;

/// The default budget ratio: retries may add 20% to the load of first tries.
pub const DEFAULT_BUDGET_RATIO: f32 = 0.2;

/// Decides, answer by answer, whether to try a request again and how long to wait first.
///
/// It implements [`tower::retry::Policy`] for `Request<B>` with any replayable body
/// (`B: Clone`, such as [`BufferedBody`](portcullis_core::BufferedBody) or
/// `http_body_util::Full<Bytes>`), `Response<R>` with any body, and [`BoxError`], so it drives
/// [`Retry`](crate::Retry) and also works with [`tower::retry::Retry`] directly (without the
/// per-attempt timeout and the stream check, which [`Retry`](crate::Retry) adds around each
/// attempt).
///
/// Like every tower policy it is cloned for each request: clones share the settings, the
/// retry budget and the jitter source, and each request counts its own retries and waits.
///
/// ```
/// use std::time::Duration;
/// use portcullis_retry::RetryPolicy;
///
/// let policy = RetryPolicy::builder(3)
///     .on_status_codes([429, 503])
///     .use_retry_after_header(true)
///     .attempt_timeout(Duration::from_secs(30))
///     .build()
///     .unwrap();
/// assert_eq!(policy.attempts(), 3);
/// assert!(RetryPolicy::builder(11).build().is_err());
/// ```
#[derive(Clone)]
pub struct RetryPolicy {
    config: Arc<Config>,
    /// Retries made so far for this request.
    retries: u32,
    /// Time waited so far for this request.
    waited: Duration,
}

struct Config {
    attempts: u32,
    statuses: StatusSet,
    use_retry_after: bool,
    max_total_wait: Duration,
    backoff_base: Duration,
    backoff_cap: Duration,
    attempt_timeout: Option<Duration>,
    budget: Option<Arc<TpsBudget>>,
    jitter: Arc<dyn Jitter>,
    clock: fn() -> SystemTime,
}

impl RetryPolicy {
    /// A builder for a policy that retries up to `attempts` times after the first try
    /// (0 turns retries off; more than [`MAX_ATTEMPTS`] fails to build).
    pub fn builder(attempts: u32) -> RetryPolicyBuilder {
        RetryPolicyBuilder {
            attempts,
            statuses: None,
            use_retry_after: false,
            max_total_wait: DEFAULT_MAX_TOTAL_WAIT,
            backoff: (DEFAULT_BACKOFF_BASE, DEFAULT_BACKOFF_CAP),
            attempt_timeout: None,
            budget: BudgetSetting::Own(
                DEFAULT_BUDGET_TTL,
                DEFAULT_BUDGET_MIN_PER_SEC,
                DEFAULT_BUDGET_RATIO,
            ),
            jitter: None,
            clock: SystemTime::now,
        }
    }

    /// Retries allowed after the first try.
    pub fn attempts(&self) -> u32 {
        self.config.attempts
    }

    /// The time allowed to each attempt, if any.
    pub fn attempt_timeout(&self) -> Option<Duration> {
        self.config.attempt_timeout
    }

    /// Whether a response with `status` is retried.
    pub fn retries_on(&self, status: StatusCode) -> bool {
        self.config.attempts > 0 && self.config.statuses.contains(status)
    }

    /// The retry budget shared by the clones of this policy, if it has one.
    pub fn budget(&self) -> Option<&Arc<TpsBudget>> {
        self.config.budget.as_ref()
    }

    /// Why an answer is worth another try, or `None` when it is final.
    fn failure<R>(&self, result: &Result<Response<R>, BoxError>) -> Option<Failure> {
        match result {
            Ok(response) if response.extensions().get::<NotStarted>().is_some() => {
                Some(Failure { retry_after: None })
            }
            Ok(response) => self.status_failure(response.status(), || {
                retry_after(response.headers(), (self.config.clock)())
            }),
            Err(err) => match ErrorClass::of(err) {
                // The request's whole attempt budget is spent, or nothing inside can serve:
                // another try would be refused too.
                ErrorClass::Unavailable | ErrorClass::AttemptsExhausted => None,
                // An HTTP answer of its own: retried only when its status is listed.
                ErrorClass::Answer(status) | ErrorClass::Refused(status) => {
                    self.status_failure(status, || to_http_error(err).retry_after())
                }
                // A transport failure (or an error this policy does not know): nothing reached
                // the client, so another try is safe.
                ErrorClass::Failure => Some(Failure { retry_after: None }),
            },
        }
    }

    fn status_failure(
        &self,
        status: StatusCode,
        requested: impl FnOnce() -> Option<Duration>,
    ) -> Option<Failure> {
        if !self.config.statuses.contains(status) {
            return None;
        }
        let honoured = self.config.use_retry_after
            && matches!(
                status,
                StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
            );
        Some(Failure {
            retry_after: if honoured { requested() } else { None },
        })
    }

    /// The wait before the next retry of `req`, or `None` when no retry is allowed: attempts
    /// used, the request's whole [`AttemptBudget`] spent, the total wait would pass its cap,
    /// or the retry budget is spent (checked last, so a refused retry never takes from it).
    fn next_wait<B>(&self, failure: Failure, req: &Request<B>) -> Option<Duration> {
        let config = &*self.config;
        if self.retries >= config.attempts || attempts_spent(req) {
            return None;
        }
        let wait = failure.retry_after.unwrap_or_else(|| {
            let window = backoff::window(config.backoff_base, config.backoff_cap, self.retries + 1);
            config.jitter.pick(window).min(window)
        });
        if self.waited.saturating_add(wait) > config.max_total_wait {
            return None;
        }
        if let Some(budget) = &config.budget
            && !budget.withdraw()
        {
            return None;
        }
        Some(wait)
    }

    fn finish<R>(result: &mut Result<Response<R>, BoxError>, retries: Retries) {
        if let Ok(response) = result {
            response.extensions_mut().remove::<NotStarted>();
            ResponseFacts::get_mut(response).retries = Some(retries);
        }
    }
}

impl fmt::Debug for RetryPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &*self.config;
        f.debug_struct("RetryPolicy")
            .field("attempts", &c.attempts)
            .field("on_status_codes", &c.statuses)
            .field("use_retry_after_header", &c.use_retry_after)
            .field("max_total_wait", &c.max_total_wait)
            .field("backoff_base", &c.backoff_base)
            .field("backoff_cap", &c.backoff_cap)
            .field("attempt_timeout", &c.attempt_timeout)
            .field("budget", &c.budget)
            .field("retries", &self.retries)
            .field("waited", &self.waited)
            .finish_non_exhaustive()
    }
}

/// A request is sent again as a clone taken before it was sent, so any `B: Clone` whose clone
/// holds the whole body replays it ([`BufferedBody`](portcullis_core::BufferedBody) always
/// does; `Full<Bytes>` and `String` do before they are polled, which is when they are
/// copied). A body that is not `Clone` (`axum::body::Body`, hyper's `Incoming`) has to be
/// read first: put [`Edge`](portcullis_core::Edge) in front, which reads it once into a
/// `BufferedBody`, or collect it into `Full<Bytes>`.
impl<B, R> tower::retry::Policy<Request<B>, Response<R>, BoxError> for RetryPolicy
where
    B: Clone,
{
    type Future = Backoff;

    fn retry(
        &mut self,
        req: &mut Request<B>,
        result: &mut Result<Response<R>, BoxError>,
    ) -> Option<Backoff> {
        let Some(failure) = self.failure(result) else {
            Self::finish(result, Retries::Made(self.retries));
            return None;
        };
        let Some(wait) = self.next_wait(failure, req) else {
            Self::finish(result, Retries::Exhausted);
            return None;
        };
        self.retries += 1;
        self.waited += wait;
        req.extensions_mut().insert(Attempt(self.retries));
        Some(Backoff::new(wait))
    }

    fn clone_request(&mut self, req: &Request<B>) -> Option<Request<B>> {
        if self.config.attempts == 0 {
            return None;
        }
        // Tower asks for a copy before the first try and after each retry; the first try is
        // the one that earns the budget its share.
        if self.retries == 0
            && let Some(budget) = &self.config.budget
        {
            budget.deposit();
        }
        Some(req.clone())
    }
}

/// Whether the request has no upstream attempt left in its whole [`AttemptBudget`] (one
/// atomic load; a request without a budget has no such limit). A retry then would only be
/// refused with `AttemptsExhausted` after its wait: the last real answer is better.
fn attempts_spent<B>(req: &Request<B>) -> bool {
    req.extensions()
        .get::<AttemptBudget>()
        .is_some_and(|budget| budget.remaining() == 0)
}

/// A retryable answer, with the wait its upstream asked for when that is honoured.
#[derive(Clone, Copy, Debug)]
struct Failure {
    retry_after: Option<Duration>,
}

/// Marks a stream response whose body failed before its first event (set by the attempt, read
/// and removed by the policy).
#[derive(Clone, Copy, Debug)]
pub(crate) struct NotStarted;

#[derive(Clone)]
enum BudgetSetting {
    Own(Duration, u32, f32),
    Shared(Arc<TpsBudget>),
    Off,
}

/// Builds a [`RetryPolicy`]; start with [`RetryPolicy::builder`].
///
/// Settings that Portkey's `retry` config has keep its meaning: `attempts`,
/// `on_status_codes`, `use_retry_after_header` (a config loader should accept the plural
/// `use_retry_after_headers` too) and `request_timeout`
/// ([`attempt_timeout`](Self::attempt_timeout)).
#[derive(Clone)]
pub struct RetryPolicyBuilder {
    attempts: u32,
    statuses: Option<Vec<u16>>,
    use_retry_after: bool,
    max_total_wait: Duration,
    backoff: (Duration, Duration),
    attempt_timeout: Option<Duration>,
    budget: BudgetSetting,
    jitter: Option<Arc<dyn Jitter>>,
    clock: fn() -> SystemTime,
}

impl RetryPolicyBuilder {
    /// Retries responses with these statuses, replacing the default list
    /// ([`DEFAULT_STATUS_CODES`]). Transport errors are retried whatever the list; an empty
    /// list retries only them. Codes must be 100 to 599.
    pub fn on_status_codes(mut self, codes: impl IntoIterator<Item = u16>) -> Self {
        self.statuses = Some(codes.into_iter().collect());
        self
    }

    /// Honours the wait a 429 or 503 asks for (`retry-after-ms`, `x-ms-retry-after-ms`,
    /// `retry-after` in seconds or as an HTTP date) instead of the backoff. Off by default,
    /// as in Portkey.
    pub fn use_retry_after_header(mut self, honour: bool) -> Self {
        self.use_retry_after = honour;
        self
    }

    /// Caps the total wait of one request across its retries (default 60 s): when the next
    /// wait would pass it, the layer stops and returns the last answer. Backoff waits count
    /// as well as requested ones.
    pub fn max_total_wait(mut self, cap: Duration) -> Self {
        self.max_total_wait = cap;
        self
    }

    /// Sets the backoff: retry `k` waits a random time in `[0, min(cap, base × 2^(k-1))]`
    /// (defaults 0.5 s and 8 s). `base` may not exceed `cap`.
    pub fn backoff(mut self, base: Duration, cap: Duration) -> Self {
        self.backoff = (base, cap);
        self
    }

    /// Gives each attempt `timeout` to answer (Portkey's `request_timeout`): past it the
    /// attempt fails with [`RequestTimeout`](portcullis_core::error::RequestTimeout) (408)
    /// and is retried like a transport error. For a stream, the attempt lasts until its first
    /// event. Off by default.
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = Some(timeout);
        self
    }

    /// A budget of its own (see [`TpsBudget::new`]): over the last `ttl` (1 to 60 s), retries
    /// may add `ratio` (0 to 1000) of the first tries, and at least `min_per_sec` per second.
    /// Default: 10 s, 10 per second, 0.2. When it is spent, a retryable answer is returned
    /// at once. Every service built from this policy (and their clones) shares it.
    pub fn budget(mut self, ttl: Duration, min_per_sec: u32, ratio: f32) -> Self {
        self.budget = BudgetSetting::Own(ttl, min_per_sec, ratio);
        self
    }

    /// A budget shared with other policies, e.g. every target that calls the same upstream.
    pub fn shared_budget(mut self, budget: Arc<TpsBudget>) -> Self {
        self.budget = BudgetSetting::Shared(budget);
        self
    }

    /// No budget: every allowed retry is made, however many requests fail.
    pub fn no_budget(mut self) -> Self {
        self.budget = BudgetSetting::Off;
        self
    }

    /// Picks backoff waits with `jitter` instead of the thread-local generator.
    pub fn jitter(mut self, jitter: impl Jitter) -> Self {
        self.jitter = Some(Arc::new(jitter));
        self
    }

    /// Picks backoff waits from a generator seeded with `seed`, shared by every request, so a
    /// run's waits repeat.
    pub fn jitter_seed(self, seed: u64) -> Self {
        self.jitter(SeededJitter::new(seed))
    }

    /// The clock that HTTP dates in `retry-after` are counted from (default
    /// [`SystemTime::now`]).
    pub fn clock(mut self, now: fn() -> SystemTime) -> Self {
        self.clock = now;
        self
    }

    /// Checks the settings and builds the policy.
    pub fn build(self) -> Result<RetryPolicy, BuildError> {
        if self.attempts > MAX_ATTEMPTS {
            return Err(BuildError::at(
                "attempts",
                format!("must be at most {MAX_ATTEMPTS}, got {}", self.attempts),
            ));
        }
        let statuses = match &self.statuses {
            None => StatusSet::new(DEFAULT_STATUS_CODES).expect("the defaults are statuses"),
            Some(codes) => StatusSet::new(codes.iter().copied())
                .map_err(|e| BuildError::at("on_status_codes", e.to_string()))?,
        };
        let (backoff_base, backoff_cap) = self.backoff;
        if backoff_base > backoff_cap {
            return Err(BuildError::at(
                "backoff",
                format!("the base ({backoff_base:?}) must not exceed the cap ({backoff_cap:?})"),
            ));
        }
        if self.attempt_timeout.is_some_and(|t| t.is_zero()) {
            return Err(BuildError::at("request_timeout", "must be more than 0 ms"));
        }
        let budget = match self.budget {
            BudgetSetting::Own(ttl, min_per_sec, ratio) => {
                Some(Arc::new(own_budget(ttl, min_per_sec, ratio)?))
            }
            BudgetSetting::Shared(budget) => Some(budget),
            BudgetSetting::Off => None,
        };
        Ok(RetryPolicy {
            config: Arc::new(Config {
                attempts: self.attempts,
                statuses,
                use_retry_after: self.use_retry_after,
                max_total_wait: self.max_total_wait,
                backoff_base,
                backoff_cap,
                attempt_timeout: self.attempt_timeout,
                budget,
                jitter: self.jitter.unwrap_or_else(|| Arc::new(RandomJitter)),
                clock: self.clock,
            }),
            retries: 0,
            waited: Duration::ZERO,
        })
    }
}

/// A [`TpsBudget`], with its preconditions checked here instead of panicking there.
fn own_budget(ttl: Duration, min_per_sec: u32, ratio: f32) -> Result<TpsBudget, BuildError> {
    if !(Duration::from_secs(1)..=Duration::from_secs(60)).contains(&ttl) {
        return Err(BuildError::at(
            "budget",
            format!("the window must be 1 to 60 s, got {ttl:?}"),
        ));
    }
    if !(0.0..=1000.0).contains(&ratio) {
        return Err(BuildError::at(
            "budget",
            format!("the ratio must be 0 to 1000, got {ratio}"),
        ));
    }
    if min_per_sec >= i32::MAX as u32 {
        return Err(BuildError::at(
            "budget",
            format!("the floor must be below {}, got {min_per_sec}", i32::MAX),
        ));
    }
    Ok(TpsBudget::new(ttl, min_per_sec, ratio))
}

impl fmt::Debug for RetryPolicyBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryPolicyBuilder")
            .field("attempts", &self.attempts)
            .field("on_status_codes", &self.statuses)
            .field("use_retry_after_header", &self.use_retry_after)
            .field("max_total_wait", &self.max_total_wait)
            .field("backoff", &self.backoff)
            .field("attempt_timeout", &self.attempt_timeout)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_core::Body;
    use portcullis_core::error::AttemptsExhausted;

    #[test]
    fn build_checks_every_setting() {
        let err = |b: RetryPolicyBuilder| b.build().unwrap_err().path().to_owned();
        assert_eq!(err(RetryPolicy::builder(11)), "attempts");
        assert_eq!(
            RetryPolicy::builder(11).build().unwrap_err().to_string(),
            "attempts: must be at most 10, got 11"
        );
        assert_eq!(
            err(RetryPolicy::builder(1).on_status_codes([503, 99])),
            "on_status_codes"
        );
        assert_eq!(
            err(RetryPolicy::builder(1).on_status_codes([600])),
            "on_status_codes"
        );
        assert_eq!(
            err(RetryPolicy::builder(1).backoff(Duration::from_secs(2), Duration::from_secs(1))),
            "backoff"
        );
        assert_eq!(
            err(RetryPolicy::builder(1).attempt_timeout(Duration::ZERO)),
            "request_timeout"
        );
        assert_eq!(
            err(RetryPolicy::builder(1).budget(Duration::from_millis(999), 1, 0.2)),
            "budget"
        );
        assert_eq!(
            err(RetryPolicy::builder(1).budget(Duration::from_secs(1), 1, -0.1)),
            "budget"
        );
        assert_eq!(
            err(RetryPolicy::builder(1).budget(Duration::from_secs(1), 1, f32::NAN)),
            "budget"
        );
        assert!(RetryPolicy::builder(10).build().is_ok());
        assert!(RetryPolicy::builder(0).build().is_ok());
    }

    #[test]
    fn default_and_custom_lists() {
        let default = RetryPolicy::builder(2).build().unwrap();
        for code in DEFAULT_STATUS_CODES {
            assert!(default.retries_on(StatusCode::from_u16(code).unwrap()));
        }
        for code in [400, 401, 402, 403, 404, 408, 446, 501] {
            assert!(!default.retries_on(StatusCode::from_u16(code).unwrap()));
        }
        let custom = RetryPolicy::builder(2)
            .on_status_codes([446])
            .build()
            .unwrap();
        assert!(custom.retries_on(StatusCode::from_u16(446).unwrap()));
        assert!(!custom.retries_on(StatusCode::SERVICE_UNAVAILABLE));
        let off = RetryPolicy::builder(0).build().unwrap();
        assert!(!off.retries_on(StatusCode::SERVICE_UNAVAILABLE));
    }

    #[test]
    fn a_spent_attempt_budget_is_final_even_when_502_is_listed() {
        let policy = RetryPolicy::builder(3)
            .on_status_codes([502])
            .build()
            .unwrap();
        let spent: Result<Response<Body>, BoxError> = Err(AttemptsExhausted { limit: 4 }.into());
        assert!(policy.failure(&spent).is_none());
        let transport: Result<Response<Body>, BoxError> = Err("reset".into());
        assert!(policy.failure(&transport).is_some());
    }
}
