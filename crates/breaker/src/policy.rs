//! [`BreakerPolicy`]: when a circuit opens, how long it stays open, how many probes test it.

use std::time::Duration;

use portcullis_core::BuildError;

/// The thresholds of one circuit.
///
/// A closed circuit opens when either rule trips, checked each time a failure is recorded:
///
/// - **consecutive failures**: `consecutive_failures` failures in a row (default 5);
/// - **failure rate**: at least `failure_rate` of the calls in the last `window` failed, once
///   that window holds at least `minimum_requests` calls (default 50 % of at least 20 calls in
///   30 s).
///
/// It then stays open for `cooldown` (default 30 s), or for the upstream's `Retry-After` when
/// the failure that opened it carried one (capped at `max_cooldown`, default 10 min). After
/// that, `probes` calls (default 1) go through as probes: the first probe to succeed closes
/// the circuit, the first to fail opens it again for a fresh cooldown.
///
/// ```
/// use portcullis_breaker::BreakerPolicy;
/// use std::time::Duration;
///
/// let policy = BreakerPolicy::new()
///     .consecutive_failures(3)
///     .failure_rate(0.25)
///     .minimum_requests(40)
///     .window(Duration::from_secs(60))
///     .cooldown(Duration::from_secs(15))
///     .probes(2);
/// assert_eq!(policy.get_consecutive_failures(), 3);
/// assert_eq!(policy.get_max_cooldown(), Duration::from_secs(600));
/// assert!(policy.check().is_ok());
///
/// // Settings are checked when the breaker is built, with the setting's name.
/// let err = BreakerPolicy::new().failure_rate(1.5).check().unwrap_err();
/// assert_eq!(err.to_string(), "failure_rate: must be within 0.0..=1.0, got 1.5");
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BreakerPolicy {
    consecutive_failures: u32,
    failure_rate: f64,
    minimum_requests: u32,
    window: Duration,
    cooldown: Duration,
    max_cooldown: Duration,
    probes: u32,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            failure_rate: 0.5,
            minimum_requests: 20,
            window: Duration::from_secs(30),
            cooldown: Duration::from_secs(30),
            max_cooldown: Duration::from_secs(600),
            probes: 1,
        }
    }
}

impl BreakerPolicy {
    /// The default policy (see the type's docs).
    pub fn new() -> Self {
        Self::default()
    }

    /// Opens after `n` failures in a row; `0` turns this rule off.
    pub fn consecutive_failures(mut self, n: u32) -> Self {
        self.consecutive_failures = n;
        self
    }

    /// Opens when at least this share of the calls in the window failed (`0.5` is 50 %);
    /// `0.0` turns this rule off. A rate outside `0.0..=1.0` fails [`check`](Self::check)
    /// and so the breaker's build.
    pub fn failure_rate(mut self, rate: f64) -> Self {
        self.failure_rate = rate;
        self
    }

    /// The failure rate is only judged once the window holds at least `n` calls.
    pub fn minimum_requests(mut self, n: u32) -> Self {
        self.minimum_requests = n;
        self
    }

    /// How far back the failure rate looks. A zero window fails [`check`](Self::check).
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// How long a circuit stays open when the failure that opened it gave no `Retry-After`.
    pub fn cooldown(mut self, cooldown: Duration) -> Self {
        self.cooldown = cooldown;
        self
    }

    /// The longest cooldown an upstream's `Retry-After` may ask for.
    pub fn max_cooldown(mut self, max: Duration) -> Self {
        self.max_cooldown = max;
        self
    }

    /// How many calls a half-open circuit lets through to test the target. Zero fails
    /// [`check`](Self::check): a circuit with no probe would never close again.
    pub fn probes(mut self, n: u32) -> Self {
        self.probes = n;
        self
    }

