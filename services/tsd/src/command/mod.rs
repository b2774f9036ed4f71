//! What each write means: a command checked against the current state becomes a log entry
//! to write, or an outcome without one (already so, or refused). Pure with respect to the
//! store it reads, so it is unit-tested against a temporary store; the writer thread only
//! batches and commits.

use crate::store;
use rusqlite::Connection;

mod deletion;
mod room;
pub use room::RoomCommand;
use tinysns_common::proto::internal::{
    AccountChange, BlockSet, Change, ConversationRead, DirectMessage, FollowChanged, LikeSet, PasswordSet, PostCreated,
    PostDeleted, ProfileSet, Registered, RemoteChange, SessionEnded, SessionStarted, SyncCursor, TopicSequenced,
    TopicSubscription, UserCreated, account_change, change, log_entry,
};
use tinysns_common::proto::social::Status;

/// A write a master accepts.
#[derive(Debug, Clone)]
pub enum Command {
    /// Open mode: the user's first login creates it.
    CreateUser {
        user: u64,
    },
    Follow {
        follower: u64,
        followee: u64,
        on: bool,
    },
    Post {
        author: u64,
        author_name: String,
        post_id: u64,
        text: String,
        /// The post it replies to (author, number), which must be stored here unless
        /// `parent_vouched`.
        reply_to: Option<(u64, u64)>,
        /// The post replied to is not kept here, and its author's cluster said it exists.
        parent_vouched: bool,
        /// Its topics, canonical (`tinysns_common::topics::topics_of`).
        topics: Vec<String>,
    },
    /// The topic's home numbers a post waiting in `topic` (at the topic's home cluster).
    SequenceTopic {
        topic: String,
        author: u64,
        number: u64,
    },
    /// The user deletes its account (at its home cluster): phase 1 of the deletion.
    DeleteAccount {
        user: u64,
        username: String,
    },
    /// This cluster is ready for `user`'s deletion (in phase 1 here).
    ReadyForDeletion {
        user: u64,
        cluster: u32,
    },
    /// Phase 2 of `user`'s deletion, once each of `clusters` is ready (at the user's home).
    CompleteDeletion {
        user: u64,
        username: String,
        clusters: u32,
    },
    /// `user` subscribes (`on`) to `topic` or stops (at the user's home cluster).
    Subscribe {
        user: u64,
        topic: String,
        on: bool,
    },
    /// The author deletes one of its posts (at the author's home cluster).
    DeletePost {
        author: u64,
        number: u64,
    },
    /// A user likes (`on`) or stops liking the post `author/number` (at the liker's home).
    Like {
        liker: u64,
        /// The liker's username (empty in open mode).
        liker_name: String,
        author: u64,
        number: u64,
        on: bool,
        /// The post is not kept here, and its author's cluster said it exists.
        vouched: bool,
    },
    /// A direct message (at the sender's home cluster); once per (sender, message id).
    SendMessage {
        sender: u64,
        sender_name: String,
        recipient: u64,
        message_id: u64,
        text: String,
    },
    /// The reader has read its conversation with `peer` up to the message stamped `up_to_hlc`.
    ReadConversation {
        reader: u64,
        peer: u64,
        up_to_hlc: u64,
    },
    /// `blocker` blocks (`on`) or stops blocking `blocked` (at the blocker's home cluster).
    Block {
        blocker: u64,
        blocked: u64,
        on: bool,
    },
    Remote(RemoteChange),
    Room(RoomCommand),
    /// A user's own profile (at the user's home cluster); a field left None keeps its value.
    SetProfile {
        user: u64,
        display_name: Option<String>,
        bio: Option<String>,
    },
    SyncCursor(u64),
    /// Password mode: a new account, with the next id of this cluster's residue class.
    Register(Registration),
    SetPassword {
        user: u64,
        password_phc: String,
        keep_session: Vec<u8>,
    },
    StartSession {
        user: u64,
        token_hash: Vec<u8>,
        expires_ms: i64,
    },
    EndSession {
        token_hash: Vec<u8>,
    },
    /// A refusal decided from this replica's data (an unknown username): it still goes
    /// through the writer so that it is fenced like any other answer, and a deposed master
    /// cannot answer from stale data.
    Refuse {
        status: Status,
        message: String,
    },
}

