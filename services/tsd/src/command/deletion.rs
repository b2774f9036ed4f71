//! What deleting an account means, as commands: phase 1 at the user's home, each cluster's
//! readiness, phase 2 once every cluster is ready; and which changes an account being
//! deleted (or deleted) refuses or ignores.

use super::{Decision, Outcome, change, reject};
use crate::store;
use rusqlite::Connection;
use tinysns_common::proto::internal::{AccountDeleted, AccountDeletionPrepared, AccountDeletionReady};
use tinysns_common::proto::social::Status;

/// The user asks to delete its account (at its home): phase 1, once.
pub(super) fn decide_delete(conn: &Connection, user: u64, username: &str) -> Result<Decision, store::StoreError> {
    if store::account_closed(conn, user)? {
        return Ok(Decision::Done(Outcome::Unchanged(None)));
    }
    if !store::user_exists(conn, user)? {
        return Ok(reject(Status::FailureNotExists, format!("user {user} does not exist")));
    }
    Ok(Decision::Write {
        kind: change(change::Kind::DeletionPrepared(AccountDeletionPrepared {
            user,
            username: username.to_owned(),
        })),
        origin: None,
    })
}

/// This cluster says it is ready, once, for a deletion in phase 1 here.
pub(super) fn decide_ready(conn: &Connection, user: u64, cluster: u32) -> Result<Decision, store::StoreError> {
    let prepared = store::deletion_state(conn, user)? == Some(store::Deletion::Prepared);
    if !prepared || store::deletion_ready(conn, user, cluster)? {
        return Ok(Decision::Done(Outcome::Unchanged(None)));
    }
    Ok(Decision::Write {
        kind: change(change::Kind::DeletionReady(AccountDeletionReady { user, cluster })),
        origin: None,
    })
}

/// Phase 2, once every one of `clusters` clusters is ready (at the user's home).
pub(super) fn decide_complete(
    conn: &Connection,
    user: u64,
    username: &str,
    clusters: u32,
) -> Result<Decision, store::StoreError> {
    let prepared = store::deletion_state(conn, user)? == Some(store::Deletion::Prepared);
    for cluster in 1..=clusters {
        if !prepared || !store::deletion_ready(conn, user, cluster)? {
            return Ok(Decision::Done(Outcome::Unchanged(None)));
        }
    }
    Ok(Decision::Write {
        kind: change(change::Kind::AccountDeleted(AccountDeleted {
            user,
            username: username.to_owned(),
        })),
        origin: None,
    })
}

/// Whether any of `users` is being deleted or is deleted (a change involving one is refused,
/// or ignored when it comes from elsewhere).
pub(super) fn any_closed(conn: &Connection, users: &[u64]) -> Result<bool, store::StoreError> {
    for user in users {
        if store::account_closed(conn, *user)? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The users another cluster's change is about (none for the phases of a deletion, which
/// must pass).
pub(super) fn involved(kind: &change::Kind) -> Vec<u64> {
    match kind {
        change::Kind::User(u) => vec![u.user_id],
        change::Kind::Follow(f) => vec![f.follower, f.followee],
        change::Kind::Post(p) => vec![p.author],
        change::Kind::PostDeleted(d) => vec![d.author],
        change::Kind::Profile(p) => vec![p.user_id],
        change::Kind::Like(l) => vec![l.liker, l.post_author],
        change::Kind::DirectMessage(m) => vec![m.sender, m.recipient],
        change::Kind::ConversationRead(r) => vec![r.reader, r.peer],
        change::Kind::Block(b) => vec![b.blocker, b.blocked],
        change::Kind::TopicSubscription(t) => vec![t.user],
        change::Kind::Room(r) => r.kind.as_ref().map(super::room::involved).unwrap_or_default(),
        // Numbers are applied everywhere alike (a closed author's post is left out when it
        // applies), so every cluster's numbering stays the same.
        change::Kind::TopicSequenced(_)
        | change::Kind::DeletionPrepared(_)
        | change::Kind::DeletionReady(_)
        | change::Kind::AccountDeleted(_) => Vec::new(),
    }
}

/// Why a local command is refused: a user it involves is being deleted or is deleted.
pub(super) fn closed_refusal(users: &[u64]) -> Decision {
    let who = users.iter().map(u64::to_string).collect::<Vec<_>>().join(" or ");
    reject(
        Status::FailureNotExists,
        format!("user {who} does not exist (its account is deleted)"),
    )
}
