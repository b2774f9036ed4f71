//! Who is present in the rooms this cluster hosts: a member is present for `idle` after it
//! last looked at the room or spoke in it, then away, and dropped from the map (so it holds
//! only members seen recently). Kept in the master's memory: after a failover members show
//! as away until their pages next look at the room (every few seconds).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct RoomPresence {
    idle: Duration,
    seen: Mutex<HashMap<String, HashMap<u64, Instant>>>,
}

impl RoomPresence {
    pub fn new(idle: Duration) -> Self {
        Self {
            idle,
            seen: Mutex::default(),
        }
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashMap<u64, Instant>>> {
        self.seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `user` is in `room` at `now`.
    pub fn touch(&self, room: &str, user: u64, now: Instant) {
        let mut seen = self.seen();
        seen.entry(room.to_owned()).or_default().insert(user, now);
    }

    /// `user` left `room` (or the room is gone: `forget_room`).
    pub fn forget(&self, room: &str, user: u64) {
        let mut seen = self.seen();
        if let Some(users) = seen.get_mut(room) {
            users.remove(&user);
            if users.is_empty() {
                seen.remove(room);
            }
        }
    }

    pub fn forget_room(&self, room: &str) {
        self.seen().remove(room);
    }

    /// The members of `room` present at `now`; those idle longer are dropped.
    pub fn present(&self, room: &str, now: Instant) -> HashSet<u64> {
        let mut seen = self.seen();
        let Some(users) = seen.get_mut(room) else {
            return HashSet::new();
        };
        users.retain(|_, last| now.saturating_duration_since(*last) <= self.idle);
        let present = users.keys().copied().collect();
        if users.is_empty() {
            seen.remove(room);
        }
        present
    }

    /// Rooms with anyone in the map (a gauge; idle members not yet dropped count).
    pub fn rooms(&self) -> usize {
        self.seen().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_is_present_until_idle_then_away_and_dropped() {
        let presence = RoomPresence::new(Duration::from_secs(60));
        let t0 = Instant::now();
        presence.touch("lobby", 1, t0);
        presence.touch("lobby", 2, t0 + Duration::from_secs(30));
        assert_eq!(
            presence.present("lobby", t0 + Duration::from_secs(60)),
            HashSet::from([1, 2])
        );
        assert_eq!(
            presence.present("lobby", t0 + Duration::from_secs(61)),
            HashSet::from([2])
        );
        // Coming back makes one present again; the other has been idle too long by then.
        presence.touch("lobby", 1, t0 + Duration::from_secs(100));
        assert_eq!(
            presence.present("lobby", t0 + Duration::from_secs(100)),
            HashSet::from([1])
        );
        assert_eq!(presence.present("lobby", t0 + Duration::from_secs(200)), HashSet::new());
        assert_eq!(presence.rooms(), 0, "an empty room leaves the map");
    }

    #[test]
    fn rooms_are_separate_and_leaving_forgets() {
        let presence = RoomPresence::new(Duration::from_secs(60));
        let now = Instant::now();
        presence.touch("a", 1, now);
        presence.touch("b", 2, now);
        assert_eq!(presence.present("a", now), HashSet::from([1]));
        presence.forget("a", 1);
        assert!(presence.present("a", now).is_empty());
        presence.forget_room("b");
        assert!(presence.present("b", now).is_empty());
        assert_eq!(presence.rooms(), 0);
    }
}