/// What registering an account needs (the username canonical, the password hashed).
#[derive(Debug, Clone)]
pub struct Registration {
    pub username: String,
    pub password_phc: String,
    pub cluster: u32,
    pub clusters: u32,
}

/// What became of a command.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Written as the entry at this lsn.
    Written(u64),
    /// Nothing to write: already so. For a post, the lsn at which it was stored.
    Unchanged(Option<u64>),
    /// Refused, with the status and detail for the client.
    Rejected(Status, String),
}

/// Where and when a remote change was first made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    pub cluster: u32,
    pub lsn: u64,
    pub timestamp_ms: i64,
    /// Its hybrid logical clock stamp (`crate::clock`).
    pub hlc: u64,
}

pub enum Decision {
    Write {
        kind: log_entry::Kind,
        /// Where a change from another cluster was first made (None: made here, now).
        origin: Option<Origin>,
    },
    Done(Outcome),
}

fn change(kind: change::Kind) -> log_entry::Kind {
    log_entry::Kind::Change(Change { kind: Some(kind) })
}

fn reject(status: Status, message: impl Into<String>) -> Decision {
    Decision::Done(Outcome::Rejected(status, message.into()))
}

/// Checks a command against the current state (including earlier writes of the same batch).
pub fn decide(conn: &Connection, command: &Command) -> Result<Decision, store::StoreError> {
    let users = acting_on(command);
    if !users.is_empty() && deletion::any_closed(conn, &users)? {
        return Ok(deletion::closed_refusal(&users));
    }
    decide_open(conn, command)
}

/// The users a local command acts for or on: none may be an account being deleted.
fn acting_on(command: &Command) -> Vec<u64> {
    match command {
        Command::CreateUser { user } => vec![*user],
        Command::Follow { follower, followee, .. } => vec![*follower, *followee],
        Command::Post { author, reply_to, .. } => [*author].into_iter().chain(reply_to.map(|(a, _)| a)).collect(),
        Command::DeletePost { author, .. } => vec![*author],
        Command::Like { liker, author, .. } => vec![*liker, *author],
        Command::SendMessage { sender, recipient, .. } => vec![*sender, *recipient],
        Command::Block { blocker, blocked, .. } => vec![*blocker, *blocked],
        Command::SetProfile { user, .. } | Command::Subscribe { user, .. } => vec![*user],
        Command::StartSession { user, .. } | Command::SetPassword { user, .. } => vec![*user],
        Command::SequenceTopic { author, .. } => vec![*author],
        Command::Room(room) => room.actor().into_iter().collect(),
        Command::ReadConversation { .. }
        | Command::DeleteAccount { .. }
        | Command::ReadyForDeletion { .. }
        | Command::CompleteDeletion { .. }
        | Command::Remote(_)
        | Command::SyncCursor(_)
        | Command::Register(_)
        | Command::EndSession { .. }
        | Command::Refuse { .. } => Vec::new(),
    }
}

