//! Credentials: password hashing, session tokens, and the brake on guessing passwords.
//!
//! Passwords are stored only as Argon2id hashes in PHC string form (algorithm, parameters
//! and a per-user salt travel with the hash, so raising the parameters later leaves old
//! hashes verifiable). Tokens are 256 random bits, handed to the client once and stored only
//! as their SHA-256. Failed logins per username are limited.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("invalid Argon2 parameters: {0}")]
    Params(String),
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("the password hashing pool has stopped")]
    Stopped,
    #[error("too many logins at once: try again shortly")]
    Busy,
}

/// Argon2id cost, from tsd's flags. New hashes use it; stored hashes keep their own.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct HashCost {
    pub memory_kib: u32,
    pub iterations: u32,
}

impl HashCost {
    /// OWASP's recommendation for Argon2id: 19 MiB, 2 passes, 1 lane.
    pub const DEFAULT: HashCost = HashCost {
        memory_kib: 19 * 1024,
        iterations: 2,
    };
}

type Job = Box<dyn FnOnce() + Send>;

/// Hashes and verifies passwords on a few threads of its own, off the async threads. Each
/// hash holds `memory_kib` of memory, so they are bounded twice: at most `threads` at once,
/// and on at most `threads` threads, so the allocator keeps at most that many arenas' worth
/// of freed hash memory (on the shared blocking pool every thread would keep its own).
#[derive(Clone)]
pub struct Hasher {
    argon2: Argon2<'static>,
    jobs: std::sync::mpsc::SyncSender<Job>,
    /// A hash of a random password, verified against when a username does not exist so that
    /// a login's duration does not tell whether the account exists.
    decoy: Arc<str>,
}

impl Hasher {
    pub fn new(cost: HashCost, threads: usize) -> Result<Self, CredentialError> {
        let params = Params::new(cost.memory_kib, cost.iterations, 1, None)
            .map_err(|e| CredentialError::Params(e.to_string()))?;
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let decoy = hash_with(&argon2, &hex(&rand::random::<[u8; 16]>()))?;
        let (jobs, queue) = std::sync::mpsc::sync_channel::<Job>(1024);
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..threads.max(1) {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("tsd-hash-{i}"))
                .spawn(move || {
                    loop {
                        // The lock is released before the job runs, so the threads hash in
                        // parallel; the loop ends when every Hasher (every sender) is gone.
                        let next = tinysns_common::lock(&queue).recv();
                        match next {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                })
                .map_err(|e| CredentialError::Hash(format!("cannot start a hashing thread: {e}")))?;
        }
        Ok(Self {
            argon2,
            jobs,
            decoy: decoy.into(),
        })
    }

    /// The PHC string of `password` under a fresh random salt.
    pub async fn hash(&self, password: String) -> Result<String, CredentialError> {
        let argon2 = self.argon2.clone();
        self.blocking(move || hash_with(&argon2, &password)).await?
    }

    /// Whether `password` matches `phc` (None: check against the decoy, and fail).
    /// The comparison of hash outputs is constant-time.
    pub async fn verify(&self, password: String, phc: Option<String>) -> Result<bool, CredentialError> {
        let known = phc.is_some();
        let phc = phc.unwrap_or_else(|| self.decoy.to_string());
        let argon2 = self.argon2.clone();
        let matches = self
            .blocking(move || {
                PasswordHash::new(&phc)
                    .map(|parsed| argon2.verify_password(password.as_bytes(), &parsed).is_ok())
                    .unwrap_or(false)
            })
            .await?;
        Ok(known && matches)
    }

    async fn blocking<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T, CredentialError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        // A full queue means hundreds of logins waiting already: refuse rather than pile up.
        self.jobs.try_send(job).map_err(|_| CredentialError::Busy)?;
        rx.await.map_err(|_| CredentialError::Stopped)
    }
}

