//! Time in tsd. The wall clock is only shown to users (a post's time); what orders changes
//! and decides "posts made after the follow" is a hybrid logical clock: each change is
//! stamped where it is first made with max(wall clock, last stamp + 1), and every server's
//! clock moves past each stamp it stores. So a change made after another one was seen
//! carries a higher stamp, whatever the wall clocks of the clusters say: a clock stepped
//! back, or minutes of skew between clusters, hides nothing.

use tinysns_common::proto::internal::LogEntry;

/// The wall clock, shifted by `skew_ms` (to rehearse a skewed or stepped clock in tests).
#[derive(Debug, Clone, Copy, Default)]
pub struct WallClock {
    pub skew_ms: i64,
}

impl WallClock {
    pub fn now_ms(&self) -> i64 {
        tinysns_common::now_ms().saturating_add(self.skew_ms)
    }

    fn now_us(&self) -> u64 {
        let us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or(0);
        us.saturating_add(self.skew_ms.saturating_mul(1000)).max(0) as u64
    }
}

/// A hybrid logical clock in microseconds.
#[derive(Debug, Clone)]
pub struct Hlc {
    wall: WallClock,
    last: u64,
}

impl Hlc {
    /// Starts above every stamp already stored (`floor`).
    pub fn new(wall: WallClock, floor: u64) -> Self {
        Self { wall, last: floor }
    }

    /// The stamp for a change made here now.
    pub fn tick(&mut self) -> u64 {
        self.last = self.wall.now_us().max(self.last + 1);
        self.last
    }

    /// A stamp made elsewhere was stored here: later changes made here come after it.
    pub fn observe(&mut self, stamp: u64) {
        self.last = self.last.max(stamp);
    }

    pub fn wall(&self) -> WallClock {
        self.wall
    }
}

/// The stamp of an entry (entries from before stamps existed: their wall-clock time).
pub fn stamp(entry: &LogEntry) -> u64 {
    if entry.hlc != 0 {
        entry.hlc
    } else {
        entry.timestamp_ms.max(0) as u64 * 1000
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_only_grow_even_when_the_wall_clock_steps_back() {
        let mut hlc = Hlc::new(WallClock::default(), 0);
        let a = hlc.tick();
        // The wall clock jumps back ten minutes.
        hlc.wall = WallClock { skew_ms: -600_000 };
        let b = hlc.tick();
        let c = hlc.tick();
        assert!(a < b && b < c, "{a} {b} {c}");
    }

    #[test]
    fn a_change_made_after_one_seen_from_a_clock_ahead_comes_after_it() {
        let ahead = Hlc::new(WallClock { skew_ms: 300_000 }, 0).tick();
        let mut here = Hlc::new(WallClock::default(), 0);
        assert!(here.tick() < ahead);
        here.observe(ahead);
        assert!(here.tick() > ahead);
    }

    #[test]
    fn a_restarted_clock_starts_above_what_was_stored() {
        let far = WallClock { skew_ms: 3_600_000 }.now_us();
        let mut hlc = Hlc::new(WallClock::default(), far);
        assert!(hlc.tick() > far);
    }

    #[test]
    fn old_entries_are_stamped_by_their_wall_clock_time() {
        let entry = LogEntry {
            timestamp_ms: 1_500,
            ..Default::default()
        };
        assert_eq!(stamp(&entry), 1_500_000);
        assert_eq!(stamp(&LogEntry { hlc: 7, ..entry }), 7);
    }
}