/// [`decide`] for a command that involves no account being deleted.
fn decide_open(conn: &Connection, command: &Command) -> Result<Decision, store::StoreError> {
    Ok(match command {
        Command::CreateUser { user } => {
            if store::user_exists(conn, *user)? {
                Decision::Done(Outcome::Unchanged(None))
            } else {
                Decision::Write {
                    kind: change(change::Kind::User(UserCreated {
                        user_id: *user,
                        username: String::new(),
                    })),
                    origin: None,
                }
            }
        }
        Command::Follow { follower, followee, on } => {
            let (follower, followee, on) = (*follower, *followee, *on);
            if follower == followee {
                let what = if on { "follow" } else { "unfollow" };
                return Ok(reject(
                    Status::FailureInvalid,
                    format!("users cannot {what} themselves"),
                ));
            }
            if !store::user_exists(conn, follower)? {
                return Ok(reject(
                    Status::FailureNotExists,
                    format!("user {follower} has never logged in"),
                ));
            }
            if !store::user_exists(conn, followee)? {
                return Ok(reject(
                    Status::FailureNotExists,
                    format!("user {followee} does not exist"),
                ));
            }
            if on && store::blocks(conn, followee, follower)? {
                return Ok(reject(
                    Status::FailureNotExists,
                    format!("user {followee} does not accept follows from you"),
                ));
            }
            let following = store::follow_state(conn, follower, followee)?.is_some_and(|(f, _)| f);
            match (on, following) {
                (true, true) => reject(Status::FailureAlreadyExists, format!("already following {followee}")),
                (false, false) => reject(Status::FailureNotAFollower, format!("not following {followee}")),
                _ => Decision::Write {
                    kind: change(change::Kind::Follow(FollowChanged {
                        follower,
                        followee,
                        following: on,
                    })),
                    origin: None,
                },
            }
        }
        Command::Post {
            author,
            author_name,
            post_id,
            text,
            reply_to,
            parent_vouched,
            topics,
        } => decide_post(
            conn,
            *parent_vouched,
            PostCreated {
                author: *author,
                post_id: *post_id,
                text: text.clone(),
                author_name: author_name.clone(),
                number: 0,
                reply_to_author: reply_to.map(|(a, _)| a).unwrap_or_default(),
                reply_to_number: reply_to.map(|(_, n)| n).unwrap_or_default(),
                topics: topics.clone(),
            },
        )?,
        Command::SequenceTopic { topic, author, number } => decide_sequence(conn, topic, *author, *number)?,
        Command::DeleteAccount { user, username } => deletion::decide_delete(conn, *user, username)?,
        Command::ReadyForDeletion { user, cluster } => deletion::decide_ready(conn, *user, *cluster)?,
        Command::CompleteDeletion {
            user,
            username,
            clusters,
        } => deletion::decide_complete(conn, *user, username, *clusters)?,
        Command::Subscribe { user, topic, on } => {
            if store::subscription_state(conn, *user, topic)?.is_some_and(|(s, _)| s) == *on {
                Decision::Done(Outcome::Unchanged(None))
            } else {
                Decision::Write {
                    kind: change(change::Kind::TopicSubscription(TopicSubscription {
                        user: *user,
                        topic: topic.clone(),
                        subscribed: *on,
                    })),
                    origin: None,
                }
            }
        }
        Command::DeletePost { author, number } => {
            if store::is_tombstoned(conn, *author, *number)? {
                Decision::Done(Outcome::Unchanged(None))
            } else if store::post_by_number(conn, *author, *number)?.is_none() {
                reject(Status::FailureNotExists, format!("there is no post {author}/{number}"))
            } else {
                Decision::Write {
                    kind: change(change::Kind::PostDeleted(PostDeleted {
                        author: *author,
                        number: *number,
                    })),
                    origin: None,
                }
            }
        }
        Command::Like {
            liker,
            liker_name,
            author,
            number,
            on,
            vouched,
        } => decide_like(conn, (*liker, liker_name), (*author, *number), *on, *vouched)?,
        Command::SendMessage {
            sender,
            sender_name,
            recipient,
            message_id,
            text,
        } => decide_message(
            conn,
            DirectMessage {
                sender: *sender,
                recipient: *recipient,
                message_id: *message_id,
                text: text.clone(),
                sender_name: sender_name.clone(),
            },
        )?,
        Command::ReadConversation {
            reader,
            peer,
            up_to_hlc,
        } => {
            let unread = store::inbox_entry(conn, *reader, *peer)?.is_some_and(|c| c.unread > 0);
            if unread {
                Decision::Write {
                    kind: change(change::Kind::ConversationRead(ConversationRead {
                        reader: *reader,
                        peer: *peer,
                        up_to_hlc: *up_to_hlc,
                    })),
                    origin: None,
                }
            } else {
                Decision::Done(Outcome::Unchanged(None))
            }
        }
        Command::Block { blocker, blocked, on } => decide_block(conn, *blocker, *blocked, *on)?,
        Command::SetProfile {
            user,
            display_name,
            bio,
        } => {
            if !store::user_exists(conn, *user)? {
                return Ok(reject(
                    Status::FailureNotExists,
                    format!("user {user} has never logged in"),
                ));
            }
            let (old_name, old_bio) = store::profile_fields(conn, *user)?
                .map(|(name, bio, _)| (name, bio))
                .unwrap_or_default();
            let name = display_name.clone().unwrap_or_else(|| old_name.clone());
            let bio = bio.clone().unwrap_or_else(|| old_bio.clone());
            if name == old_name && bio == old_bio {
                Decision::Done(Outcome::Unchanged(None))
            } else {
                Decision::Write {
                    kind: change(change::Kind::Profile(ProfileSet {
                        user_id: *user,
                        display_name: name,
                        bio,
                    })),
                    origin: None,
                }
            }
        }
        Command::SyncCursor(lsn) => {
            if *lsn <= store::sync_cursor(conn)? {
                Decision::Done(Outcome::Unchanged(None))
            } else {
                Decision::Write {
                    kind: log_entry::Kind::SyncCursor(SyncCursor { lsn: *lsn }),
                    origin: None,
                }
            }
        }
        Command::Remote(remote) => decide_remote(conn, remote)?,
        Command::Room(room) => room::decide(conn, room)?,
        Command::Register(registration) => decide_registration(conn, registration)?,
        Command::Refuse { status, message } => reject(*status, message.clone()),
        Command::SetPassword {
            user,
            password_phc,
            keep_session,
        } => {
            if store::password_hash(conn, *user)?.is_none() {
                reject(Status::FailureNotExists, format!("user {user} has no account here"))
            } else {
                account(account_change::Kind::Password(PasswordSet {
                    user_id: *user,
                    password_phc: password_phc.clone(),
                    keep_session: keep_session.clone(),
                }))
            }
        }
        Command::StartSession {
            user,
            token_hash,
            expires_ms,
        } => {
            if store::user_exists(conn, *user)? {
                account(account_change::Kind::SessionStarted(SessionStarted {
                    user_id: *user,
                    token_hash: token_hash.clone(),
                    expires_ms: *expires_ms,
                }))
            } else {
                reject(Status::FailureNotExists, format!("user {user} does not exist"))
            }
        }
        Command::EndSession { token_hash } => {
            if store::session(conn, token_hash)?.is_some() {
                account(account_change::Kind::SessionEnded(SessionEnded {
                    token_hash: token_hash.clone(),
                }))
            } else {
                Decision::Done(Outcome::Unchanged(None))
            }
        }
    })
}

