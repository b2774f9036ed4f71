//! Accounts and sessions on the client API: register, log in, hold presence, log out,
//! change a password. What a token is and how passwords are hashed is in `accounts`;
//! who is connected is in `presence`.

use crate::accounts::{CredentialError, new_token, token_hash};
use crate::command::{Command, Outcome, Registration};
use crate::metrics::LoginResult;
use crate::presence::KEEPALIVE_INTERVAL;
use crate::presence::PresenceError;
use crate::social::{Caller, Social, reply};
use crate::store;
use std::time::Instant;
use tinysns_common::auth::AuthMode;
use tinysns_common::limits::{canonical_username, validate_password};
use tinysns_common::proto::social::{
    ChangePasswordRequest, LoginReply, LoginRequest, RegisterRequest, Reply, SessionEvent, Status as Code,
};
use tinysns_common::topology::{cluster_of_user, cluster_of_username};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

/// The same answer for an unknown username and a wrong password: nothing tells which.
const WRONG_CREDENTIALS: &str = "wrong username or password";

fn refused(status: Code, message: impl Into<String>) -> LoginReply {
    LoginReply {
        status: status as i32,
        message: message.into(),
        keepalive_interval_ms: KEEPALIVE_INTERVAL.as_millis() as u32,
        ..Default::default()
    }
}

/// How a login call ended, for metrics.
pub(crate) fn login_result(result: &Result<LoginReply, Status>) -> LoginResult {
    match result {
        Ok(reply) if reply.status == Code::Success as i32 => LoginResult::Ok,
        Ok(reply) if reply.message == WRONG_CREDENTIALS => LoginResult::WrongCredentials,
        Ok(_) => LoginResult::Refused,
        // Too many failed logins for the name, or every password hasher busy.
        Err(status) if status.code() == tonic::Code::ResourceExhausted => LoginResult::Throttled,
        Err(_) => LoginResult::Error,
    }
}

fn presence_refused(error: PresenceError) -> LoginReply {
    refused(Code::FailureAlreadyExists, error.to_string())
}

impl Social {
    /// The canonical username if it is valid and this cluster owns it.
    fn owned_username(&self, text: &str) -> Result<Result<String, LoginReply>, Status> {
        self.master()?;
        let clusters = self.clusters();
        let Ok(name) = canonical_username(text) else {
            return Ok(Err(refused(
                Code::FailureInvalidUsername,
                "a username is 1 to 32 characters of a-z, 0-9 and _",
            )));
        };
        Ok(match cluster_of_username(&name, clusters) {
            Ok(owner) if owner == self.cluster => Ok(name),
            Ok(owner) => Err(refused(
                Code::FailureInvalid,
                format!("{name} belongs to cluster {owner}: ask the coordinator for its server"),
            )),
            Err(e) => Err(refused(Code::FailureInvalid, e.to_string())),
        })
    }

    pub(crate) async fn register_account(&self, request: RegisterRequest) -> Result<LoginReply, Status> {
        if self.auth != AuthMode::Password {
            return Ok(refused(
                Code::FailureInvalid,
                "this system runs in open mode: log in with a numeric user id, no registration",
            ));
        }
        let name = match self.owned_username(&request.username)? {
            Ok(name) => name,
            Err(refusal) => return Ok(refusal),
        };
        if let Err(e) = validate_password(&request.password) {
            return Ok(refused(Code::FailureInvalid, e.to_string()));
        }
        let password_phc = self.hasher.hash(request.password).await.map_err(internal)?;
        let registration = Registration {
            username: name.clone(),
            password_phc,
            cluster: self.cluster,
            clusters: self.clusters(),
        };
        if let Outcome::Rejected(status, message) = self.submit(Command::Register(registration)).await? {
            return Ok(refused(status, message));
        }
        let lookup = name.clone();
        let user = self
            .read(move |c| store::user_by_name(c, &lookup))
            .await?
            .ok_or_else(|| Status::internal("the new account is not in the store"))?;
        tracing::info!(user, username = %name, "account registered");
        self.start_session(user, name).await
    }

