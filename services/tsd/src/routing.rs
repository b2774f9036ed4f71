//! Where this cluster's changes go. A post is kept only where someone needs it: its author's
//! cluster, the clusters of the author's followers, the homes of its topics (which number
//! it and answer their history) and, for a reply, the home of the post it answers (which
//! answers the thread). A topic's number carries the post's text only to clusters with
//! subscribers of the topic (they show it live); every other cluster gets the number
//! alone, to count the topic's posts. A direct message goes to its recipient's cluster; a
//! room's message to the clusters of its members, and a cluster's readiness to delete a room
//! to the room's host. Everything else is small and goes everywhere.
//!
//! A follow reaches the author's cluster a little after it was made, and the author may
//! have posted meanwhile: when a follow from another cluster arrives, the author's posts
//! since the follow that precede it in our log go to the follower's cluster too (applied
//! there idempotently); those after it are routed with the follow known.
//!
//! Destinations are decided when the change feed reads an entry, from the store as it is
//! then: a follow committed before the feed reads a post sends the post to the follower's
//! cluster; one committed after sends the post by the backfill.

use crate::clock;
use crate::store::{self, Connection};
use std::collections::BTreeSet;
use tinysns_common::proto::internal::{
    AccountChange, Change, LogEntry, RoomChange, TopicSequenced, UserCreated, account_change, change, log_entry,
    room_change,
};
use tinysns_common::topics::home_cluster;
use tinysns_common::topology::cluster_of_user;

/// At most this many of an author's posts go to a new follower's cluster (the newest).
pub const MAX_BACKFILL: usize = 1000;

/// The clusters a change goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destinations {
    /// Every other cluster.
    Everywhere,
    /// These clusters (never this one); none: the change stays here.
    Only(BTreeSet<u32>),
}

/// One change to publish, with the stamp and time it carries and where it goes.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub change: Change,
    pub hlc: u64,
    pub timestamp_ms: i64,
    pub destinations: Destinations,
}

/// What other clusters learn of one of our entries: social changes as they are (but what
/// a user has read stays home), a new account as a user with its name (never its password
/// hash), sessions nothing.
pub fn published_change(entry: &LogEntry) -> Option<Change> {
    match entry.kind.as_ref()? {
        log_entry::Kind::Change(Change {
            kind: Some(change::Kind::ConversationRead(_)),
        }) => None,
        log_entry::Kind::Change(change) => Some(change.clone()),
        log_entry::Kind::Account(AccountChange {
            kind: Some(account_change::Kind::Registered(r)),
        }) => Some(Change {
            kind: Some(change::Kind::User(UserCreated {
                user_id: r.user_id,
                username: r.username.clone(),
            })),
        }),
        log_entry::Kind::Account(_) | log_entry::Kind::SyncCursor(_) => None,
    }
}

/// How changes are routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routing {
    /// Every change to every cluster (while some member cannot route: an upgrade).
    Everywhere,
    /// Each change where it is needed.
    Selective,
}

