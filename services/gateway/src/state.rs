//! What every request shares: the way to the servers (one [`Resolver`], a [`Link`] per
//! session kept while it is used), the per-session rate limit, and the extractor that turns
//! a request's cookie into an authenticated caller (checking its CSRF token and origin).

use crate::auth::{CSRF_HEADER, Credential, from_cookies, same_origin};
use crate::error::ApiError;
use crate::metrics::Metrics;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, header};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tinysns_client::session::{Link, Resolver};
use tinysns_common::shutdown::Shutdown;

/// Links unused for this long are dropped (a later request makes a new one).
const LINK_IDLE: Duration = Duration::from_secs(600);
/// Sessions whose links are kept at once; past this, idle ones go first.
const MAX_LINKS: usize = 100_000;

pub struct Gateway {
    pub resolver: Resolver,
    links: Mutex<HashMap<String, (Link, Instant)>>,
    limiter: DefaultKeyedRateLimiter<String>,
    pub metrics: Arc<Metrics>,
    pub session_max_age: Duration,
    pub live_retry_for: Duration,
    pub live_ping: Duration,
    pub live_presence_every: Duration,
    /// Ends the live streams when the gateway stops.
    pub shutdown: Shutdown,
    /// Live streams open per session token, up to `max_live`.
    live: Mutex<HashMap<String, u32>>,
    max_live: u32,
    /// Whose `X-Forwarded-For` names the client.
    pub trusted_proxies: crate::client_address::TrustedProxies,
}

/// One open live stream of a session; dropping it frees its place.
pub struct LiveSlot {
    gateway: Arc<Gateway>,
    token: String,
}

impl Drop for LiveSlot {
    fn drop(&mut self) {
        let mut live = tinysns_common::lock(&self.gateway.live);
        if let Some(open) = live.get_mut(&self.token) {
            *open = open.saturating_sub(1);
            if *open == 0 {
                live.remove(&self.token);
            }
        }
    }
}

impl Gateway {
    pub fn new(resolver: Resolver, args: &crate::config::Args, metrics: Arc<Metrics>, shutdown: Shutdown) -> Self {
        let rate = NonZeroU32::new(args.session_rate).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(args.session_burst).unwrap_or(NonZeroU32::MIN);
        Self {
            resolver,
            links: Mutex::new(HashMap::new()),
            limiter: RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)),
            metrics,
            session_max_age: args.session_max_age,
            live_retry_for: args.live_retry_for,
            live_ping: args.live_ping,
            live_presence_every: args.live_presence_every,
            shutdown,
            live: Mutex::new(HashMap::new()),
            max_live: args.max_live_per_session,
            // (Checked with the other flags at start.)
            trusted_proxies: crate::client_address::TrustedProxies::parse(&args.trusted_proxies).unwrap_or_default(),
        }
    }

    /// The session's link to its user's master, made on first use.
    pub fn link(&self, credential: &Credential) -> Result<Link, ApiError> {
        let now = Instant::now();
        let mut links = tinysns_common::lock(&self.links);
        if let Some((link, used)) = links.get_mut(&credential.token)
            && link.user() == credential.user
        {
            *used = now;
            return Ok(link.clone());
        }
        let link = self
            .resolver
            .link(credential.user, &credential.token)
            .ok_or_else(ApiError::unauthenticated)?;
        if links.len() >= MAX_LINKS {
            links.retain(|_, (_, used)| now.duration_since(*used) < LINK_IDLE);
            self.limiter.retain_recent();
        }
        if links.len() < MAX_LINKS {
            links.insert(credential.token.clone(), (link.clone(), now));
        }
        Ok(link)
    }

    /// A place for one more live stream of the session, or 429 when it holds its maximum.
    pub fn live_slot(self: &Arc<Self>, credential: &Credential) -> Result<LiveSlot, ApiError> {
        let mut live = tinysns_common::lock(&self.live);
        let open = live.entry(credential.token.clone()).or_insert(0);
        if *open >= self.max_live {
            self.metrics.rate_limited.inc();
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("this session already has {} live streams open", self.max_live),
            ));
        }
        *open += 1;
        Ok(LiveSlot {
            gateway: self.clone(),
            token: credential.token.clone(),
        })
    }

    /// Forgets a session (after logout).
    pub fn forget(&self, credential: &Credential) {
        tinysns_common::lock(&self.links).remove(&credential.token);
    }

    /// Counts one request of `key` against its rate.
    pub fn admit(&self, key: &str) -> Result<(), ApiError> {
        self.limiter.check_key(&key.to_string()).map_err(|_| {
            self.metrics.rate_limited.inc();
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many requests; slow down",
            )
        })
    }
}

/// A request from a logged-in browser: its session, checked for CSRF (on anything but GET
/// and HEAD) and origin, and admitted by its rate limit.
pub struct Authed {
    pub credential: Credential,
    pub link: Link,
}

/// The request's `Origin` is the gateway's own (see [`same_origin`]).
pub fn check_origin(headers: &HeaderMap) -> Result<(), ApiError> {
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
    if same_origin(text(header::ORIGIN), text(header::HOST)) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "origin",
            "cross-site requests are refused",
        ))
    }
}

impl FromRequestParts<Arc<Gateway>> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, gateway: &Arc<Gateway>) -> Result<Self, ApiError> {
        let cookies = parts
            .headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok());
        let credential = from_cookies(cookies).ok_or_else(ApiError::unauthenticated)?;
        check_origin(&parts.headers)?;
        if !matches!(parts.method, Method::GET | Method::HEAD) {
            let presented = parts
                .headers
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if !credential.csrf_matches(presented) {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "csrf",
                    "missing or wrong X-CSRF-Token header",
                ));
            }
        }
        gateway.admit(&credential.token)?;
        let link = gateway.link(&credential)?;
        Ok(Self { credential, link })
    }
}