/// A post is stored once per (author, client-chosen id): a re-sent post is Unchanged, with
/// the position it was stored at. It takes the author's next number; a reply needs the post
/// it answers.
fn decide_post(conn: &Connection, parent_vouched: bool, mut post: PostCreated) -> Result<Decision, store::StoreError> {
    let author = post.author;
    if let Some(seq) = store::post_seq(conn, author, post.post_id)? {
        return Ok(Decision::Done(Outcome::Unchanged(Some(seq))));
    }
    if !store::user_exists(conn, author)? {
        return Ok(reject(
            Status::FailureNotExists,
            format!("user {author} has never logged in"),
        ));
    }
    let (parent, parent_number) = (post.reply_to_author, post.reply_to_number);
    let parent_missing = parent_number > 0
        && if parent_vouched {
            store::is_tombstoned(conn, parent, parent_number)?
        } else {
            store::post_by_number(conn, parent, parent_number)?.is_none()
        };
    if parent_missing {
        return Ok(reject(
            Status::FailureNotExists,
            format!("there is no post {parent}/{parent_number}"),
        ));
    }
    post.number = store::highest_post_number(conn, author)? + 1;
    Ok(Decision::Write {
        kind: change(change::Kind::Post(post)),
        origin: None,
    })
}

/// A post waiting in a topic gets the topic's next number, once; one deleted (or numbered)
/// meanwhile waits no more.
fn decide_sequence(conn: &Connection, topic: &str, author: u64, number: u64) -> Result<Decision, store::StoreError> {
    if !store::is_pending(conn, topic, author, number)? {
        return Ok(Decision::Done(Outcome::Unchanged(None)));
    }
    let Some((post, post_hlc)) = store::post_as_created(conn, author, number)? else {
        return Ok(Decision::Done(Outcome::Unchanged(None)));
    };
    Ok(Decision::Write {
        kind: change(change::Kind::TopicSequenced(TopicSequenced {
            topic: topic.to_owned(),
            seq: store::topic_last_seq(conn, topic)? + 1,
            post: Some(post),
            post_hlc,
            numbering_only: false,
        })),
        origin: None,
    })
}

