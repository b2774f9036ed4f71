//! How clients prove who they are: the deployment's auth mode, and the bearer token every
//! client call carries after Register or Login.

use tonic::metadata::{Ascii, MetadataMap, MetadataValue};

/// Longest token (or anything presented as one) the server looks at.
pub const MAX_TOKEN_LEN: usize = 256;

/// How users log in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Accounts with a username and a password (Argon2id); the default everywhere.
    Password,
    /// The classic course deployment: numeric user ids, no password.
    Open,
}

impl AuthMode {
    pub fn to_proto(self) -> crate::proto::coordinator::AuthMode {
        match self {
            AuthMode::Password => crate::proto::coordinator::AuthMode::Password,
            AuthMode::Open => crate::proto::coordinator::AuthMode::Open,
        }
    }

    pub fn from_proto(mode: i32) -> Option<Self> {
        match crate::proto::coordinator::AuthMode::try_from(mode) {
            Ok(crate::proto::coordinator::AuthMode::Password) => Some(AuthMode::Password),
            Ok(crate::proto::coordinator::AuthMode::Open) => Some(AuthMode::Open),
            _ => None,
        }
    }
}

impl std::fmt::Display for AuthMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AuthMode::Password => "password",
            AuthMode::Open => "open",
        })
    }
}

/// The `--auth` flag (and `TINYSNS_AUTH`), shared by every process that needs the mode.
#[derive(Debug, Clone, clap::Args, serde::Serialize)]
pub struct AuthArgs {
    /// How users log in: `password` (accounts) or `open` (classic numeric ids, no password).
    #[arg(long = "auth", env = "TINYSNS_AUTH", value_enum, default_value_t = AuthMode::Password)]
    pub auth: AuthMode,
}

/// Attaches the session token to every call of a client.
#[derive(Clone, Debug)]
pub struct Bearer(MetadataValue<Ascii>);

impl Bearer {
    /// None if `token` cannot be a header value (a server never issues such a token).
    pub fn new(token: &str) -> Option<Self> {
        MetadataValue::try_from(format!("Bearer {token}")).ok().map(Self)
    }
}

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        request.metadata_mut().insert("authorization", self.0.clone());
        Ok(request)
    }
}

/// The token a call presents, or UNAUTHENTICATED with the reason.
pub fn presented_token(metadata: &MetadataMap) -> Result<&str, tonic::Status> {
    let value = metadata
        .get("authorization")
        .ok_or_else(|| tonic::Status::unauthenticated("no session token: log in first"))?;
    if value.len() > MAX_TOKEN_LEN + "Bearer ".len() {
        return Err(tonic::Status::unauthenticated(format!(
            "session token longer than {MAX_TOKEN_LEN} bytes"
        )));
    }
    let text = value
        .to_str()
        .map_err(|_| tonic::Status::unauthenticated("session token is not ASCII"))?;
    match text.strip_prefix("Bearer ") {
        Some(token) if !token.is_empty() => Ok(token),
        _ => Err(tonic::Status::unauthenticated("authorization must be `Bearer <token>`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::service::Interceptor;

    #[test]
    fn a_bearer_token_round_trips_and_bad_ones_are_refused() {
        let mut bearer = Bearer::new("abc123").unwrap();
        let request = bearer.call(tonic::Request::new(())).unwrap();
        assert_eq!(presented_token(request.metadata()).unwrap(), "abc123");

        let mut m = MetadataMap::new();
        assert_eq!(presented_token(&m).unwrap_err().code(), tonic::Code::Unauthenticated);
        m.insert("authorization", MetadataValue::from_static("Basic xyz"));
        assert_eq!(presented_token(&m).unwrap_err().code(), tonic::Code::Unauthenticated);
        m.insert("authorization", MetadataValue::from_static("Bearer "));
        assert_eq!(presented_token(&m).unwrap_err().code(), tonic::Code::Unauthenticated);
        let long = format!("Bearer {}", "x".repeat(MAX_TOKEN_LEN + 1));
        m.insert("authorization", MetadataValue::try_from(long).unwrap());
        assert_eq!(presented_token(&m).unwrap_err().code(), tonic::Code::Unauthenticated);
        assert!(Bearer::new("line\nbreak").is_none());
    }
}
