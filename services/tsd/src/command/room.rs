//! What the room calls mean, as commands decided at the room's host (and a cluster's
//! readiness to delete one, decided where it is ready): who may create, join, leave, speak
//! in and delete a room, the numbers messages get, and the two phases of a deletion.

use super::{Decision, Outcome, change, reject};
use crate::store::{self, RoomState};
use rusqlite::Connection;
use std::collections::BTreeSet;
use tinysns_common::proto::internal::{
    RoomChange, RoomCreated, RoomDeleted, RoomDeletionPrepared, RoomDeletionReady, RoomMembership, RoomMessage,
    room_change,
};
use tinysns_common::proto::social::Status;

/// A room write. Every one but `Ready` is made at the room's host; `room` is canonical.
#[derive(Debug, Clone)]
pub enum RoomCommand {
    Create {
        room: String,
        user: u64,
        name: String,
    },
    Join {
        room: String,
        user: u64,
        name: String,
    },
    Leave {
        room: String,
        user: u64,
    },
    /// A message, stored once per (room, sender, message id).
    Say {
        room: String,
        user: u64,
        name: String,
        message_id: u64,
        text: String,
    },
    /// The creator deletes the room: phase 1, which the host (`host` of `clusters`) and
    /// every cluster with members must then agree to.
    Delete {
        room: String,
        user: u64,
        host: u32,
        clusters: u32,
    },
    /// This cluster is ready for the room's deletion (in phase 1 here).
    Ready {
        room: String,
        cluster: u32,
    },
    /// Phase 2, once every cluster the deletion named is ready (at the host).
    Complete {
        room: String,
    },
}

impl RoomCommand {
    /// The user it acts for (none for the phases of a deletion).
    pub fn actor(&self) -> Option<u64> {
        match self {
            RoomCommand::Create { user, .. }
            | RoomCommand::Join { user, .. }
            | RoomCommand::Leave { user, .. }
            | RoomCommand::Say { user, .. }
            | RoomCommand::Delete { user, .. } => Some(*user),
            RoomCommand::Ready { .. } | RoomCommand::Complete { .. } => None,
        }
    }
}

fn room_write(kind: room_change::Kind) -> Decision {
    Decision::Write {
        kind: change(super::change::Kind::Room(RoomChange { kind: Some(kind) })),
        origin: None,
    }
}

fn unchanged() -> Result<Decision, store::StoreError> {
    Ok(Decision::Done(Outcome::Unchanged(None)))
}

/// The room, open, or why a call cannot be made in it.
fn open_room(conn: &Connection, room: &str) -> Result<Result<store::Room, Decision>, store::StoreError> {
    Ok(match store::room(conn, room)? {
        None => Err(reject(Status::FailureNotExists, format!("there is no room {room}"))),
        Some(r) if r.state != RoomState::Open => Err(reject(Status::FailureInvalid, format!("room {room} is closed"))),
        Some(r) => Ok(r),
    })
}

fn is_member(conn: &Connection, room: &str, user: u64) -> Result<bool, store::StoreError> {
    Ok(store::room_member_state(conn, room, user)?.is_some_and(|(member, _)| member))
}

pub(super) fn decide(conn: &Connection, command: &RoomCommand) -> Result<Decision, store::StoreError> {
    match command {
        RoomCommand::Create { room, user, name } => {
            match store::room(conn, room)? {
                // The creator's retry (after a failover) of a creation that was made.
                Some(r) if r.state == RoomState::Open && r.creator == *user => return unchanged(),
                Some(r) if r.state == RoomState::Open => {
                    return Ok(reject(Status::FailureAlreadyExists, format!("room {room} exists")));
                }
                Some(_) => {
                    return Ok(reject(
                        Status::FailureAlreadyExists,
                        format!("room {room} was deleted; its name is not used again"),
                    ));
                }
                None => {}
            }
            if !store::user_exists(conn, *user)? {
                return Ok(reject(Status::FailureNotExists, format!("user {user} does not exist")));
            }
            Ok(room_write(room_change::Kind::Created(RoomCreated {
                room: room.clone(),
                creator: *user,
                creator_name: name.clone(),
            })))
        }
        RoomCommand::Join { room, user, name } => {
            if let Err(refusal) = open_room(conn, room)? {
                return Ok(refusal);
            }
            if is_member(conn, room, *user)? {
                return unchanged();
            }
            if !store::user_exists(conn, *user)? {
                return Ok(reject(Status::FailureNotExists, format!("user {user} does not exist")));
            }
            Ok(membership(room, *user, name, true))
        }
        RoomCommand::Leave { room, user } => {
            let r = match open_room(conn, room)? {
                Ok(r) => r,
                Err(refusal) => return Ok(refusal),
            };
            if !is_member(conn, room, *user)? {
                return unchanged();
            }
            if r.creator == *user {
                return Ok(reject(
                    Status::FailureInvalid,
                    format!("the creator cannot leave room {room}; delete it instead"),
                ));
            }
            Ok(membership(room, *user, "", false))
        }
        RoomCommand::Say {
            room,
            user,
            name,
            message_id,
            text,
        } => decide_say(conn, room, (*user, name), *message_id, text),
        RoomCommand::Delete {
            room,
            user,
            host,
            clusters,
        } => decide_delete(conn, room, *user, *host, *clusters),
        RoomCommand::Ready { room, cluster } => {
            let closing = store::room(conn, room)?.is_some_and(|r| r.state == RoomState::Closing);
            if !closing || store::room_deletion_ready(conn, room, *cluster)? {
                return unchanged();
            }
            Ok(room_write(room_change::Kind::DeletionReady(RoomDeletionReady {
                room: room.clone(),
                cluster: *cluster,
            })))
        }
        RoomCommand::Complete { room } => {
            let Some(r) = store::room(conn, room)?.filter(|r| r.state == RoomState::Closing) else {
                return unchanged();
            };
            for cluster in &r.clusters {
                if !store::room_deletion_ready(conn, room, *cluster)? {
                    return unchanged();
                }
            }
            Ok(room_write(room_change::Kind::Deleted(RoomDeleted {
                room: room.clone(),
            })))
        }
    }
}

