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
    live: Mutex<HashMap<u64, (String, Instant)>>,
}

impl Sessions {
    /// Starts a session for `user`, or re-attaches `session_id` (after a failover the new
    /// master has never seen it, and takes the client's word for it).
    pub fn login(&self, user: u64, session_id: &str, now: Instant) -> Result<String, LoginError> {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((id, expires)) = live.get(&user)
            && *expires > now
            && (session_id.is_empty() || id != session_id)
        {
            return Err(LoginError::AlreadyLoggedIn);
        }
        let id = if session_id.is_empty() {
            format!("{:016x}", rand::random::<u64>())
        } else {
            session_id.to_string()
        };
        live.insert(user, (id.clone(), now + LEASE));
        Ok(id)
    }

    /// Renews the session; false if it is unknown or belongs to someone else.
    pub fn keep_alive(&self, user: u64, session_id: &str, now: Instant) -> bool {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        match live.get_mut(&user) {
            Some((id, expires)) if id == session_id => {
                *expires = now + LEASE;
                true
            }
            Some((_, expires)) if *expires > now => false,
            _ => {
                live.insert(user, (session_id.to_string(), now + LEASE));
                true
            }
        }
    }

    pub fn logout(&self, user: u64, session_id: &str) {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        if live.get(&user).is_some_and(|(id, _)| id == session_id) {
            live.remove(&user);
        }
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
}
