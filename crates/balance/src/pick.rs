//! The choice itself: the weight table built once, the strategies' scores, the load counters.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use http::Request;
use portcullis_core::BufferedBody;
use tokio::time::Instant;

use crate::strategy::{Key, PeakEwma, Strategy, fnv1a, mix};

/// What a balancer knows of its targets, shared by its clones and its futures.
pub(crate) struct Picker {
    pub(crate) names: Box<[Arc<str>]>,
    pub(crate) weights: Box<[f64]>,
    /// Running sums of the weights: a weighted draw is one binary search.
    cumulative: Box<[f64]>,
    total: f64,
    /// How many targets have a weight above 0.
    pub(crate) positive: usize,
    /// Per-target hash seeds for sticky scores, from the names (not the positions).
    seeds: Box<[u64]>,
    pub(crate) strategy: Strategy,
    /// Counters, for the strategies that read them.
    pub(crate) loads: Option<Arc<Loads>>,
}

impl Picker {
    /// A picker over checked weights (finite, >= 0, not all 0).
    pub(crate) fn new(names: Box<[Arc<str>]>, weights: Box<[f64]>, strategy: Strategy) -> Self {
        let mut sum = 0.0;
        let cumulative = weights
            .iter()
            .map(|w| {
                sum += w;
                sum
            })
            .collect();
        let seeds = names.iter().map(|n| mix(fnv1a(n.as_bytes()))).collect();
        let loads = strategy.counts_in_flight().then(|| {
            let ewma = match &strategy {
                Strategy::PeakEwma(settings) => Some(*settings),
                _ => None,
            };
            Arc::new(Loads::new(names.len(), ewma))
        });
        let positive = weights.iter().filter(|&&w| w > 0.0).count();
        Self {
            names,
            weights,
            cumulative,
            total: sum,
            positive,
            seeds,
            strategy,
            loads,
        }
    }

    /// Whether calls are timed for the latency estimate.
    pub(crate) fn tracks_latency(&self) -> bool {
        self.loads.as_deref().is_some_and(Loads::tracks_latency)
    }

    pub(crate) fn len(&self) -> usize {
        self.weights.len()
    }

    /// The sticky key of `req`, when the strategy is sticky.
    pub(crate) fn key(&self, req: &Request<BufferedBody>) -> Option<Key> {
        match &self.strategy {
            Strategy::Sticky(sticky) => sticky.key(req),
            _ => None,
        }
    }

    /// The target to try first, all targets being candidates.
    pub(crate) fn first(&self, rng: &mut fastrand::Rng, key: Option<Key>) -> usize {
        match (&self.strategy, key) {
            (Strategy::Sticky(_), Some(key)) => self.rendezvous(key, |_| true),
            (Strategy::LeastInFlight | Strategy::PeakEwma(_), _) => self.least(rng, |_| true),
            _ => self.table_draw(rng),
        }
        .expect("a built balancer has a positive weight")
    }

    /// The target to try among those `candidate` allows; `None` when none has weight.
    pub(crate) fn next(
        &self,
        rng: &mut fastrand::Rng,
        key: Option<Key>,
        candidate: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        match (&self.strategy, key) {
            (Strategy::Sticky(_), Some(key)) => self.rendezvous(key, candidate),
            (Strategy::LeastInFlight | Strategy::PeakEwma(_), _) => self.least(rng, candidate),
            _ => self.weighted_draw(rng, candidate),
        }
    }

    /// A weighted draw over every target from the table.
    fn table_draw(&self, rng: &mut fastrand::Rng) -> Option<usize> {
        let point = rng.f64() * self.total;
        // `<=`: a target of weight 0 repeats its predecessor's sum and is never found.
        let found = self.cumulative.partition_point(|&sum| sum <= point);
        if found < self.len() {
            return Some(found);
        }
        // Rounding put the point at the very end: the last target with weight.
        self.weights.iter().rposition(|&w| w > 0.0)
    }

