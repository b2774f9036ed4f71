//! Credentials: password hashing, session tokens, and the brake on guessing passwords.
//!
//! Passwords are stored only as Argon2id hashes in PHC string form (algorithm, parameters
//! and a per-user salt travel with the hash, so raising the parameters later leaves old
//! hashes verifiable). Tokens are 256 random bits, handed to the client once and stored only
//! as their SHA-256. Failed logins per username are limited.

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
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

/// A job for a hashing thread, given the thread's Argon2 working memory.
type Job = Box<dyn FnOnce(&mut Vec<Block>) + Send>;

/// Hashes and verifies passwords on a few threads of its own, off the async threads. Each
/// thread owns its Argon2 working memory (`memory_kib`) and reuses it for every hash: memory
/// stays at `threads` x `memory_kib`, and no hash allocates (freeing a 19 MiB block would
/// also raise glibc's mmap threshold for the whole process).
#[derive(Clone)]
pub struct Hasher {
    params: Params,
    jobs: std::sync::mpsc::SyncSender<Job>,
    /// A hash of a random password, verified against when a username does not exist so that
    /// a login's duration does not tell whether the account exists.
    decoy: Arc<str>,
}

impl Hasher {
    pub fn new(cost: HashCost, threads: usize) -> Result<Self, CredentialError> {
        let params = Params::new(cost.memory_kib, cost.iterations, 1, None)
            .map_err(|e| CredentialError::Params(e.to_string()))?;
        let decoy = hash_into(&params, hex(&rand::random::<[u8; 16]>()).as_bytes(), &mut Vec::new())?;
        let (jobs, queue) = std::sync::mpsc::sync_channel::<Job>(1024);
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..threads.max(1) {
            let queue = queue.clone();
            let blocks = params.block_count();
            std::thread::Builder::new()
                .name(format!("tsd-hash-{i}"))
                .spawn(move || {
                    let mut memory = vec![Block::default(); blocks];
                    loop {
                        // The lock is released before the job runs, so the threads hash in
                        // parallel; the loop ends when every Hasher (every sender) is gone.
                        let next = tinysns_common::lock(&queue).recv();
                        match next {
                            Ok(job) => job(&mut memory),
                            Err(_) => return,
                        }
                    }
                })
                .map_err(|e| CredentialError::Hash(format!("cannot start a hashing thread: {e}")))?;
        }
        Ok(Self {
            params,
            jobs,
            decoy: decoy.into(),
        })
    }

    /// The PHC string of `password` under a fresh random salt.
    pub async fn hash(&self, password: String) -> Result<String, CredentialError> {
        let params = self.params.clone();
        self.on_thread(move |memory| hash_into(&params, password.as_bytes(), memory))
            .await?
    }

    /// Whether `password` matches `phc` (None: check against the decoy, and fail).
    /// The comparison of hash outputs is constant-time.
    pub async fn verify(&self, password: String, phc: Option<String>) -> Result<bool, CredentialError> {
        let known = phc.is_some();
        let phc = phc.unwrap_or_else(|| self.decoy.to_string());
        let matches = self
            .on_thread(move |memory| verify_with(&phc, password.as_bytes(), memory))
            .await?;
        Ok(known && matches)
    }

    async fn on_thread<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Vec<Block>) -> T + Send + 'static,
    ) -> Result<T, CredentialError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |memory| {
            let _ = tx.send(f(memory));
        });
        // A full queue means hundreds of logins waiting already: refuse rather than pile up.
        self.jobs.try_send(job).map_err(|_| CredentialError::Busy)?;
        rx.await.map_err(|_| CredentialError::Stopped)
    }
}

/// The first `params.block_count()` blocks of `memory`, grown if a stored hash needs more.
fn blocks<'a>(memory: &'a mut Vec<Block>, params: &Params) -> &'a mut [Block] {
    let needed = params.block_count();
    if memory.len() < needed {
        memory.resize(needed, Block::default());
    }
    &mut memory[..needed]
}

/// Argon2id of `password` under a fresh salt, as a PHC string.
fn hash_into(params: &Params, password: &[u8], memory: &mut Vec<Block>) -> Result<String, CredentialError> {
    let failed = |e: &dyn std::fmt::Display| CredentialError::Hash(e.to_string());
    let salt_bytes = rand::random::<[u8; 16]>();
    let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| failed(&e))?;
    let mut out = [0u8; 32];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password_into_with_memory(password, &salt_bytes, &mut out, blocks(memory, params))
        .map_err(|e| failed(&e))?;
    let phc = PasswordHash {
        algorithm: argon2::ARGON2ID_IDENT,
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params).map_err(|e| failed(&e))?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).map_err(|e| failed(&e))?),
    };
    Ok(phc.to_string())
}

/// Whether `password` hashes to `phc` under the algorithm, parameters and salt it names.
fn verify_with(phc: &str, password: &[u8], memory: &mut Vec<Block>) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    let (Some(expected), Some(salt)) = (parsed.hash, parsed.salt) else {
        return false;
    };
    let (Ok(algorithm), Ok(params)) = (Algorithm::try_from(parsed.algorithm), Params::try_from(&parsed)) else {
        return false;
    };
    let version = match parsed.version.map(Version::try_from) {
        None => Version::V0x13,
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let mut salt_buffer = [0u8; 64];
    let Ok(salt_bytes) = salt.decode_b64(&mut salt_buffer) else {
        return false;
    };
    let mut out = vec![0u8; expected.len()];
    let hashed = Argon2::new(algorithm, version, params.clone()).hash_password_into_with_memory(
        password,
        salt_bytes,
        &mut out,
        blocks(memory, &params),
    );
    // Output's equality is constant-time.
    hashed.is_ok() && Output::new(&out).is_ok_and(|o| o == expected)
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
        // Hashes made by the argon2 crate's own PHC path verify, and ours verify there.
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let theirs = Argon2::default()
            .hash_password(b"correct horse", &SaltString::encode_b64(b"0123456789abcdef").unwrap())
            .unwrap()
            .to_string();
        assert!(h.verify("correct horse".into(), Some(theirs)).await.unwrap());
        let parsed = PasswordHash::new(&a).unwrap();
        assert!(Argon2::default().verify_password(b"correct horse", &parsed).is_ok());
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
