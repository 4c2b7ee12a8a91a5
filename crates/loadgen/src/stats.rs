//! Latency percentiles from every sample: a `Vec<u32>` of microseconds, sorted once at the
//! end of a run. A 5-second run at 30 000 requests per second keeps 600 KB, so there is no
//! reason to bucket.
//!
//! ```
//! use portcullis_loadgen::stats::Summary;
//!
//! let s = Summary::of((1..=1000).collect()).unwrap();
//! assert_eq!((s.p50, s.p90, s.p99, s.p999, s.max), (500, 900, 990, 999, 1000));
//! assert!(Summary::of(Vec::new()).is_none());
//! ```

/// Percentiles of a set of samples, in microseconds (nearest rank: the smallest sample with
/// at least that share of samples at or below it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    /// Number of samples.
    pub count: usize,
    /// Median.
    pub p50: u32,
    /// 90th percentile.
    pub p90: u32,
    /// 99th percentile.
    pub p99: u32,
    /// 99.9th percentile.
    pub p999: u32,
    /// Largest sample.
    pub max: u32,
}

impl Summary {
    /// Summarises `samples` (µs); `None` when there are none.
    pub fn of(mut samples: Vec<u32>) -> Option<Summary> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let at = |q: f64| {
            // Nearest rank, in integer permille so 0.999 × 1000 is exactly 999.
            let permille = (q * 1000.0).round() as usize;
            let rank = (samples.len() * permille).div_ceil(1000).max(1);
            samples[rank - 1]
        };
        Some(Summary {
            count: samples.len(),
            p50: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
            p999: at(0.999),
            max: samples[samples.len() - 1],
        })
    }
}

/// Microseconds in `d`, saturating at `u32::MAX` (71 minutes).
pub fn micros(d: std::time::Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_on_small_sets() {
        let one = Summary::of(vec![7]).unwrap();
        assert_eq!((one.p50, one.p999, one.max), (7, 7, 7));
        let s = Summary::of(vec![40, 10, 30, 20]).unwrap();
        assert_eq!((s.count, s.p50, s.p90, s.p99, s.max), (4, 20, 40, 40, 40));
        let tail =
            Summary::of((0..10_000).map(|i| if i < 9_990 { 1 } else { 9 }).collect()).unwrap();
        assert_eq!((tail.p99, tail.p999), (1, 1));
        let tail =
            Summary::of((0..10_000).map(|i| if i < 9_989 { 1 } else { 9 }).collect()).unwrap();
        assert_eq!(tail.p999, 9);
    }
}
