//! The cluster secret: what proves that a caller of an internal API (replication, change
//! feed, the coordinator's member API) or the author of a bus message is a member of this
//! deployment. Every member reads the same secret from a file (a Kubernetes Secret mounted
//! by the operator, or one `scripts/up.sh` writes per run directory).
//!
//! Calls carry it as a bearer value in the [`SECRET_HEADER`] metadata, compared in constant
//! time; bus messages carry an HMAC-SHA256 of their body under it. The secret itself is never
//! logged: its `Debug` shows only its length.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::path::Path;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// gRPC metadata key that carries the secret on internal calls.
pub const SECRET_HEADER: &str = "x-tinysns-cluster-secret";
/// Shortest secret accepted: 32 characters of a random alphabet is >= 160 bits.
pub const MIN_SECRET_LEN: usize = 32;
/// Longest secret accepted (it travels in a header).
pub const MAX_SECRET_LEN: usize = 256;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("cannot read the cluster secret from {path}: {reason}")]
    Unreadable { path: String, reason: String },
    #[error("the cluster secret is {0} characters; it must be {MIN_SECRET_LEN} to {MAX_SECRET_LEN}")]
    Length(usize),
    #[error("the cluster secret must be printable ASCII without spaces (e.g. base64 or hex)")]
    Alphabet,
}

/// The shared secret of a deployment.
#[derive(Clone)]
pub struct ClusterSecret(Arc<str>);

impl std::fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClusterSecret(<{} characters>)", self.0.len())
    }
}

type HmacSha256 = Hmac<Sha256>;

impl ClusterSecret {
    /// Reads the secret from `path`; surrounding whitespace (a trailing newline) is ignored.
    pub fn from_file(path: &Path) -> Result<Self, SecretError> {
        let text = std::fs::read_to_string(path).map_err(|e| SecretError::Unreadable {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Self::new(text.trim())
    }

    pub fn new(text: &str) -> Result<Self, SecretError> {
        if !(MIN_SECRET_LEN..=MAX_SECRET_LEN).contains(&text.len()) {
            return Err(SecretError::Length(text.len()));
        }
        if !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(SecretError::Alphabet);
        }
        Ok(Self(text.into()))
    }

    /// Whether `presented` is the secret, in time independent of where they differ.
    pub fn matches(&self, presented: &[u8]) -> bool {
        // Lengths are not secret (the minimum is public); contents are compared in full.
        presented.len() == self.0.len() && bool::from(self.0.as_bytes().ct_eq(presented))
    }

    /// The value to send in [`SECRET_HEADER`].
    pub fn header_value(&self) -> tonic::metadata::MetadataValue<tonic::metadata::Ascii> {
        // Checked printable ASCII on construction, so this cannot fail.
        tonic::metadata::MetadataValue::try_from(&*self.0)
            .unwrap_or_else(|_| tonic::metadata::MetadataValue::from_static(""))
    }

    fn hmac(&self) -> HmacSha256 {
        // HMAC takes keys of any length.
        <HmacSha256 as Mac>::new_from_slice(self.0.as_bytes())
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"))
    }

    /// HMAC-SHA256 of `data` under the secret.
    pub fn sign(&self, data: &[u8]) -> Vec<u8> {
        let mut mac = self.hmac();
        mac.update(data);
        mac.finalize().into_bytes().to_vec()
    }

    /// Whether `tag` is the HMAC of `data` (constant-time comparison).
    pub fn verify(&self, data: &[u8], tag: &[u8]) -> bool {
        let mut mac = self.hmac();
        mac.update(data);
        mac.verify_slice(tag).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn secrets_are_bounded_and_printable() {
        assert_eq!(ClusterSecret::new("short").unwrap_err(), SecretError::Length(5));
        assert_eq!(
            ClusterSecret::new(&"x".repeat(MAX_SECRET_LEN + 1)).unwrap_err(),
            SecretError::Length(MAX_SECRET_LEN + 1)
        );
        assert_eq!(
            ClusterSecret::new(&format!("{S} with space")).unwrap_err(),
            SecretError::Alphabet
        );
        assert!(ClusterSecret::new(S).is_ok());
    }

    #[test]
    fn matching_needs_the_whole_secret() {
        let s = ClusterSecret::new(S).unwrap();
        assert!(s.matches(S.as_bytes()));
        assert!(!s.matches(&S.as_bytes()[..31]));
        assert!(!s.matches(b""));
        let mut wrong = S.as_bytes().to_vec();
        wrong[31] = b'0';
        assert!(!s.matches(&wrong));
        assert!(!format!("{s:?}").contains(S), "Debug must not show the secret");
    }

    #[test]
    fn file_secret_ignores_the_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, format!("{S}\n")).unwrap();
        assert!(ClusterSecret::from_file(&path).unwrap().matches(S.as_bytes()));
        assert!(matches!(
            ClusterSecret::from_file(&dir.path().join("missing")),
            Err(SecretError::Unreadable { .. })
        ));
    }

    #[test]
    fn signatures_verify_only_under_the_same_secret_and_data() {
        let a = ClusterSecret::new(S).unwrap();
        let b = ClusterSecret::new(&S.replace('0', "1")).unwrap();
        let tag = a.sign(b"message");
        assert!(a.verify(b"message", &tag));
        assert!(!a.verify(b"messagf", &tag));
        assert!(!b.verify(b"message", &tag));
        assert!(!a.verify(b"message", &tag[..16]));
    }
}
