//! Who is connected right now (presence), and how many streams each may hold open.
//!
//! A session's token lives in the replicated store; its *presence* is local to the master
//! and lasts exactly as long as the client holds an `Attach` stream open, or, for a client
//! that only calls KeepAlive, until its lease runs out. A client killed with SIGKILL closes
//! its TCP connection, the stream ends, and its user is free at once; a client whose host
//! vanished silently is dropped when HTTP/2 keep-alive pings go unanswered, or after the lease.
//!
//! In open mode (the classic system) a user may be present once at a time; in password mode
//! a user may be logged in on several devices, up to [`MAX_PRESENT_PER_USER`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);
/// Missing this many keep-alives in a row ends a lease.
pub const LEASE: Duration = Duration::from_secs(4);
/// Sessions of one user present at once (password mode).
pub const MAX_PRESENT_PER_USER: usize = 32;
/// Timelines one user may have open at once, over all their devices.
pub const MAX_TIMELINES_PER_USER: usize = 8;
/// Timelines one connection may carry at once (a gateway or load generator multiplexes
/// many users' timelines on one connection; the bound keeps one connection from holding
/// unbounded server memory).
pub const MAX_TIMELINES_PER_CONNECTION: usize = 256;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PresenceError {
    #[error("this user is logged in elsewhere")]
    AlreadyPresent,
    #[error("too many sessions of this user are connected (limit {MAX_PRESENT_PER_USER})")]
    TooManySessions,
    #[error("this session has ended")]
    Ended,
    #[error("too many open timelines for this user (limit {MAX_TIMELINES_PER_USER})")]
    TooManyTimelinesForUser,
    #[error("too many open timelines on this connection (limit {MAX_TIMELINES_PER_CONNECTION})")]
    TooManyTimelinesOnConnection,
}

/// Whether a user may be present on several sessions at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sharing {
    /// Open mode: one session at a time (the classic rule).
    Exclusive,
    /// Password mode: one per device.
    Shared,
}

#[derive(Debug)]
struct Present {
    token_hash: Vec<u8>,
    lease_until: Instant,
    streams: u32,
}

impl Present {
    fn live(&self, now: Instant) -> bool {
        self.streams > 0 || self.lease_until > now
    }
}

#[derive(Default)]
struct Inner {
    users: HashMap<u64, Vec<Present>>,
    /// The last ended session of each user: a KeepAlive sent just before a Logout can be
    /// handled after it and must not bring the session back.
    ended: HashMap<u64, Vec<u8>>,
    timelines_per_user: HashMap<u64, usize>,
    timelines_per_connection: HashMap<SocketAddr, usize>,
}

pub struct Presence {
    sharing: Sharing,
    inner: Arc<Mutex<Inner>>,
}

impl Presence {
    pub fn new(sharing: Sharing) -> Self {
        Self {
            sharing,
            inner: Arc::default(),
        }
    }

    /// Marks `token_hash` of `user` present for a lease (login, KeepAlive).
    pub fn renew(&self, user: u64, token_hash: &[u8], now: Instant) -> Result<(), PresenceError> {
        let mut inner = tinysns_common::lock(&self.inner);
        let present = inner.enter(self.sharing, user, token_hash, now)?;
        present.lease_until = now + LEASE;
        Ok(())
    }

    /// Marks `token_hash` present while the returned guard lives (an Attach stream).
    pub fn attach(&self, user: u64, token_hash: &[u8], now: Instant) -> Result<Attached, PresenceError> {
        let mut inner = tinysns_common::lock(&self.inner);
        let present = inner.enter(self.sharing, user, token_hash, now)?;
        present.streams += 1;
        Ok(Attached {
            inner: self.inner.clone(),
            user,
            token_hash: token_hash.to_vec(),
        })
    }

    /// Logout: the session is gone at once and cannot come back.
    pub fn leave(&self, user: u64, token_hash: &[u8]) {
        let mut inner = tinysns_common::lock(&self.inner);
        if let Some(list) = inner.users.get_mut(&user) {
            list.retain(|p| p.token_hash != token_hash);
        }
        inner.ended.insert(user, token_hash.to_vec());
    }

