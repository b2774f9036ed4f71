//! The one retry backoff of every loop that waits on a peer (a slave, tsd, the broker, a
//! server for the user): delays that double from `first` up to `max`, with jitter so that
//! many waiters do not retry in step, forever, until [`Backoff::reset`] after a success.
//! The loops keep their own semantics (what to retry, when to stop); only the delays live here.

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use std::time::Duration;

#[derive(Debug)]
pub struct Backoff {
    builder: ExponentialBuilder,
    delays: ExponentialBackoff,
    max: Duration,
}

impl Backoff {
    pub fn new(first: Duration, max: Duration) -> Self {
        let builder = ExponentialBuilder::default()
            .with_min_delay(first)
            .with_max_delay(max)
            .with_factor(2.0)
            .with_jitter()
            .without_max_times();
        Self {
            delays: builder.build(),
            builder,
            max,
        }
    }

    /// The delay before the next try.
    pub fn next_delay(&mut self) -> Duration {
        self.delays.next().unwrap_or(self.max)
    }

    /// After a success: the next failure waits `first` again.
    pub fn reset(&mut self) {
        self.delays = self.builder.build();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_to_the_cap_and_start_over_after_a_reset() {
        let first = Duration::from_millis(20);
        let max = Duration::from_millis(500);
        let mut backoff = Backoff::new(first, max);
        let delays: Vec<Duration> = (0..12).map(|_| backoff.next_delay()).collect();
        // Jitter adds up to one delay on top of each step.
        assert!(delays[0] >= first && delays[0] <= first * 2, "{delays:?}");
        assert!(delays.iter().all(|d| *d <= max * 2), "{delays:?}");
        assert!(delays[11] >= max, "reaches the cap: {delays:?}");
        backoff.reset();
        assert!(backoff.next_delay() <= first * 2);
    }
}
