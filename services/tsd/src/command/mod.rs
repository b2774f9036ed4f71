//! What each write means: a command checked against the current state becomes a log entry
//! to write, or an outcome without one (already so, or refused). Pure with respect to the
//! store it reads, so it is unit-tested against a temporary store; the writer thread only
//! batches and commits.

use crate::store;
use rusqlite::Connection;
use tinysns_common::proto::internal::{
    AccountChange, Change, FollowChanged, LikeSet, PasswordSet, PostCreated, PostDeleted, ProfileSet, Registered,
    RemoteChange, SessionEnded, SessionStarted, SyncCursor, UserCreated, account_change, change, log_entry,
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
        /// The post it replies to (author, number), which must be stored here.
        reply_to: Option<(u64, u64)>,
    },
    /// The author deletes one of its posts (at the author's home cluster).
    DeletePost {
        author: u64,
        number: u64,
    },
    /// A user likes (`on`) or stops liking the post `author/number` (at the liker's home).
    Like {
        liker: u64,
        author: u64,
        number: u64,
        on: bool,
    },
    Remote(RemoteChange),
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
        } => decide_post(conn, *author, author_name, *post_id, text, *reply_to)?,
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
            author,
            number,
            on,
        } => decide_like(conn, *liker, *author, *number, *on)?,
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
fn decide_post(
    conn: &Connection,
    author: u64,
    author_name: &str,
    post_id: u64,
    text: &str,
    reply_to: Option<(u64, u64)>,
) -> Result<Decision, store::StoreError> {
    if let Some(seq) = store::post_seq(conn, author, post_id)? {
        return Ok(Decision::Done(Outcome::Unchanged(Some(seq))));
    }
    if !store::user_exists(conn, author)? {
        return Ok(reject(
            Status::FailureNotExists,
            format!("user {author} has never logged in"),
        ));
    }
    if let Some((parent, number)) = reply_to
        && store::post_by_number(conn, parent, number)?.is_none()
    {
        return Ok(reject(
            Status::FailureNotExists,
            format!("there is no post {parent}/{number}"),
        ));
    }
    let (reply_to_author, reply_to_number) = reply_to.unwrap_or_default();
    Ok(Decision::Write {
        kind: change(change::Kind::Post(PostCreated {
            author,
            post_id,
            text: text.to_owned(),
            author_name: author_name.to_owned(),
            number: store::highest_post_number(conn, author)? + 1,
            reply_to_author,
            reply_to_number,
        })),
        origin: None,
    })
}

