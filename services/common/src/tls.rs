//! TLS from PEM files (rustls through tonic). The client API uses server authentication
//! (clients check the server's certificate against `--tls-ca`); the internal API uses mutual
//! TLS (each member presents its certificate and checks its peer's against the same CA),
//! on top of the cluster secret. Certificates for Kubernetes come from a `kubernetes.io/tls`
//! Secret (`tls.crt`, `tls.key`, `ca.crt`), e.g. written by cert-manager.

use std::path::{Path, PathBuf};
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("{0} does not hold a PEM block")]
    NotPem(String),
    #[error("--tls-cert and --tls-key go together")]
    HalfIdentity,
    #[error("mutual TLS on the internal API needs --tls-ca (the CA that signs every member)")]
    NoCa,
}

/// The TLS flags of every process.
#[derive(Debug, Clone, Default, clap::Args, serde::Serialize)]
pub struct TlsArgs {
    /// PEM certificate (chain) this process presents: as a server, and to other members.
    #[arg(long, env = "TINYSNS_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "TINYSNS_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificate(s) that sign the servers (for clients) and every member.
    #[arg(long, env = "TINYSNS_TLS_CA", value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
}

fn read_pem(path: &Path) -> Result<Vec<u8>, TlsError> {
    let bytes = std::fs::read(path).map_err(|e| TlsError::Read {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    if !String::from_utf8_lossy(&bytes).contains("-----BEGIN ") {
        return Err(TlsError::NotPem(path.display().to_string()));
    }
    Ok(bytes)
}

/// A member's TLS material, loaded once at start.
#[derive(Debug, Clone)]
pub struct Tls {
    identity: Option<Identity>,
    ca: Option<Certificate>,
}

impl TlsArgs {
    /// The loaded material, or None when no TLS flag is given (plaintext).
    pub fn load(&self) -> Result<Option<Tls>, TlsError> {
        let identity = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(Identity::from_pem(read_pem(cert)?, read_pem(key)?)),
            (None, None) => None,
            _ => return Err(TlsError::HalfIdentity),
        };
        let ca = self
            .tls_ca
            .as_deref()
            .map(read_pem)
            .transpose()?
            .map(Certificate::from_pem);
        Ok((identity.is_some() || ca.is_some()).then_some(Tls { identity, ca }))
    }
}

impl Tls {
    /// From PEM held in memory (what the operator reads from the members' TLS Secret).
    pub fn from_pem(cert: &[u8], key: &[u8], ca: &[u8]) -> Self {
        Tls {
            identity: Some(Identity::from_pem(cert, key)),
            ca: Some(Certificate::from_pem(ca)),
        }
    }

    /// Server side of the client API: our certificate, no client certificates asked for.
    pub fn client_api(&self) -> Option<ServerTlsConfig> {
        self.identity.clone().map(|id| ServerTlsConfig::new().identity(id))
    }

    /// Server side of the internal API: our certificate, and a certificate signed by the CA
    /// required of every caller.
    pub fn internal_api(&self) -> Result<Option<ServerTlsConfig>, TlsError> {
        let Some(identity) = self.identity.clone() else {
            return Ok(None);
        };
        let ca = self.ca.clone().ok_or(TlsError::NoCa)?;
        Ok(Some(ServerTlsConfig::new().identity(identity).client_ca_root(ca)))
    }

    /// Client side: check the server against the CA, and present our certificate if we have
    /// one (members calling members).
    pub fn client(&self) -> ClientTlsConfig {
        let mut config = ClientTlsConfig::new();
        if let Some(ca) = self.ca.clone() {
            config = config.ca_certificate(ca);
        }
        if let Some(identity) = self.identity.clone() {
            config = config.identity(identity);
        }
        config
    }
}

/// `builder` serving over TLS when `config` is given.
pub fn with_tls(
    builder: tonic::transport::Server,
    config: Option<ServerTlsConfig>,
) -> Result<tonic::transport::Server, tonic::transport::Error> {
    match config {
        Some(config) => builder.tls_config(config),
        None => Ok(builder),
    }
}
