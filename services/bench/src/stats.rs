//! Percentiles of exact samples (the runs are small enough to keep every sample).

use serde::Serialize;
use std::time::Duration;

/// A latency distribution in milliseconds.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Summary {
    pub count: usize,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

impl Summary {
    /// None for no samples.
    pub fn of(samples: &mut [Duration]) -> Option<Self> {
        let mut ms: Vec<f64> = samples.iter().map(|d| ms(*d)).collect();
        Self::of_ms(&mut ms)
    }

    /// The same over samples in milliseconds, which may be negative (a difference of two
    /// arrival times). None for no samples.
    pub fn of_ms(samples: &mut [f64]) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable_by(f64::total_cmp);
        let n = samples.len();
        // Nearest rank: the smallest sample with at least q of the samples at or below it.
        let rank = |q: f64| samples[((q * n as f64).ceil() as usize).clamp(1, n) - 1];
        let total: f64 = samples.iter().sum();
        Some(Self {
            count: n,
            p50_ms: rank(0.50),
            p90_ms: rank(0.90),
            p99_ms: rank(0.99),
            max_ms: samples[n - 1],
            mean_ms: total / n as f64,
        })
    }
}

/// `value / floor`, None when the floor is not positive.
pub fn ratio(value: f64, floor: f64) -> Option<f64> {
    (floor > 0.0).then(|| value / floor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut samples: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        let s = Summary::of(&mut samples).expect("samples");
        assert_eq!(s.count, 100);
        assert_eq!(s.p50_ms, 50.0);
        assert_eq!(s.p90_ms, 90.0);
        assert_eq!(s.p99_ms, 99.0);
        assert_eq!(s.max_ms, 100.0);
        assert!((s.mean_ms - 50.5).abs() < 1e-9);
        let one = Summary::of(&mut [Duration::from_micros(1500)]).expect("one sample");
        assert_eq!((one.p50_ms, one.p99_ms, one.max_ms), (1.5, 1.5, 1.5));
        assert!(Summary::of(&mut []).is_none());
    }

    #[test]
    fn signed_samples_keep_their_sign() {
        let mut samples = vec![0.5, -2.0, 1.0, -0.5];
        let s = Summary::of_ms(&mut samples).expect("samples");
        assert_eq!((s.p50_ms, s.p99_ms, s.max_ms), (-0.5, 1.0, 1.0));
        assert!((s.mean_ms + 0.25).abs() < 1e-12);
        assert!(Summary::of_ms(&mut []).is_none());
    }

    #[test]
    fn ratios() {
        assert_eq!(ratio(3.0, 1.5), Some(2.0));
        assert_eq!(ratio(3.0, 0.0), None);
    }
}