    /// Counts an open timeline of `user` on `connection` while the guard lives.
    pub fn open_timeline(&self, user: u64, connection: Option<SocketAddr>) -> Result<TimelineSlot, PresenceError> {
        let mut inner = tinysns_common::lock(&self.inner);
        if inner.timelines_per_user.get(&user).copied().unwrap_or(0) >= MAX_TIMELINES_PER_USER {
            return Err(PresenceError::TooManyTimelinesForUser);
        }
        if let Some(c) = connection
            && inner.timelines_per_connection.get(&c).copied().unwrap_or(0) >= MAX_TIMELINES_PER_CONNECTION
        {
            return Err(PresenceError::TooManyTimelinesOnConnection);
        }
        *inner.timelines_per_user.entry(user).or_default() += 1;
        if let Some(c) = connection {
            *inner.timelines_per_connection.entry(c).or_default() += 1;
        }
        Ok(TimelineSlot {
            inner: self.inner.clone(),
            user,
            connection,
        })
    }

    /// How many sessions are present and how many timelines are open at `now` (metrics).
    pub fn counts(&self, now: Instant) -> (usize, usize) {
        let inner = tinysns_common::lock(&self.inner);
        let sessions = inner.users.values().flatten().filter(|p| p.live(now)).count();
        (sessions, inner.timelines_per_user.values().sum())
    }
}

impl Inner {
    /// The presence record of the session, created if the rules allow.
    fn enter(
        &mut self,
        sharing: Sharing,
        user: u64,
        token_hash: &[u8],
        now: Instant,
    ) -> Result<&mut Present, PresenceError> {
        if self.ended.get(&user).is_some_and(|t| t == token_hash) {
            return Err(PresenceError::Ended);
        }
        let list = self.users.entry(user).or_default();
        list.retain(|p| p.live(now) || p.token_hash == token_hash);
        let index = match list.iter().position(|p| p.token_hash == token_hash) {
            Some(index) => index,
            None => {
                if sharing == Sharing::Exclusive && !list.is_empty() {
                    return Err(PresenceError::AlreadyPresent);
                }
                if list.len() >= MAX_PRESENT_PER_USER {
                    return Err(PresenceError::TooManySessions);
                }
                list.push(Present {
                    token_hash: token_hash.to_vec(),
                    lease_until: now,
                    streams: 0,
                });
                list.len() - 1
            }
        };
        Ok(&mut list[index])
    }
}

/// Presence held by an Attach stream; dropping it (the client went away) ends it at once.
pub struct Attached {
    inner: Arc<Mutex<Inner>>,
    user: u64,
    token_hash: Vec<u8>,
}

impl Drop for Attached {
    fn drop(&mut self) {
        let mut inner = tinysns_common::lock(&self.inner);
        if let Some(list) = inner.users.get_mut(&self.user) {
            if let Some(p) = list.iter_mut().find(|p| p.token_hash == self.token_hash) {
                p.streams = p.streams.saturating_sub(1);
                if p.streams == 0 {
                    // Gone now, not after a lease: the client's connection closed.
                    p.lease_until = Instant::now();
                }
            }
            let now = Instant::now();
            list.retain(|p| p.live(now));
            if list.is_empty() {
                inner.users.remove(&self.user);
            }
        }
    }
}

/// An open timeline, counted against its user and connection until dropped.
pub struct TimelineSlot {
    inner: Arc<Mutex<Inner>>,
    user: u64,
    connection: Option<SocketAddr>,
}

impl Drop for TimelineSlot {
    fn drop(&mut self) {
        let mut inner = tinysns_common::lock(&self.inner);
        release(&mut inner.timelines_per_user, self.user);
        if let Some(c) = self.connection {
            release(&mut inner.timelines_per_connection, c);
        }
    }
}