    /// Checks the settings, as [`CircuitBreakerBuilder::build`](crate::CircuitBreakerBuilder::build)
    /// does; the error's path names the setting (`failure_rate`, `window`, `probes`).
    pub fn check(&self) -> Result<(), BuildError> {
        if !(0.0..=1.0).contains(&self.failure_rate) {
            return Err(BuildError::at(
                "failure_rate",
                format!("must be within 0.0..=1.0, got {}", self.failure_rate),
            ));
        }
        if self.window.is_zero() {
            return Err(BuildError::at("window", "must be more than zero"));
        }
        if self.probes == 0 {
            return Err(BuildError::at(
                "probes",
                "must be at least 1: a half-open circuit with no probe never closes",
            ));
        }
        Ok(())
    }

    /// Failures in a row that open the circuit (0: rule off).
    pub fn get_consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// The failure share that opens the circuit (0.0: rule off).
    pub fn get_failure_rate(&self) -> f64 {
        self.failure_rate
    }

    /// Calls the window must hold before the failure rate is judged.
    pub fn get_minimum_requests(&self) -> u32 {
        self.minimum_requests
    }

    /// How far back the failure rate looks.
    pub fn get_window(&self) -> Duration {
        self.window
    }

    /// The cooldown when no `Retry-After` was given.
    pub fn get_cooldown(&self) -> Duration {
        self.cooldown
    }

    /// The cap on a cooldown taken from `Retry-After`.
    pub fn get_max_cooldown(&self) -> Duration {
        self.max_cooldown
    }

    /// Probes let through while half-open.
    pub fn get_probes(&self) -> u32 {
        self.probes
    }

    /// How long a circuit opened by a failure stays open: the upstream's wait, capped, or the
    /// default cooldown.
    pub fn cooldown_for(&self, retry_after: Option<Duration>) -> Duration {
        retry_after.map_or(self.cooldown, |wait| wait.min(self.max_cooldown))
    }

    /// Whether `failures` out of `total` calls in the window open the circuit by rate.
    pub fn rate_trips(&self, failures: u64, total: u64) -> bool {
        self.failure_rate > 0.0
            && total > 0
            && total >= u64::from(self.minimum_requests)
            && failures as f64 >= self.failure_rate * total as f64
    }

    /// Whether `run` failures in a row open the circuit.
    pub fn consecutive_trips(&self, run: u32) -> bool {
        self.consecutive_failures > 0 && run >= self.consecutive_failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_trip_at_their_thresholds() {
        let p = BreakerPolicy::new();
        assert!(!p.consecutive_trips(4));
        assert!(p.consecutive_trips(5));
        assert!(!p.rate_trips(10, 19), "below the minimum volume");
        assert!(p.rate_trips(10, 20));
        assert!(!p.rate_trips(9, 20));
        let off = p.consecutive_failures(0).failure_rate(0.0);
        assert!(!off.consecutive_trips(100));
        assert!(!off.rate_trips(100, 100));
    }

    #[test]
    fn retry_after_is_capped() {
        let p = BreakerPolicy::new().max_cooldown(Duration::from_secs(60));
        assert_eq!(p.cooldown_for(None), Duration::from_secs(30));
        assert_eq!(
            p.cooldown_for(Some(Duration::from_secs(5))),
            Duration::from_secs(5)
        );
        assert_eq!(
            p.cooldown_for(Some(Duration::from_secs(3600))),
            Duration::from_secs(60)
        );
    }

    #[test]
    fn bad_settings_fail_the_check_with_their_name() {
        let path = |p: BreakerPolicy| p.check().unwrap_err().path().to_owned();
        assert_eq!(path(BreakerPolicy::new().probes(0)), "probes");
        assert_eq!(path(BreakerPolicy::new().window(Duration::ZERO)), "window");
        assert_eq!(
            path(BreakerPolicy::new().failure_rate(-0.1)),
            "failure_rate"
        );
        assert_eq!(
            path(BreakerPolicy::new().failure_rate(f64::NAN)),
            "failure_rate"
        );
        assert!(BreakerPolicy::new().failure_rate(1.0).check().is_ok());
        assert!(BreakerPolicy::new().failure_rate(0.0).check().is_ok());
    }
}