fn hash_with(argon2: &Argon2<'_>, password: &str) -> Result<String, CredentialError> {
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>()).map_err(|e| CredentialError::Hash(e.to_string()))?;
    argon2
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| CredentialError::Hash(e.to_string()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new session token (256 random bits from the thread's CSPRNG, as hex).
pub fn new_token() -> String {
    hex(&rand::random::<[u8; 32]>())
}

/// What the store keeps of a token.
pub fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Failed logins allowed per username within [`FAILURE_WINDOW`] before it is locked.
pub const MAX_FAILURES: u32 = 5;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Usernames tracked at most (the table is swept of stale entries when full).
const TRACKED: usize = 100_000;

/// Counts failed logins per username; a name with [`MAX_FAILURES`] failures in a window is
/// refused until the window ends, whatever the password.
#[derive(Default)]
pub struct FailedLogins {
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

impl FailedLogins {
    /// Ok, or how long until `username` may try again.
    pub fn check(&self, username: &str, now: Instant) -> Result<(), Duration> {
        let failures = tinysns_common::lock(&self.failures);
        match failures.get(username) {
            Some((count, since)) if *count >= MAX_FAILURES && now < *since + FAILURE_WINDOW => {
                Err(*since + FAILURE_WINDOW - now)
            }
            _ => Ok(()),
        }
    }

    pub fn failed(&self, username: &str, now: Instant) {
        let mut failures = tinysns_common::lock(&self.failures);
        if failures.len() >= TRACKED {
            failures.retain(|_, (_, since)| now < *since + FAILURE_WINDOW);
        }
        let entry = failures.entry(username.to_string()).or_insert((0, now));
        if now >= entry.1 + FAILURE_WINDOW {
            *entry = (0, now);
        }
        entry.0 += 1;
    }

    pub fn succeeded(&self, username: &str) {
        tinysns_common::lock(&self.failures).remove(username);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cheap parameters: the tests check behaviour, not cost.
    fn hasher() -> Hasher {
        Hasher::new(
            HashCost {
                memory_kib: 64,
                iterations: 1,
            },
            2,
        )
        .unwrap()
    }

    #[tokio::test]
    async fn hashes_are_salted_argon2id_and_verify_only_the_right_password() {
        let h = hasher();
        let a = h.hash("correct horse".into()).await.unwrap();
        let b = h.hash("correct horse".into()).await.unwrap();
        assert!(a.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{a}");
        assert_ne!(a, b, "each hash has its own salt");
        assert!(h.verify("correct horse".into(), Some(a.clone())).await.unwrap());
        assert!(!h.verify("correct horsE".into(), Some(a.clone())).await.unwrap());
        assert!(!h.verify("x".into(), Some("not a phc string".into())).await.unwrap());
        // An unknown account never verifies, not even with the decoy's password.
        assert!(!h.verify("anything".into(), None).await.unwrap());
        // Raising the cost later leaves stored hashes verifiable.
        let stronger = Hasher::new(
            HashCost {
                memory_kib: 128,
                iterations: 2,
            },
            1,
        )
        .unwrap();
        assert!(stronger.verify("correct horse".into(), Some(a)).await.unwrap());
    }

    #[test]
    fn tokens_are_random_and_stored_hashed() {
        let (a, b) = (new_token(), new_token());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert_eq!(token_hash(&a).len(), 32);
        assert_ne!(token_hash(&a), a.as_bytes());
        assert_eq!(token_hash(&a), token_hash(&a));
    }

    #[test]
    fn repeated_failures_lock_a_username_for_the_window() {
        let f = FailedLogins::default();
        let t0 = Instant::now();
        for _ in 0..MAX_FAILURES {
            assert_eq!(f.check("alice", t0), Ok(()));
            f.failed("alice", t0);
        }
        assert!(f.check("alice", t0 + Duration::from_secs(1)).is_err());
        assert_eq!(f.check("bob", t0), Ok(()), "other names are not affected");
        assert_eq!(f.check("alice", t0 + FAILURE_WINDOW), Ok(()));
        f.failed("alice", t0 + FAILURE_WINDOW);
        assert_eq!(f.check("alice", t0 + FAILURE_WINDOW), Ok(()), "a new window starts");
        f.succeeded("alice");
        assert_eq!(f.check("alice", t0), Ok(()));
    }
}