fn release<K: std::hash::Hash + Eq>(counts: &mut HashMap<K, usize>, key: K) {
    if let Some(n) = counts.get_mut(&key) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            counts.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &[u8] = b"token-a";
    const B: &[u8] = b"token-b";

    #[test]
    fn open_mode_allows_one_session_until_logout_or_lease_end() {
        let p = Presence::new(Sharing::Exclusive);
        let t0 = Instant::now();
        p.renew(1, A, t0).unwrap();
        assert_eq!(p.renew(1, B, t0), Err(PresenceError::AlreadyPresent));
        // The same session renewing is fine.
        p.renew(1, A, t0 + Duration::from_secs(3)).unwrap();
        assert_eq!(
            p.renew(1, B, t0 + Duration::from_secs(6)),
            Err(PresenceError::AlreadyPresent)
        );
        assert!(p.renew(1, B, t0 + Duration::from_secs(8)).is_ok());
        p.leave(1, B);
        assert!(p.renew(1, A, t0 + Duration::from_secs(8)).is_ok());
    }

    #[test]
    fn a_dropped_stream_frees_the_user_at_once() {
        let p = Presence::new(Sharing::Exclusive);
        let t0 = Instant::now();
        let attached = p.attach(1, A, t0).unwrap();
        // Held by the stream far beyond any lease.
        assert_eq!(p.renew(1, B, t0 + LEASE * 10), Err(PresenceError::AlreadyPresent));
        // The client was killed: its connection closed, the stream ended.
        drop(attached);
        assert!(
            p.renew(1, B, Instant::now()).is_ok(),
            "a restarted client logs in at once"
        );
    }

    #[test]
    fn a_keep_alive_handled_after_logout_does_not_revive_the_session() {
        let p = Presence::new(Sharing::Exclusive);
        let t0 = Instant::now();
        p.renew(1, A, t0).unwrap();
        p.leave(1, A);
        assert_eq!(p.renew(1, A, t0), Err(PresenceError::Ended));
        assert!(p.attach(1, A, t0).is_err());
        assert!(p.renew(1, B, t0).is_ok(), "the user is free for a new login");
    }

    #[test]
    fn password_mode_allows_a_bounded_number_of_devices() {
        let p = Presence::new(Sharing::Shared);
        let t0 = Instant::now();
        for i in 0..MAX_PRESENT_PER_USER {
            p.renew(1, format!("t{i}").as_bytes(), t0).unwrap();
        }
        assert_eq!(p.renew(1, b"one more", t0), Err(PresenceError::TooManySessions));
        assert!(p.renew(2, b"other user", t0).is_ok());
    }

    #[test]
    fn counts_show_present_sessions_and_open_timelines() {
        let p = Presence::new(Sharing::Shared);
        let t0 = Instant::now();
        assert_eq!(p.counts(t0), (0, 0));
        p.renew(1, A, t0).unwrap();
        let attached = p.attach(2, B, t0).unwrap();
        let timelines = [p.open_timeline(1, None).unwrap(), p.open_timeline(2, None).unwrap()];
        assert_eq!(p.counts(t0), (2, 2));
        // The lease of 1 ran out; 2 holds its stream.
        assert_eq!(p.counts(t0 + LEASE * 2), (1, 2));
        drop(timelines);
        drop(attached);
        p.leave(1, A);
        assert_eq!(p.counts(t0), (0, 0));
    }

    #[test]
    fn timelines_are_bounded_per_user_and_per_connection() {
        let p = Presence::new(Sharing::Shared);
        let conn: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let mut held: Vec<_> = (0..MAX_TIMELINES_PER_USER)
            .map(|_| p.open_timeline(1, Some(conn)).unwrap())
            .collect();
        assert_eq!(
            p.open_timeline(1, None).err(),
            Some(PresenceError::TooManyTimelinesForUser)
        );
        for user in 2..=(MAX_TIMELINES_PER_CONNECTION - MAX_TIMELINES_PER_USER + 1) as u64 {
            held.push(p.open_timeline(user, Some(conn)).unwrap());
        }
        assert_eq!(
            p.open_timeline(99, Some(conn)).err(),
            Some(PresenceError::TooManyTimelinesOnConnection)
        );
        held.clear();
        assert!(p.open_timeline(1, Some(conn)).is_ok(), "closing frees the slots");
    }
}