fn membership(room: &str, user: u64, name: &str, member: bool) -> Decision {
    room_write(room_change::Kind::Membership(RoomMembership {
        room: room.to_owned(),
        user,
        user_name: name.to_owned(),
        member,
    }))
}

/// A member's message takes the room's next number, once per message id.
fn decide_say(
    conn: &Connection,
    room: &str,
    (user, name): (u64, &str),
    message_id: u64,
    text: &str,
) -> Result<Decision, store::StoreError> {
    if store::room_message_seq(conn, room, user, message_id)?.is_some() {
        return unchanged();
    }
    let r = match open_room(conn, room)? {
        Ok(r) => r,
        Err(refusal) => return Ok(refusal),
    };
    if !is_member(conn, room, user)? {
        return Ok(reject(Status::FailureNotAFollower, format!("join room {room} first")));
    }
    Ok(room_write(room_change::Kind::Message(RoomMessage {
        room: room.to_owned(),
        seq: r.last_seq + 1,
        sender: user,
        sender_name: name.to_owned(),
        message_id,
        text: text.to_owned(),
    })))
}

/// Only the creator deletes a room; the clusters with members and the host must agree.
fn decide_delete(
    conn: &Connection,
    room: &str,
    user: u64,
    host: u32,
    clusters: u32,
) -> Result<Decision, store::StoreError> {
    let Some(r) = store::room(conn, room)? else {
        return Ok(reject(Status::FailureNotExists, format!("there is no room {room}")));
    };
    if r.creator != user {
        return Ok(reject(
            Status::FailureInvalid,
            format!("only its creator can delete room {room}"),
        ));
    }
    if r.state != RoomState::Open {
        return unchanged();
    }
    let mut agree: BTreeSet<u32> = store::room_member_clusters(conn, room, clusters)?;
    agree.insert(host);
    Ok(room_write(room_change::Kind::DeletionPrepared(RoomDeletionPrepared {
        room: room.to_owned(),
        clusters: agree.into_iter().collect(),
    })))
}

/// Whether a room change from another cluster (the host, or for a readiness the cluster
/// that is ready) is new here.
pub(super) fn fresh_remote(
    conn: &Connection,
    kind: &room_change::Kind,
    origin_lsn: u64,
) -> Result<bool, store::StoreError> {
    let state =
        |room: &str| -> Result<Option<RoomState>, store::StoreError> { Ok(store::room(conn, room)?.map(|r| r.state)) };
    Ok(match kind {
        room_change::Kind::Created(c) => state(&c.room)?.is_none(),
        room_change::Kind::Membership(m) => {
            state(&m.room)? != Some(RoomState::Deleted)
                && store::room_member_state(conn, &m.room, m.user)?.is_none_or(|(_, version)| origin_lsn > version)
        }
        room_change::Kind::Message(m) => {
            state(&m.room)? != Some(RoomState::Deleted) && !store::room_seq_taken(conn, &m.room, m.seq)?
        }
        room_change::Kind::DeletionPrepared(p) => state(&p.room)?.is_none_or(|s| s == RoomState::Open),
        room_change::Kind::DeletionReady(r) => {
            state(&r.room)? != Some(RoomState::Deleted) && !store::room_deletion_ready(conn, &r.room, r.cluster)?
        }
        room_change::Kind::Deleted(d) => state(&d.room)? != Some(RoomState::Deleted),
    })
}

/// The user a room change from elsewhere is about (none for the phases of a deletion).
pub(super) fn involved(kind: &room_change::Kind) -> Vec<u64> {
    match kind {
        room_change::Kind::Created(c) => vec![c.creator],
        room_change::Kind::Membership(m) => vec![m.user],
        room_change::Kind::Message(m) => vec![m.sender],
        room_change::Kind::DeletionPrepared(_)
        | room_change::Kind::DeletionReady(_)
        | room_change::Kind::Deleted(_) => Vec::new(),
    }
}