/// A message is stored once per (sender, id); never to oneself, to an unknown user, or to
/// someone who blocks the sender.
fn decide_message(conn: &Connection, message: DirectMessage) -> Result<Decision, store::StoreError> {
    let DirectMessage {
        sender,
        recipient,
        message_id,
        ..
    } = message;
    if store::message_stored(conn, sender, message_id)? {
        return Ok(Decision::Done(Outcome::Unchanged(None)));
    }
    if sender == recipient {
        return Ok(reject(Status::FailureInvalid, "users cannot message themselves"));
    }
    if !store::user_exists(conn, recipient)? {
        return Ok(reject(
            Status::FailureNotExists,
            format!("user {recipient} does not exist"),
        ));
    }
    if store::blocks(conn, recipient, sender)? {
        return Ok(reject(
            Status::FailureInvalid,
            format!("user {recipient} does not accept your messages"),
        ));
    }
    Ok(Decision::Write {
        kind: change(change::Kind::DirectMessage(message)),
        origin: None,
    })
}

fn decide_block(conn: &Connection, blocker: u64, blocked: u64, on: bool) -> Result<Decision, store::StoreError> {
    if blocker == blocked {
        return Ok(reject(Status::FailureInvalid, "users cannot block themselves"));
    }
    if !store::user_exists(conn, blocked)? {
        return Ok(reject(
            Status::FailureNotExists,
            format!("user {blocked} does not exist"),
        ));
    }
    if store::blocks(conn, blocker, blocked)? == on {
        return Ok(Decision::Done(Outcome::Unchanged(None)));
    }
    Ok(Decision::Write {
        kind: change(change::Kind::Block(BlockSet {
            blocker,
            blocked,
            blocking: on,
        })),
        origin: None,
    })
}

/// Liking is idempotent: liking a post one likes (or unliking one one does not) succeeds
/// and writes nothing. Only a post this cluster holds can be liked.
fn decide_like(
    conn: &Connection,
    (liker, liker_name): (u64, &str),
    (author, number): (u64, u64),
    on: bool,
    vouched: bool,
) -> Result<Decision, store::StoreError> {
    let liked = store::like_state(conn, author, number, liker)?.is_some_and(|(liked, _)| liked);
    if liked == on {
        return Ok(Decision::Done(Outcome::Unchanged(None)));
    }
    let missing = !vouched && store::post_by_number(conn, author, number)?.is_none();
    if on && (missing || store::is_tombstoned(conn, author, number)?) {
        return Ok(reject(
            Status::FailureNotExists,
            format!("there is no post {author}/{number}"),
        ));
    }
    Ok(Decision::Write {
        kind: change(change::Kind::Like(LikeSet {
            post_author: author,
            post_number: number,
            liker,
            liked: on,
            liker_name: liker_name.to_owned(),
        })),
        origin: None,
    })
}

fn account(kind: account_change::Kind) -> Decision {
    Decision::Write {
        kind: log_entry::Kind::Account(AccountChange { kind: Some(kind) }),
        origin: None,
    }
}

/// A username is taken at most once: every registration of a name is decided here, in the
/// one cluster that owns the name, by its single writer.
fn decide_registration(conn: &Connection, r: &Registration) -> Result<Decision, store::StoreError> {
    if store::user_by_name(conn, &r.username)?.is_some() {
        return Ok(reject(
            Status::FailureAlreadyExists,
            format!("the username {} is taken", r.username),
        ));
    }
    let highest = store::highest_registered(conn)?;
    let mut user_id = tinysns_common::topology::next_user_id(highest, r.cluster, r.clusters);
    // An id already present (an open-mode user of an earlier life of this store) is skipped.
    while store::user_exists(conn, user_id)? {
        user_id += u64::from(r.clusters.max(1));
    }
    Ok(account(account_change::Kind::Registered(Registered {
        user_id,
        username: r.username.clone(),
        password_phc: r.password_phc.clone(),
    })))
}