    pub(crate) async fn log_in(&self, request: LoginRequest) -> Result<LoginReply, Status> {
        match self.auth {
            AuthMode::Open if request.username.is_empty() => self.log_in_open(request.user_id).await,
            AuthMode::Open => Ok(refused(
                Code::FailureInvalid,
                "this system runs in open mode: log in with a numeric user id",
            )),
            AuthMode::Password if request.username.is_empty() => Ok(refused(
                Code::FailureInvalid,
                "this system uses accounts: log in with a username and password",
            )),
            AuthMode::Password => self.log_in_password(request).await,
        }
    }

    /// The classic login: any valid id of this cluster, created on first login.
    async fn log_in_open(&self, user: u64) -> Result<LoginReply, Status> {
        self.master()?;
        let clusters = self.clusters();
        match cluster_of_user(user, clusters) {
            Err(_) => {
                return Ok(refused(
                    Code::FailureInvalidUsername,
                    format!("{user} is not a valid user id"),
                ));
            }
            Ok(c) if c != self.cluster => {
                return Ok(refused(
                    Code::FailureInvalid,
                    format!("user {user} belongs to cluster {c}, not {}", self.cluster),
                ));
            }
            Ok(_) => {}
        }
        self.submit(Command::CreateUser { user }).await?;
        self.start_session(user, String::new()).await
    }

    async fn log_in_password(&self, request: LoginRequest) -> Result<LoginReply, Status> {
        let name = match self.owned_username(&request.username)? {
            Ok(name) => name,
            Err(refusal) => return Ok(refusal),
        };
        if let Err(wait) = self.failed_logins.check(&name, Instant::now()) {
            return Err(Status::resource_exhausted(format!(
                "too many failed logins for {name}: try again in {} s",
                wait.as_secs() + 1
            )));
        }
        let lookup = name.clone();
        let account = self
            .read(move |c| {
                let Some(user) = store::user_by_name(c, &lookup)? else {
                    return Ok(None);
                };
                Ok(Some((user, store::password_hash(c, user)?)))
            })
            .await?;
        let (user, phc) = account.map_or((0, None), |(user, phc)| (user, phc));
        // Bounded in length before the expensive check; a wrong one costs a full hash anyway.
        let plausible = validate_password(&request.password).is_ok();
        let matches = self.hasher.verify(request.password, phc).await.map_err(internal)?;
        if !(plausible && matches) {
            self.failed_logins.failed(&name, Instant::now());
            return Ok(refused(Code::FailureInvalid, WRONG_CREDENTIALS));
        }
        self.failed_logins.succeeded(&name);
        self.start_session(user, name).await
    }

    /// Issues a token, records its hash (replicated: the session survives a failover) and
    /// marks the session present.
    async fn start_session(&self, user: u64, username: String) -> Result<LoginReply, Status> {
        let token = new_token();
        let hash = token_hash(&token);
        if let Err(error) = self.presence.renew(user, &hash, Instant::now()) {
            return Ok(presence_refused(error));
        }
        let expires_ms = tinysns_common::now_ms().saturating_add(self.session_ttl.as_millis() as i64);
        let command = Command::StartSession {
            user,
            token_hash: hash.clone(),
            expires_ms,
        };
        match self.submit(command).await {
            Ok(Outcome::Rejected(status, message)) => {
                self.presence.leave(user, &hash);
                Ok(refused(status, message))
            }
            Ok(_) => {
                tracing::info!(user, "login");
                Ok(LoginReply {
                    status: Code::Success as i32,
                    message: String::new(),
                    keepalive_interval_ms: KEEPALIVE_INTERVAL.as_millis() as u32,
                    token,
                    user_id: user,
                    username,
                    expires_ms,
                })
            }
            Err(status) => {
                self.presence.leave(user, &hash);
                Err(status)
            }
        }
    }