    /// A weighted draw over the candidates, their weights renormalised.
    fn weighted_draw(
        &self,
        rng: &mut fastrand::Rng,
        candidate: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        let eligible = |i: usize| self.weights[i] > 0.0 && candidate(i);
        let total: f64 = (0..self.len())
            .filter(|&i| eligible(i))
            .map(|i| self.weights[i])
            .sum();
        if total <= 0.0 {
            return None;
        }
        let mut point = rng.f64() * total;
        let mut last = None;
        for i in (0..self.len()).filter(|&i| eligible(i)) {
            if point < self.weights[i] {
                return Some(i);
            }
            point -= self.weights[i];
            last = Some(i);
        }
        last
    }

    /// The lowest weighted rendezvous score among the candidates.
    fn rendezvous(&self, key: Key, candidate: impl Fn(usize) -> bool) -> Option<usize> {
        let mut best: Option<(usize, f64)> = None;
        for i in 0..self.len() {
            let weight = self.weights[i];
            if weight <= 0.0 || !candidate(i) {
                continue;
            }
            let hash = mix(key.hash() ^ self.seeds[i]);
            // 53 random bits, centred in their interval: u in (0, 1), never 0.
            let u = ((hash >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
            let score = -u.ln() / weight;
            if best.is_none_or(|(_, s)| score < s) {
                best = Some((i, score));
            }
        }
        best.map(|(i, _)| i)
    }

    /// The candidate of least load; ties get a weighted draw.
    fn least(&self, rng: &mut fastrand::Rng, candidate: impl Fn(usize) -> bool) -> Option<usize> {
        let loads = self.loads.as_deref().expect("load strategies count");
        let now = loads.ewma.map(|_| loads.now());
        let eligible = |i: usize| self.weights[i] > 0.0 && candidate(i);
        let cost = |i: usize| loads.cost(i, now);
        let mut best: Option<(usize, f64)> = None;
        for i in (0..self.len()).filter(|&i| eligible(i)) {
            let c = cost(i);
            if best.is_none_or(|(_, b)| c < b) {
                best = Some((i, c));
            }
        }
        let (first, least) = best?;
        let tied = |i: usize| eligible(i) && cost(i) == least;
        // The counters may move between the passes; the first minimum stands then.
        Some(self.weighted_draw(rng, tied).unwrap_or(first))
    }
}

/// Per-target load: requests in flight and the latency estimate.
pub(crate) struct Loads {
    targets: Box<[Load]>,
    ewma: Option<PeakEwma>,
    epoch: Instant,
}

struct Load {
    in_flight: AtomicUsize,
    /// The estimate in nanoseconds, as `f64` bits.
    rtt: AtomicU64,
    /// When the estimate was last updated, in nanoseconds since `epoch`; `NEVER` if never.
    stamp: AtomicU64,
}

const NEVER: u64 = u64::MAX;

impl Loads {
    fn new(n: usize, ewma: Option<PeakEwma>) -> Self {
        Self {
            targets: (0..n)
                .map(|_| Load {
                    in_flight: AtomicUsize::new(0),
                    rtt: AtomicU64::new(0f64.to_bits()),
                    stamp: AtomicU64::new(NEVER),
                })
                .collect(),
            ewma,
            epoch: Instant::now(),
        }
    }

    pub(crate) fn in_flight(&self, index: usize) -> usize {
        self.targets[index].in_flight.load(Ordering::Relaxed)
    }

    pub(crate) fn tracks_latency(&self) -> bool {
        self.ewma.is_some()
    }

    /// A request to `index` starts; the guard ends it when dropped.
    pub(crate) fn start(self: &Arc<Self>, index: usize) -> InFlight {
        self.targets[index]
            .in_flight
            .fetch_add(1, Ordering::Relaxed);
        InFlight {
            loads: self.clone(),
            index,
        }
    }

    fn now(&self) -> u64 {
        self.nanos(Instant::now())
    }

    fn nanos(&self, at: Instant) -> u64 {
        let nanos = at.saturating_duration_since(self.epoch).as_nanos();
        u64::try_from(nanos).unwrap_or(NEVER - 1)
    }

    /// The load figure the strategy minimises.
    fn cost(&self, index: usize, now: Option<u64>) -> f64 {
        let in_flight = self.in_flight(index) as f64;
        match (self.ewma, now) {
            // The +1s: an idle target still costs its latency, an untried one its count.
            (Some(settings), Some(now)) => {
                (self.estimate(index, now, settings) + 1.0) * (in_flight + 1.0)
            }
            _ => in_flight,
        }
    }

    /// The estimate at `now`, decayed toward zero since its last update.
    fn estimate(&self, index: usize, now: u64, settings: PeakEwma) -> f64 {
        let load = &self.targets[index];
        let stamp = load.stamp.load(Ordering::Relaxed);
        if stamp == NEVER {
            return 0.0;
        }
        let rtt = f64::from_bits(load.rtt.load(Ordering::Relaxed));
        rtt * decay_weight(now.saturating_sub(stamp), settings.decay)
    }

    /// Records the time `index` took to answer, `started` to now.
    pub(crate) fn observe(&self, index: usize, started: Instant, failed: bool) {
        let Some(settings) = self.ewma else {
            return;
        };
        let now_at = Instant::now();
        let mut took = now_at.saturating_duration_since(started);
        if failed {
            took = took.max(settings.failure_penalty);
        }
        let took = took.as_nanos() as f64;
        let now = self.nanos(now_at);
        let load = &self.targets[index];
        let stamp = load.stamp.load(Ordering::Relaxed);
        let prev = f64::from_bits(load.rtt.load(Ordering::Relaxed));
        let next = if stamp == NEVER || took > prev {
            took
        } else {
            let w = decay_weight(now.saturating_sub(stamp), settings.decay);
            prev * w + took * (1.0 - w)
        };
        // Two answers landing at once may overwrite each other: one observation of an
        // estimate is lost, which a lock would not be worth.
        load.rtt.store(next.to_bits(), Ordering::Relaxed);
        load.stamp.store(now, Ordering::Relaxed);
    }
}

/// `exp(-elapsed / decay)`: 1 for no time, toward 0 as time passes.
fn decay_weight(elapsed_nanos: u64, decay: Duration) -> f64 {
    let decay = decay.as_nanos().max(1) as f64;
    (-(elapsed_nanos as f64) / decay).exp()
}

/// One request in flight to a target; dropping it ends the request.
pub(crate) struct InFlight {
    loads: Arc<Loads>,
    index: usize,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.loads.targets[self.index]
            .in_flight
            .fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn picker(weights: &[f64], strategy: Strategy) -> Picker {
        let names = (0..weights.len()).map(|i| format!("t{i}").into()).collect();
        Picker::new(names, weights.into(), strategy)
    }

    #[test]
    fn table_draw_never_finds_zero_weights() {
        let p = picker(&[0.0, 1.0, 0.0, 1.0, 0.0], Strategy::Weighted);
        let mut rng = fastrand::Rng::with_seed(1);
        for _ in 0..2_000 {
            let i = p.first(&mut rng, None);
            assert!(i == 1 || i == 3, "{i}");
        }
    }

    #[test]
    fn renormalised_draw_skips_excluded_and_zero() {
        let p = picker(&[1.0, 0.0, 1.0], Strategy::Weighted);
        let mut rng = fastrand::Rng::with_seed(2);
        for _ in 0..100 {
            assert_eq!(p.next(&mut rng, None, |i| i != 0), Some(2));
        }
        assert_eq!(p.next(&mut rng, None, |i| i == 1), None);
    }

    #[test]
    fn peak_estimate_jumps_up_and_decays() {
        let loads = Loads::new(1, Some(PeakEwma::new().decay(Duration::from_secs(1))));
        let settings = loads.ewma.unwrap();
        assert_eq!(loads.estimate(0, 0, settings), 0.0);
        let load = &loads.targets[0];
        load.rtt.store(1e9f64.to_bits(), Ordering::Relaxed);
        load.stamp.store(0, Ordering::Relaxed);
        let one_tau = loads.estimate(0, 1_000_000_000, settings);
        assert!(
            (one_tau - 1e9 / std::f64::consts::E).abs() < 1.0,
            "{one_tau}"
        );
    }
}
