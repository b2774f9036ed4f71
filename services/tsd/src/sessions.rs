//! Who is logged in. A session lives while its client keeps calling KeepAlive; a client that
//! vanishes without logging out frees its user after the lease, so a crashed `tsc` cannot
//! lock its user out for good.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);
/// Missing this many keep-alives in a row ends the session.
const LEASE: Duration = Duration::from_secs(4);

#[derive(Debug, PartialEq, Eq)]
pub enum LoginError {
    AlreadyLoggedIn,
}

#[derive(Default)]
pub struct Sessions {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    live: HashMap<u64, (String, Instant)>,
    /// The last session of each user that logged out. A KeepAlive the client sent just
    /// before its Logout can be handled after it; without this it would bring the session
    /// back to life and lock the user out for a whole lease.
    ended: HashMap<u64, String>,
}

impl Sessions {
    /// Starts a session for `user`, or re-attaches `session_id` (after a failover the new
    /// master has never seen it, and takes the client's word for it).
    pub fn login(&self, user: u64, session_id: &str, now: Instant) -> Result<String, LoginError> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((id, expires)) = inner.live.get(&user)
            && *expires > now
            && (session_id.is_empty() || id != session_id)
        {
            return Err(LoginError::AlreadyLoggedIn);
        }
        let reattach = !session_id.is_empty() && !inner.is_ended(user, session_id);
        let id = if reattach {
            session_id.to_string()
        } else {
            format!("{:016x}", rand::random::<u64>())
        };
        inner.live.insert(user, (id.clone(), now + LEASE));
        Ok(id)
    }

    /// Renews the session; false if it is unknown or belongs to someone else.
    pub fn keep_alive(&self, user: u64, session_id: &str, now: Instant) -> bool {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if session_id.is_empty() || inner.is_ended(user, session_id) {
            return false;
        }
        match inner.live.get_mut(&user) {
            Some((id, expires)) if id == session_id => {
                *expires = now + LEASE;
                true
            }
            Some((_, expires)) if *expires > now => false,
            // A session this server never saw: the client was attached to the previous
            // master, so take its word for it.
            _ => {
                inner.live.insert(user, (session_id.to_string(), now + LEASE));
                true
            }
        }
    }

    pub fn logout(&self, user: u64, session_id: &str) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.live.get(&user).is_some_and(|(id, _)| id == session_id) {
            inner.live.remove(&user);
        }
        if !session_id.is_empty() {
            inner.ended.insert(user, session_id.to_string());
        }
    }
}

impl Inner {
    fn is_ended(&self, user: u64, session_id: &str) -> bool {
        self.ended.get(&user).is_some_and(|id| id == session_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_concurrent_login_is_rejected_until_logout_or_expiry() {
        let s = Sessions::default();
        let t0 = Instant::now();
        let a = s.login(1, "", t0).unwrap();
        assert_eq!(s.login(1, "", t0), Err(LoginError::AlreadyLoggedIn));
        assert_eq!(s.login(1, "other", t0), Err(LoginError::AlreadyLoggedIn));
        // The same client re-attaching (after a failover) is fine.
        assert_eq!(s.login(1, &a, t0).unwrap(), a);
        s.logout(1, &a);
        let b = s.login(1, "", t0).unwrap();
        assert!(s.keep_alive(1, &b, t0 + Duration::from_secs(3)));
        assert!(s.login(1, "", t0 + Duration::from_secs(6)).is_err());
        assert!(s.login(1, "", t0 + Duration::from_secs(8)).is_ok());
    }

    #[test]
    fn a_keep_alive_handled_after_logout_does_not_revive_the_session() {
        let s = Sessions::default();
        let t0 = Instant::now();
        let a = s.login(1, "", t0).unwrap();
        s.logout(1, &a);
        assert!(!s.keep_alive(1, &a, t0));
        // Re-attaching with the ended id starts a fresh session instead.
        let b = s.login(1, &a, t0).unwrap();
        assert_ne!(a, b);
        assert!(s.keep_alive(1, &b, t0));
        assert!(!s.keep_alive(1, "", t0));
    }

    #[test]
    fn a_new_master_adopts_sessions_it_never_saw() {
        let s = Sessions::default();
        let t0 = Instant::now();
        assert!(s.keep_alive(7, "from-old-master", t0));
        assert_eq!(s.login(7, "", t0), Err(LoginError::AlreadyLoggedIn));
        assert_eq!(s.login(7, "from-old-master", t0).unwrap(), "from-old-master");
    }
}