    /// The Attach stream: present while it is open, ended when the client goes away or this
    /// server stops being master (the client then re-attaches to the new master).
    pub(crate) fn hold_presence(&self, caller: Caller) -> Result<ReceiverStream<Result<SessionEvent, Status>>, Status> {
        let attached = self
            .presence
            .attach(caller.user, &caller.token_hash, Instant::now())
            .map_err(|e| Status::already_exists(e.to_string()))?;
        let (tx, rx) = mpsc::channel(1);
        let me = self.clone();
        tokio::spawn(async move {
            let _attached = attached;
            if tx.send(Ok(SessionEvent { user_id: caller.user })).await.is_err() {
                return;
            }
            let mut role = me.role.clone();
            loop {
                tokio::select! {
                    _ = tx.closed() => return,
                    _ = role.changed() => {
                        if let Err(status) = me.master() {
                            let _ = tx.send(Err(status)).await;
                            return;
                        }
                    }
                }
            }
        });
        Ok(ReceiverStream::new(rx))
    }

    pub(crate) fn renew_presence(&self, caller: &Caller) -> Reply {
        match self.presence.renew(caller.user, &caller.token_hash, Instant::now()) {
            Ok(()) => reply(Code::Success, ""),
            Err(error) => reply(Code::FailureAlreadyExists, error.to_string()),
        }
    }

    pub(crate) async fn log_out(&self, caller: Caller) -> Result<Reply, Status> {
        self.presence.leave(caller.user, &caller.token_hash);
        self.submit(Command::EndSession {
            token_hash: caller.token_hash,
        })
        .await?;
        tracing::info!(user = caller.user, "logout");
        Ok(reply(Code::Success, ""))
    }

    /// Password mode: needs the current password; every other session of the user ends.
    pub(crate) async fn set_password(&self, caller: Caller, request: ChangePasswordRequest) -> Result<Reply, Status> {
        if self.auth != AuthMode::Password {
            return Ok(reply(Code::FailureInvalid, "open mode has no passwords"));
        }
        if let Err(e) = validate_password(&request.new_password) {
            return Ok(reply(Code::FailureInvalid, e.to_string()));
        }
        if let Err(wait) = self.failed_logins.check(&caller.username, Instant::now()) {
            return Err(Status::resource_exhausted(format!(
                "too many failed attempts: try again in {} s",
                wait.as_secs() + 1
            )));
        }
        let user = caller.user;
        let phc = self.read(move |c| store::password_hash(c, user)).await?;
        if !self
            .hasher
            .verify(request.current_password, phc)
            .await
            .map_err(internal)?
        {
            self.failed_logins.failed(&caller.username, Instant::now());
            return Ok(reply(Code::FailureInvalid, "the current password is wrong"));
        }
        let password_phc = self.hasher.hash(request.new_password).await.map_err(internal)?;
        let command = Command::SetPassword {
            user,
            password_phc,
            keep_session: caller.token_hash,
        };
        Ok(match self.submit(command).await? {
            Outcome::Rejected(status, message) => reply(status, message),
            _ => {
                tracing::info!(user, "password changed; other sessions revoked");
                reply(Code::Success, "")
            }
        })
    }
}

fn internal(error: CredentialError) -> Status {
    match error {
        CredentialError::Busy => Status::resource_exhausted(error.to_string()),
        other => Status::internal(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_is_counted_by_how_it_ended() {
        let ok = LoginReply {
            status: Code::Success as i32,
            token: "t".into(),
            ..Default::default()
        };
        assert_eq!(login_result(&Ok(ok)), LoginResult::Ok);
        let wrong = refused(Code::FailureInvalid, WRONG_CREDENTIALS);
        assert_eq!(login_result(&Ok(wrong)), LoginResult::WrongCredentials);
        let elsewhere = presence_refused(PresenceError::AlreadyPresent);
        assert_eq!(login_result(&Ok(elsewhere)), LoginResult::Refused);
        let invalid = refused(Code::FailureInvalidUsername, "a username is ...");
        assert_eq!(login_result(&Ok(invalid)), LoginResult::Refused);
        let throttled = Status::resource_exhausted("too many failed logins");
        assert_eq!(login_result(&Err(throttled)), LoginResult::Throttled);
        let not_master = tinysns_common::grpc::not_master("cluster 1 is served by another server");
        assert_eq!(login_result(&Err(not_master)), LoginResult::Error);
    }
}