/// Liking is idempotent: liking a post one likes (or unliking one one does not) succeeds
/// and writes nothing. Only a post this cluster holds can be liked.
fn decide_like(
    conn: &Connection,
    liker: u64,
    author: u64,
    number: u64,
    on: bool,
) -> Result<Decision, store::StoreError> {
    let liked = store::like_state(conn, author, number, liker)?.is_some_and(|(liked, _)| liked);
    if liked == on {
        return Ok(Decision::Done(Outcome::Unchanged(None)));
    }
    if on && (store::post_by_number(conn, author, number)?.is_none() || store::is_tombstoned(conn, author, number)?) {
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
    let fresh = match &kind {
        change::Kind::User(u) => !store::user_exists(conn, u.user_id)?,
        change::Kind::Follow(f) => {
            store::follow_state(conn, f.follower, f.followee)?.is_none_or(|(_, version)| remote.origin_lsn > version)
        }
        // A post deleted before its copy arrived stays deleted.
        change::Kind::Post(p) => {
            store::post_seq(conn, p.author, p.post_id)?.is_none()
                && !(p.number > 0 && store::is_tombstoned(conn, p.author, p.number)?)
        }
        change::Kind::PostDeleted(d) => !store::is_tombstoned(conn, d.author, d.number)?,
        change::Kind::Profile(p) => {
            store::profile_fields(conn, p.user_id)?.is_none_or(|(_, _, version)| remote.origin_lsn > version)
        }
        change::Kind::Like(l) => {
            !store::is_tombstoned(conn, l.post_author, l.post_number)?
                && store::like_state(conn, l.post_author, l.post_number, l.liker)?
                    .is_none_or(|(_, version)| remote.origin_lsn > version)
        }
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
mod tests {
    use super::*;
    use tinysns_common::proto::internal::LogEntry;

    /// Decides `command` on `conn` and, if it writes, appends and applies the entry.
    fn run(conn: &mut Connection, command: Command) -> Outcome {
        let tx = conn.transaction().unwrap();
        let lsn = store::last_lsn(&tx).unwrap() + 1;
        let outcome = match decide(&tx, &command).unwrap() {
            Decision::Write { kind, origin } => {
                let (origin_cluster, origin_lsn) = origin.map_or((2, lsn), |o| (o.cluster, o.lsn));
                let entry = LogEntry {
                    lsn,
                    term: 1,
                    timestamp_ms: 1_000,
                    origin_cluster,
                    origin_lsn,
                    kind: Some(kind),
                    hlc: 0,
                };
                store::append(&tx, &entry).unwrap();
                Outcome::Written(lsn)
            }
            Decision::Done(outcome) => outcome,
        };
        tx.commit().unwrap();
        outcome
    }

    fn register(name: &str) -> Command {
        Command::Register(Registration {
            username: name.into(),
            password_phc: format!("$phc-of-{name}"),
            cluster: 2,
            clusters: 3,
        })
    }

    fn session(user: u64, token: u8, expires_ms: i64) -> Command {
        Command::StartSession {
            user,
            token_hash: vec![token; 32],
            expires_ms,
        }
    }

    #[test]
    fn a_name_is_registered_once_with_ids_of_the_clusters_class() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = store::open(dir.path()).unwrap();
        assert!(matches!(run(&mut c, register("alice")), Outcome::Written(_)));
        assert!(matches!(run(&mut c, register("bob")), Outcome::Written(_)));
        assert!(matches!(
            run(&mut c, register("alice")),
            Outcome::Rejected(Status::FailureAlreadyExists, _)
        ));
        // Cluster 2 of 3 hands out 2, 5, 8...
        assert_eq!(store::user_by_name(&c, "alice").unwrap(), Some(2));
        assert_eq!(store::user_by_name(&c, "bob").unwrap(), Some(5));
        assert_eq!(store::password_hash(&c, 2).unwrap().as_deref(), Some("$phc-of-alice"));
        // An id taken by someone else (an open-mode user) is skipped.
        run(&mut c, Command::CreateUser { user: 8 });
        run(&mut c, register("carol"));
        assert_eq!(store::user_by_name(&c, "carol").unwrap(), Some(11));
    }

    fn post(author: u64, post_id: u64) -> Command {
        Command::Post {
            author,
            author_name: String::new(),
            post_id,
            text: format!("post {post_id}"),
            reply_to: None,
        }
    }

    fn like(liker: u64, author: u64, number: u64, on: bool) -> Command {
        Command::Like {
            liker,
            author,
            number,
            on,
        }
    }

    fn remote_like(liker: u64, origin_lsn: u64, on: bool) -> Command {
        Command::Remote(RemoteChange {
            origin_cluster: 1,
            origin_lsn,
            timestamp_ms: 1_000,
            change: Some(Change {
                kind: Some(change::Kind::Like(LikeSet {
                    post_author: 2,
                    post_number: 1,
                    liker,
                    liked: on,
                })),
            }),
            hlc: 0,
        })
    }

    #[test]
    fn an_authors_posts_are_numbered_in_order_and_a_resent_post_keeps_its_number() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = store::open(dir.path()).unwrap();
        run(&mut c, Command::CreateUser { user: 2 });
        run(&mut c, Command::CreateUser { user: 5 });
        for (author, post_id) in [(2, 70), (5, 3), (2, 11), (2, 70)] {
            run(&mut c, post(author, post_id));
        }
        let numbers = |author| {
            store::posts_of(&c, author, 0, 10, 0)
                .unwrap()
                .iter()
                .map(|p| (p.post_id, p.number))
                .collect::<Vec<_>>()
        };
        assert_eq!(numbers(2), [(11, 2), (70, 1)]);
        assert_eq!(numbers(5), [(3, 1)]);
        assert_eq!(store::highest_post_number(&c, 9).unwrap(), 0);
    }

    #[test]
    fn liking_is_idempotent_needs_the_post_and_the_last_like_from_home_wins() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = store::open(dir.path()).unwrap();
        run(&mut c, Command::CreateUser { user: 2 });
        assert!(matches!(
            run(&mut c, like(4, 2, 1, true)),
            Outcome::Rejected(Status::FailureNotExists, _)
        ));
        run(&mut c, post(2, 9));
        assert!(matches!(run(&mut c, like(4, 2, 1, true)), Outcome::Written(_)));
        assert_eq!(run(&mut c, like(4, 2, 1, true)), Outcome::Unchanged(None));
        assert!(matches!(run(&mut c, like(7, 2, 1, true)), Outcome::Written(_)));
        assert_eq!(store::like_count(&c, 2, 1).unwrap(), 2);
        assert!(matches!(run(&mut c, like(4, 2, 1, false)), Outcome::Written(_)));
        assert_eq!(run(&mut c, like(4, 2, 1, false)), Outcome::Unchanged(None));
        assert_eq!(store::like_count(&c, 2, 1).unwrap(), 1);
        let likers = store::likers_page(&c, 2, 1, 0, 10).unwrap();
        assert_eq!(likers.iter().map(|u| u.id).collect::<Vec<_>>(), [7]);
        // Another cluster's liker: its home's log order decides, whatever order arrives.
        assert!(matches!(run(&mut c, remote_like(10, 8, true)), Outcome::Written(_)));
        assert!(matches!(run(&mut c, remote_like(10, 12, false)), Outcome::Written(_)));
        assert_eq!(run(&mut c, remote_like(10, 8, true)), Outcome::Unchanged(None));
        assert_eq!(run(&mut c, remote_like(10, 12, false)), Outcome::Unchanged(None));
        assert_eq!(store::like_state(&c, 2, 1, 10).unwrap(), Some((false, 12)));
        // A like of a post this cluster does not hold (yet) is kept: counts converge.
        let early = Command::Remote(RemoteChange {
            origin_cluster: 1,
            origin_lsn: 20,
            timestamp_ms: 1_000,
            change: Some(Change {
                kind: Some(change::Kind::Like(LikeSet {
                    post_author: 2,
                    post_number: 5,
                    liker: 10,
                    liked: true,
                })),
            }),
            hlc: 0,
        });
        assert!(matches!(run(&mut c, early), Outcome::Written(_)));
        assert_eq!(store::like_count(&c, 2, 5).unwrap(), 1);
    }

    fn reply(author: u64, post_id: u64, to: (u64, u64)) -> Command {
        match post(author, post_id) {
            Command::Post {
                author,
                author_name,
                post_id,
                text,
                ..
            } => Command::Post {
                author,
                author_name,
                post_id,
                text,
                reply_to: Some(to),
            },
            _ => unreachable!(),
        }
    }

    /// The copy of `author`'s post `post_id` (number `number`) another cluster sends.
    fn remote_post(author: u64, post_id: u64, number: u64, origin_lsn: u64) -> Command {
        Command::Remote(RemoteChange {
            origin_cluster: 1,
            origin_lsn,
            timestamp_ms: 1_000,
            change: Some(Change {
                kind: Some(change::Kind::Post(PostCreated {
                    author,
                    post_id,
                    text: "late".into(),
                    number,
                    ..Default::default()
                })),
            }),
            hlc: 0,
        })
    }

    #[test]
    fn replies_need_their_post_and_page_in_the_order_they_were_made() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = store::open(dir.path()).unwrap();
        for user in [2, 5] {
            run(&mut c, Command::CreateUser { user });
        }
        assert!(matches!(
            run(&mut c, reply(5, 1, (2, 1))),
            Outcome::Rejected(Status::FailureNotExists, _)
        ));
        run(&mut c, post(2, 10));
        for post_id in 1..=5 {
            assert!(matches!(run(&mut c, reply(5, post_id, (2, 1))), Outcome::Written(_)));
        }
        let mut seen = Vec::new();
        let mut after = store::ReplyCursor::default();
        loop {
            let page = store::replies_to(&c, 2, 1, after, 2, 0).unwrap();
            let Some((_, last)) = page.last() else { break };
            after = store::ReplyCursor::parse(&last.token()).expect("a token reads back");
            seen.extend(page.iter().map(|(p, _)| p.number));
        }
        assert_eq!(seen, [1, 2, 3, 4, 5]);
        let root = store::with_counts(&c, store::post_by_number(&c, 2, 1).unwrap().unwrap(), 0).unwrap();
        assert_eq!(root.replies, 5);
        for bad in ["x", "1-2", "1-2-3-4", "-1-2-3", "99999999999999999999-1-1"] {
            assert_eq!(store::ReplyCursor::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_deleted_post_stays_deleted_whatever_arrives_later() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = store::open(dir.path()).unwrap();
        run(&mut c, Command::CreateUser { user: 2 });
        let delete = |number| Command::DeletePost { author: 2, number };
        assert!(matches!(
            run(&mut c, delete(1)),
            Outcome::Rejected(Status::FailureNotExists, _)
        ));
        run(&mut c, post(2, 10));
        run(&mut c, like(4, 2, 1, true));
        assert!(matches!(run(&mut c, delete(1)), Outcome::Written(_)));
        assert_eq!(run(&mut c, delete(1)), Outcome::Unchanged(None), "idempotent");
        assert_eq!(store::post_by_number(&c, 2, 1).unwrap(), None);
        assert_eq!(store::like_count(&c, 2, 1).unwrap(), 0);
        assert!(matches!(
            run(&mut c, like(7, 2, 1, true)),
            Outcome::Rejected(Status::FailureNotExists, _)
        ));
        // A redelivered copy of the post, and a late like from another cluster: ignored.
        assert_eq!(run(&mut c, remote_post(2, 10, 1, 40)), Outcome::Unchanged(None));
        assert_eq!(run(&mut c, remote_like(10, 41, true)), Outcome::Unchanged(None));
        assert_eq!(store::post_by_number(&c, 2, 1).unwrap(), None);
        // The next post takes the next number: a name is never reused.
        run(&mut c, post(2, 11));
        assert_eq!(store::post_number(&c, 2, 11).unwrap(), Some(2));
    }

    #[test]
    fn a_deletion_dropped_with_a_deposed_masters_suffix_brings_the_post_back_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = store::open(dir.path()).unwrap();
        run(&mut c, Command::CreateUser { user: 2 });
        run(&mut c, post(2, 10));
        run(&mut c, reply(2, 11, (2, 1)));
        run(&mut c, like(4, 2, 1, true));
        let before = store::state_digest(&c).unwrap();
        let kept = store::last_lsn(&c).unwrap();
        run(&mut c, Command::DeletePost { author: 2, number: 1 });
        assert_ne!(store::state_digest(&c).unwrap(), before);
        store::truncate_after(&mut c, kept).unwrap();
        assert_eq!(store::state_digest(&c).unwrap(), before);
        assert!(!store::is_tombstoned(&c, 2, 1).unwrap());
        assert_eq!(store::like_count(&c, 2, 1).unwrap(), 1);
    }

    fn set_profile(user: u64, name: Option<&str>, bio: Option<&str>) -> Command {
        Command::SetProfile {
            user,
            display_name: name.map(str::to_owned),
            bio: bio.map(str::to_owned),
        }
    }

    fn remote_profile(user: u64, origin_lsn: u64, name: &str) -> Command {
        Command::Remote(RemoteChange {
            origin_cluster: 1,
            origin_lsn,
            timestamp_ms: 1_000,
            change: Some(Change {
                kind: Some(change::Kind::Profile(ProfileSet {
                    user_id: user,
                    display_name: name.into(),
                    bio: String::new(),
                })),
            }),
            hlc: 0,
        })
    }

    #[test]
    fn a_profile_is_set_field_by_field_and_unchanged_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = store::open(dir.path()).unwrap();
        assert!(matches!(
            run(&mut c, set_profile(2, Some("Alice"), None)),
            Outcome::Rejected(Status::FailureNotExists, _)
        ));
        run(&mut c, register("alice"));
        assert!(matches!(
            run(&mut c, set_profile(2, Some("Alice"), None)),
            Outcome::Written(_)
        ));
        assert!(matches!(
            run(&mut c, set_profile(2, None, Some("hi"))),
            Outcome::Written(_)
        ));
        let (name, bio, _) = store::profile_fields(&c, 2).unwrap().expect("a profile");
        assert_eq!((name.as_str(), bio.as_str()), ("Alice", "hi"), "the name was kept");
        assert_eq!(
            run(&mut c, set_profile(2, Some("Alice"), Some("hi"))),
            Outcome::Unchanged(None)
        );
        assert!(matches!(
            run(&mut c, set_profile(2, Some(""), None)),
            Outcome::Written(_)
        ));
        assert_eq!(store::profile_fields(&c, 2).unwrap().map(|p| p.0), Some(String::new()));
    }

    #[test]
    fn a_remote_profile_applies_only_if_newer_than_what_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = store::open(dir.path()).unwrap();
        assert!(matches!(
            run(&mut c, remote_profile(4, 10, "newer")),
            Outcome::Written(_)
        ));
        // A redelivered or reordered older change is not applied over it.
        assert_eq!(run(&mut c, remote_profile(4, 7, "older")), Outcome::Unchanged(None));
        assert_eq!(run(&mut c, remote_profile(4, 10, "newer")), Outcome::Unchanged(None));
        assert_eq!(
            store::profile_fields(&c, 4).unwrap(),
            Some(("newer".to_owned(), String::new(), 10))
        );
        assert!(matches!(
            run(&mut c, remote_profile(4, 12, "newest")),
            Outcome::Written(_)
        ));
        assert_eq!(
            store::profile_fields(&c, 4).unwrap().map(|p| p.0),
            Some("newest".to_owned())
        );
    }

    #[test]
    fn sessions_end_by_logout_and_by_a_password_change_except_the_changers() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = store::open(dir.path()).unwrap();
        run(&mut c, register("alice"));
        for token in [1, 2, 3] {
            assert!(matches!(run(&mut c, session(2, token, 5_000)), Outcome::Written(_)));
        }
        assert!(matches!(
            run(&mut c, session(99, 4, 5_000)),
            Outcome::Rejected(Status::FailureNotExists, _)
        ));
        run(
            &mut c,
            Command::EndSession {
                token_hash: vec![1; 32],
            },
        );
        assert_eq!(store::session(&c, &[1; 32]).unwrap(), None);
        assert_eq!(
            run(
                &mut c,
                Command::EndSession {
                    token_hash: vec![1; 32]
                }
            ),
            Outcome::Unchanged(None)
        );
        let change = Command::SetPassword {
            user: 2,
            password_phc: "$new".into(),
            keep_session: vec![3; 32],
        };
        assert!(matches!(run(&mut c, change), Outcome::Written(_)));
        assert_eq!(store::session(&c, &[2; 32]).unwrap(), None, "other sessions end");
        assert_eq!(store::session(&c, &[3; 32]).unwrap(), Some((2, 5_000)));
        assert_eq!(store::password_hash(&c, 2).unwrap().as_deref(), Some("$new"));
    }

    #[test]
    fn expired_sessions_are_swept_when_the_user_logs_in_again() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = store::open(dir.path()).unwrap();
        run(&mut c, register("alice"));
        // Expired before the entries' timestamp (1 000).
        run(&mut c, session(2, 1, 500));
        run(&mut c, session(2, 2, 5_000));
        assert_eq!(store::session(&c, &[1; 32]).unwrap(), None);
        assert!(store::session(&c, &[2; 32]).unwrap().is_some());
    }

    /// A change cluster 3 made at its `lsn`.
    fn remote(lsn: u64, kind: change::Kind) -> Command {
        Command::Remote(RemoteChange {
            origin_cluster: 3,
            origin_lsn: lsn,
            timestamp_ms: 1_000,
            change: Some(Change { kind: Some(kind) }),
            hlc: 0,
        })
    }

    fn follow(follower: u64, followee: u64, following: bool) -> change::Kind {
        change::Kind::Follow(FollowChanged {
            follower,
            followee,
            following,
        })
    }

    #[test]
    fn a_redelivered_remote_change_is_stored_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = store::open(dir.path()).unwrap();
        let user = change::Kind::User(tinysns_common::proto::internal::UserCreated {
            user_id: 3,
            username: String::new(),
        });
        let post = change::Kind::Post(PostCreated {
            author: 3,
            post_id: 77,
            text: "hello".into(),
            author_name: String::new(),
            number: 0,
            ..Default::default()
        });
        for (lsn, kind) in [(1, user), (2, post)] {
            assert!(matches!(run(&mut c, remote(lsn, kind.clone())), Outcome::Written(_)));
            // The bus redelivers it (a consumer died before its ack): nothing changes.
            assert_eq!(run(&mut c, remote(lsn, kind)), Outcome::Unchanged(None));
        }
        assert_eq!(store::last_lsn(&c).unwrap(), 2, "two entries, not four");
        assert!(store::post_seq(&c, 3, 77).unwrap().is_some());
    }

    #[test]
    fn remote_follows_arriving_out_of_order_end_in_the_origins_last_state() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = store::open(dir.path()).unwrap();
        // Cluster 3 had 3 follow 1 (lsn 5), then unfollow (lsn 7); the unfollow arrives first
        // (a batch redelivered after a newer one).
        assert!(matches!(
            run(&mut c, remote(7, follow(3, 1, false))),
            Outcome::Written(_)
        ));
        assert_eq!(run(&mut c, remote(5, follow(3, 1, true))), Outcome::Unchanged(None));
        assert_eq!(store::follow_state(&c, 3, 1).unwrap().map(|(on, _)| on), Some(false));
        // A newer follow (lsn 9) still applies.
        assert!(matches!(
            run(&mut c, remote(9, follow(3, 1, true))),
            Outcome::Written(_)
        ));
        assert_eq!(store::follow_state(&c, 3, 1).unwrap(), Some((true, 9)));
    }

    #[test]
    fn a_refusal_is_an_answer_without_an_entry() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = store::open(dir.path()).unwrap();
        let refuse = Command::Refuse {
            status: Status::FailureNotExists,
            message: "no user is named x".into(),
        };
        assert_eq!(
            run(&mut c, refuse),
            Outcome::Rejected(Status::FailureNotExists, "no user is named x".into())
        );
        assert_eq!(store::last_lsn(&c).unwrap(), 0);
    }
}
