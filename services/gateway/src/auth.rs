//! What a browser's session is, apart from HTTP plumbing: the session cookie (the user and
//! the session token tsd issued), the CSRF token derived from it, and the origin check.
//!
//! The gateway keeps no state of its own: any replica reads a cookie the same way. The CSRF
//! token is a one-way hash of the session token, so a page may hold it (it must send it back
//! in a header) without learning the token, and a forged cross-site request cannot know it.

use sha2::{Digest, Sha256};
use std::time::Duration;
use subtle::ConstantTimeEq;

pub const SESSION_COOKIE: &str = "tinysns_session";
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Longer cookie values are not ours (a token is far shorter).
const MAX_COOKIE_VALUE: usize = 512;

/// The session a browser presents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// Routes the calls to the user's cluster only: tsd acts for the token's user.
    pub user: u64,
    pub token: String,
}

impl Credential {
    /// `<user>.<token>`, or None for anything else.
    pub fn parse(value: &str) -> Option<Self> {
        if value.len() > MAX_COOKIE_VALUE {
            return None;
        }
        let (user, token) = value.split_once('.')?;
        let user: u64 = user.parse().ok().filter(|u| *u > 0)?;
        let cookie_safe = |c: char| c.is_ascii_graphic() && !matches!(c, ';' | ',' | '"' | '\\');
        if token.is_empty() || !token.chars().all(cookie_safe) {
            return None;
        }
        Some(Self {
            user,
            token: token.to_string(),
        })
    }

    /// The session cookie's value.
    pub fn value(&self) -> String {
        format!("{}.{}", self.user, self.token)
    }

    /// The CSRF token of this session.
    pub fn csrf(&self) -> String {
        let digest = Sha256::new()
            .chain_update(b"tinysns-csrf\0")
            .chain_update(self.token.as_bytes())
            .finalize();
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Whether a request's CSRF header belongs to this session (in constant time).
    pub fn csrf_matches(&self, presented: &str) -> bool {
        bool::from(self.csrf().as_bytes().ct_eq(presented.as_bytes()))
    }

    /// The `Set-Cookie` header that stores this session for `max_age`.
    pub fn set_cookie(&self, max_age: Duration) -> String {
        format!(
            "{SESSION_COOKIE}={}; Path=/; Max-Age={}; HttpOnly; Secure; SameSite=Strict",
            self.value(),
            max_age.as_secs()
        )
    }
}

/// The `Set-Cookie` header that removes the session.
pub fn clear_cookie() -> String {
    format!("{SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Strict")
}

/// The session among a request's `Cookie` headers, if one is well-formed.
pub fn from_cookies<'a>(headers: impl IntoIterator<Item = &'a str>) -> Option<Credential> {
    headers
        .into_iter()
        .flat_map(|header| header.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .and_then(|(_, value)| Credential::parse(value))
}

/// Whether a request's `Origin` (when the browser sends one) is this gateway's own, as the
/// `Host` it was sent to names it. Browsers send `Origin` on every cross-site request and on
/// every WebSocket, so a missing one is a same-site navigation or a non-browser client.
pub fn same_origin(origin: Option<&str>, host: Option<&str>) -> bool {
    let Some(origin) = origin else {
        return true;
    };
    let Some(host) = host else {
        return false;
    };
    let authority = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"));
    authority.is_some_and(|a| a.eq_ignore_ascii_case(host))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> Credential {
        Credential {
            user: 7,
            token: "abcDEF123-_".into(),
        }
    }

    #[test]
    fn a_cookie_round_trips_and_malformed_ones_are_refused() {
        assert_eq!(Credential::parse(&alice().value()), Some(alice()));
        for bad in [
            "",
            "7",
            "7.",
            ".abc",
            "0.abc",
            "x.abc",
            "-1.abc",
            "7.a;b",
            "7.a b",
            "7.é",
            "18446744073709551616.abc",
        ] {
            assert_eq!(Credential::parse(bad), None, "{bad:?}");
        }
        assert_eq!(Credential::parse(&format!("7.{}", "a".repeat(600))), None);
    }

    #[test]
    fn the_session_is_found_among_other_cookies() {
        let header = format!("theme=dark; {SESSION_COOKIE}={}; other=1", alice().value());
        assert_eq!(from_cookies([header.as_str()]), Some(alice()));
        assert_eq!(from_cookies(["theme=dark", "x=1"]), None);
        assert_eq!(from_cookies([format!("{SESSION_COOKIE}=junk").as_str()]), None);
    }

    #[test]
    fn the_csrf_token_is_the_sessions_own_and_does_not_reveal_it() {
        let csrf = alice().csrf();
        assert_eq!(csrf.len(), 64);
        assert!(!csrf.contains(&alice().token));
        assert!(alice().csrf_matches(&csrf));
        let other = Credential {
            user: 7,
            token: "another".into(),
        };
        assert!(!other.csrf_matches(&csrf));
        assert!(!alice().csrf_matches(""));
        assert!(!alice().csrf_matches(&csrf[..63]));
    }

    #[test]
    fn the_cookie_is_http_only_secure_and_strict() {
        let cookie = alice().set_cookie(Duration::from_secs(3600));
        for attribute in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/", "Max-Age=3600"] {
            assert!(cookie.contains(attribute), "{cookie}");
        }
        assert!(clear_cookie().contains("Max-Age=0"));
    }

    #[test]
    fn only_the_gateways_own_origin_passes() {
        assert!(same_origin(None, Some("localhost:8080")));
        assert!(same_origin(Some("http://localhost:8080"), Some("localhost:8080")));
        assert!(same_origin(Some("https://sns.example"), Some("SNS.example")));
        assert!(!same_origin(Some("https://evil.example"), Some("sns.example")));
        assert!(!same_origin(Some("null"), Some("sns.example")));
        assert!(!same_origin(Some("https://sns.example.evil"), Some("sns.example")));
        assert!(!same_origin(Some("http://localhost:8080"), None));
    }
}