/// Idempotent apply of another cluster's change (checked by [`crate::remote::check_remote`]
/// before it was submitted): anything already reflected is skipped.
fn decide_remote(conn: &Connection, remote: &RemoteChange) -> Result<Decision, store::StoreError> {
    let Some(kind) = remote.change.as_ref().and_then(|c| c.kind.clone()) else {
        return Ok(reject(Status::FailureInvalid, "remote change without content"));
    };
    // Nothing about an account being deleted (or deleted) is taken from elsewhere any more.
    if deletion::any_closed(conn, &deletion::involved(&kind))? {
        return Ok(Decision::Done(Outcome::Unchanged(None)));
    }
    let fresh = match &kind {
        change::Kind::User(u) => !store::user_exists(conn, u.user_id)?,
        // A follow that reaches a cluster after the followee's block of the follower loses,
        // as it did where the block arrived after it (blocking ends the follow).
        change::Kind::Follow(f) => {
            !(f.following && store::blocks(conn, f.followee, f.follower)?)
                && store::follow_state(conn, f.follower, f.followee)?
                    .is_none_or(|(_, version)| remote.origin_lsn > version)
        }
        change::Kind::DirectMessage(m) => !store::message_stored(conn, m.sender, m.message_id)?,
        // Never published (checked before), so never applied from elsewhere.
        change::Kind::ConversationRead(_) => false,
        change::Kind::Block(b) => {
            store::block_state(conn, b.blocker, b.blocked)?.is_none_or(|(_, version)| remote.origin_lsn > version)
        }
        // A post deleted before its copy arrived stays deleted.
        change::Kind::Post(p) => {
            store::post_seq(conn, p.author, p.post_id)?.is_none()
                && !(p.number > 0 && store::is_tombstoned(conn, p.author, p.number)?)
        }
        change::Kind::PostDeleted(d) => !store::is_tombstoned(conn, d.author, d.number)?,
        // A number is given once per topic: one already here is a redelivery.
        change::Kind::TopicSequenced(t) => {
            store::topic_last_seq(conn, &t.topic)? < t.seq || !store::topic_seq_taken(conn, &t.topic, t.seq)?
        }
        change::Kind::TopicSubscription(t) => {
            store::subscription_state(conn, t.user, &t.topic)?.is_none_or(|(_, version)| remote.origin_lsn > version)
        }
        change::Kind::Profile(p) => {
            store::profile_fields(conn, p.user_id)?.is_none_or(|(_, _, version)| remote.origin_lsn > version)
        }
        change::Kind::Like(l) => {
            !store::is_tombstoned(conn, l.post_author, l.post_number)?
                && store::like_state(conn, l.post_author, l.post_number, l.liker)?
                    .is_none_or(|(_, version)| remote.origin_lsn > version)
        }
        change::Kind::DeletionPrepared(d) => store::deletion_state(conn, d.user)?.is_none(),
        change::Kind::DeletionReady(r) => {
            store::deletion_state(conn, r.user)? != Some(store::Deletion::Deleted)
                && !store::deletion_ready(conn, r.user, r.cluster)?
        }
        change::Kind::AccountDeleted(d) => store::deletion_state(conn, d.user)? != Some(store::Deletion::Deleted),
        change::Kind::Room(r) => match &r.kind {
            Some(kind) => room::fresh_remote(conn, kind, remote.origin_lsn)?,
            None => false,
        },
    };
    Ok(if fresh {
        Decision::Write {
            kind: change(kind),
            origin: Some(Origin {
                cluster: remote.origin_cluster,
                lsn: remote.origin_lsn,
                timestamp_ms: remote.timestamp_ms,
                // Changes from before stamps existed: their wall-clock time.
                hlc: if remote.hlc != 0 {
                    remote.hlc
                } else {
                    remote.timestamp_ms.max(0) as u64 * 1000
                },
            }),
        }
    } else {
        Decision::Done(Outcome::Unchanged(None))
    })
}

#[cfg(test)]
mod deletion_tests;
#[cfg(test)]
mod room_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod topic_tests;