/// What to publish for `entry` (any entry of the log) in cluster `here` of `clusters`:
/// our own changes to where they are needed, and for a follow from elsewhere the posts its
/// follower's cluster may have missed.
pub fn routes(
    conn: &Connection,
    entry: &LogEntry,
    here: u32,
    clusters: u32,
    routing: Routing,
) -> store::Result<Vec<Route>> {
    if entry.origin_cluster != here {
        return match routing {
            Routing::Selective => backfill(conn, entry, here, clusters),
            Routing::Everywhere => Ok(Vec::new()),
        };
    }
    let Some(change) = published_change(entry) else {
        return Ok(Vec::new());
    };
    let (hlc, timestamp_ms) = (clock::stamp(entry), entry.timestamp_ms);
    let route = |change: Change, destinations| Route {
        change,
        hlc,
        timestamp_ms,
        destinations,
    };
    if routing == Routing::Everywhere {
        return Ok(vec![route(change, Destinations::Everywhere)]);
    }
    let home = |user| cluster_of_user(user, clusters).unwrap_or(here);
    let only = |mut set: BTreeSet<u32>| {
        set.remove(&here);
        Destinations::Only(set)
    };
    let routes = match &change.kind {
        Some(change::Kind::Post(p)) => {
            let mut set = store::follower_clusters(conn, p.author, clusters)?;
            set.extend(p.topics.iter().map(|t| home_cluster(t, clusters)));
            if p.reply_to_number > 0 {
                set.insert(home(p.reply_to_author));
            }
            vec![route(change, only(set))]
        }
        Some(change::Kind::TopicSequenced(t)) => {
            let full = only(store::subscriber_clusters(conn, &t.topic, clusters)?);
            let numbering_only = only((1..=clusters).filter(|c| !destined(&full, *c)).collect());
            vec![
                route(as_change(change::Kind::TopicSequenced(without_text(t))), numbering_only),
                route(change, full),
            ]
        }
        Some(change::Kind::DirectMessage(m)) => {
            let set = BTreeSet::from([home(m.recipient)]);
            vec![route(change, only(set))]
        }
        // A room's messages go where its members are; a cluster's readiness to delete it to
        // its host. Rooms, memberships and the other phases are small and go everywhere.
        Some(change::Kind::Room(RoomChange {
            kind: Some(room_change::Kind::Message(m)),
        })) => {
            let set = store::room_member_clusters(conn, &m.room, clusters)?;
            vec![route(change, only(set))]
        }
        Some(change::Kind::Room(RoomChange {
            kind: Some(room_change::Kind::DeletionReady(r)),
        })) => {
            let set = BTreeSet::from([tinysns_common::rooms::host_cluster(&r.room, clusters)]);
            vec![route(change, only(set))]
        }
        _ => vec![route(change, Destinations::Everywhere)],
    };
    Ok(routes
        .into_iter()
        .filter(|r| r.destinations != Destinations::Only(BTreeSet::new()))
        .collect())
}

/// Whether `destinations` include `cluster`.
pub fn destined(destinations: &Destinations, cluster: u32) -> bool {
    match destinations {
        Destinations::Everywhere => true,
        Destinations::Only(set) => set.contains(&cluster),
    }
}

fn as_change(kind: change::Kind) -> Change {
    Change { kind: Some(kind) }
}

/// A topic's number for a cluster that does not keep the post.
fn without_text(t: &TopicSequenced) -> TopicSequenced {
    let mut t = t.clone();
    if let Some(post) = t.post.as_mut() {
        post.text.clear();
        post.topics.clear();
    }
    t.numbering_only = true;
    t
}

/// A follow from another cluster of one of our users: the followee's posts since the follow
/// go to the follower's cluster.
fn backfill(conn: &Connection, entry: &LogEntry, here: u32, clusters: u32) -> store::Result<Vec<Route>> {
    let Some(log_entry::Kind::Change(Change {
        kind: Some(change::Kind::Follow(f)),
    })) = entry.kind.as_ref()
    else {
        return Ok(Vec::new());
    };
    let (Ok(author_home), Ok(follower_home)) = (
        cluster_of_user(f.followee, clusters),
        cluster_of_user(f.follower, clusters),
    ) else {
        return Ok(Vec::new());
    };
    if !f.following || author_home != here || follower_home == here {
        return Ok(Vec::new());
    }
    // Only posts before the follow in our log: later ones are routed with the follow known.
    // (Were a later one sent here too, its copy here, without its topics, could reach the
    // follower's cluster before the one routed in log order, and win.)
    let posts = store::posts_since(conn, f.followee, clock::stamp(entry), entry.lsn, MAX_BACKFILL)?;
    Ok(posts
        .into_iter()
        .map(|(post, hlc)| Route {
            change: as_change(change::Kind::Post(post)),
            hlc,
            timestamp_ms: (hlc / 1000).min(i64::MAX as u64) as i64,
            destinations: Destinations::Only(BTreeSet::from([follower_home])),
        })
        .collect())
}

#[cfg(test)]
#[path = "routing_tests.rs"]
mod tests;
