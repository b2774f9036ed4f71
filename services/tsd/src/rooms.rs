//! Rooms as clients use them. Every room call goes to the room's host cluster
//! (`tinysns_common::rooms::host_cluster`), here or over the internal `Peer` API, where
//! [`Social::room_here`] answers it: the host decides membership, numbers messages and keeps
//! presence (`room_presence`). The list of rooms is read where the caller is (rooms and
//! memberships reach every cluster). `RoomDeletions` drives the two phases of deleting a room.

use crate::chores::Chore;
use crate::command::{Command, Outcome, RoomCommand};
use crate::reader::Reader;
use crate::social::{Caller, Social};
use crate::store::{self, RoomState as StoredState};
use crate::writer::Writer;
use std::time::Instant;
use tinysns_common::features::Feature;
use tinysns_common::limits::{page_size, validate_post_text};
use tinysns_common::membership::RoleView;
use tinysns_common::proto::internal::peer_room_request::Call;
use tinysns_common::proto::social::{
    RoomInfo, RoomMember, RoomMessageView, RoomReply, RoomState, RoomsReply, RoomsRequest, Status as Code, UserRef,
};
use tinysns_common::rooms::{host_cluster, parse_room};
use tonic::Status;

/// The room a call names, as the caller wrote it.
fn room_text(call: &Call) -> &str {
    match call {
        Call::Create(r) | Call::Join(r) | Call::Leave(r) | Call::Delete(r) => &r.room,
        Call::Say(s) => &s.room,
        Call::Read(r) => &r.room,
    }
}

fn refused(status: Code, message: impl Into<String>) -> RoomReply {
    RoomReply {
        status: status as i32,
        message: message.into(),
        ..Default::default()
    }
}

fn user_ref(id: u64, username: &str) -> UserRef {
    UserRef {
        id,
        username: username.to_owned(),
    }
}

fn info(room: &store::Room) -> RoomInfo {
    RoomInfo {
        name: room.name.clone(),
        creator: Some(user_ref(room.creator, &room.creator_name)),
        state: match room.state {
            StoredState::Open => RoomState::RoomOpen,
            StoredState::Closing => RoomState::RoomClosing,
            StoredState::Deleted => RoomState::RoomClosed,
        } as i32,
        last_seq: room.last_seq,
        members: room.members,
    }
}

impl Social {
    /// The caller's room call, answered by the room's host.
    pub(crate) async fn room_call(&self, caller: &Caller, call: Call) -> Result<RoomReply, Status> {
        let level = self.role.current().assignment.system_feature_level;
        if !Feature::Rooms.enabled_at(level) {
            return Ok(refused(Code::FailureUpgrading, Feature::Rooms.upgrading_message(level)));
        }
        let room = match parse_room(room_text(&call)) {
            Ok(room) => room,
            Err(e) => return Ok(refused(Code::FailureInvalid, e.to_string())),
        };
        let host = host_cluster(&room, self.clusters());
        if host != self.cluster {
            return self.peers.room(host, caller.user, &caller.username, call).await;
        }
        self.room_here(caller.user, &caller.username, call).await
    }

    /// A room call of `user` (of any cluster, named `name`) at this cluster, the room's host.
    pub(crate) async fn room_here(&self, user: u64, name: &str, call: Call) -> Result<RoomReply, Status> {
        let room = match parse_room(room_text(&call)) {
            Ok(room) if host_cluster(&room, self.clusters()) == self.cluster => room,
            Ok(room) => return Err(Status::invalid_argument(format!("room {room} is not hosted here"))),
            Err(e) => return Ok(refused(Code::FailureInvalid, e.to_string())),
        };
        let name = name.to_owned();
        let command = match call {
            Call::Read(request) => {
                self.fenced()?;
                return self
                    .read_room(user, room, request.before_seq, request.limit, request.present)
                    .await;
            }
            Call::Create(_) => RoomCommand::Create { room, user, name },
            Call::Join(_) => RoomCommand::Join { room, user, name },
            Call::Leave(_) => RoomCommand::Leave { room, user },
            Call::Delete(_) => RoomCommand::Delete {
                room,
                user,
                host: self.cluster,
                clusters: self.clusters(),
            },
            Call::Say(say) => {
                if let Err(e) = validate_post_text(&say.text) {
                    return Ok(refused(Code::FailureInvalid, e.to_string()));
                }
                if say.message_id == 0 {
                    return Ok(refused(Code::FailureInvalid, "a message needs an id (1 or more)"));
                }
                RoomCommand::Say {
                    room,
                    user,
                    name,
                    message_id: say.message_id,
                    text: say.text,
                }
            }
        };
        self.room_write(command).await
    }

    /// Writes a room command at the host, and keeps presence in step with it.
    async fn room_write(&self, command: RoomCommand) -> Result<RoomReply, Status> {
        let outcome = self.submit(Command::Room(command.clone())).await?;
        if let Outcome::Rejected(status, message) = outcome {
            return Ok(refused(status, message));
        }
        let mut reply = refused(Code::Success, "");
        let now = Instant::now();
        match command {
            RoomCommand::Create { room, user, .. } | RoomCommand::Join { room, user, .. } => {
                self.room_presence.touch(&room, user, now);
            }
            RoomCommand::Leave { room, user } => self.room_presence.forget(&room, user),
            RoomCommand::Say {
                room, user, message_id, ..
            } => {
                self.room_presence.touch(&room, user, now);
                let seq = self
                    .read(move |c| store::room_message_seq(c, &room, user, message_id))
                    .await?;
                reply.seq = seq.unwrap_or_default();
            }
            RoomCommand::Delete { .. } => {
                reply.message = "the room closes once every cluster with members agrees".into()
            }
            RoomCommand::Ready { .. } | RoomCommand::Complete { .. } => {}
        }
        Ok(reply)
    }

    /// The room, and for a member its members with their presence and a page of messages.
    async fn read_room(
        &self,
        user: u64,
        room: String,
        before_seq: u64,
        limit: u32,
        present: bool,
    ) -> Result<RoomReply, Status> {
        let limit = page_size(limit);
        let name = room.clone();
        let (found, member, members, mut messages) = self
            .read(move |c| {
                let found = store::room(c, &name)?;
                let member = store::room_member_state(c, &name, user)?.is_some_and(|(m, _)| m);
                if !member {
                    return Ok((found, false, Vec::new(), Vec::new()));
                }
                let members = store::room_members(c, &name)?;
                let messages = store::room_messages(c, &name, before_seq, limit + 1)?;
                Ok((found, true, members, messages))
            })
            .await?;
        let Some(found) = found else {
            return Ok(refused(Code::FailureNotExists, format!("there is no room {room}")));
        };
        let now = Instant::now();
        if member && present && found.state == StoredState::Open {
            self.room_presence.touch(&room, user, now);
        }
        let here = self.room_presence.present(&room, now);
        let mut members: Vec<RoomMember> = members
            .into_iter()
            .map(|(id, username)| RoomMember {
                user: Some(user_ref(id, &username)),
                present: here.contains(&id),
            })
            .collect();
        members.sort_by_key(|m| !m.present);
        let next_before_seq = if messages.len() > limit {
            messages.pop();
            messages.last().map_or(0, |m| m.seq)
        } else {
            0
        };
        Ok(RoomReply {
            status: Code::Success as i32,
            message: String::new(),
            room: Some(info(&found)),
            member,
            members,
            messages: messages
                .into_iter()
                .map(|m| RoomMessageView {
                    room: room.clone(),
                    seq: m.seq,
                    sender: Some(user_ref(m.sender, &m.sender_name)),
                    text: m.text,
                    timestamp_ms: m.ts_ms,
                    message_id: m.message_id,
                    cursor: 0,
                })
                .collect(),
            next_before_seq,
            seq: 0,
        })
    }

    /// The caller's rooms and a page of the open ones, from this cluster's store.
    pub(crate) async fn rooms(&self, caller: &Caller, request: RoomsRequest) -> Result<RoomsReply, Status> {
        self.fenced()?;
        let (limit, user) = (page_size(request.limit), caller.user);
        let after = request.after.trim().to_ascii_lowercase();
        let (mine, mut open) = self
            .read(move |c| Ok((store::rooms_of(c, user)?, store::open_rooms(c, &after, limit + 1)?)))
            .await?;
        let next_after = if open.len() > limit {
            open.pop();
            open.last().map(|r| r.name.clone()).unwrap_or_default()
        } else {
            String::new()
        };
        Ok(RoomsReply {
            status: Code::Success as i32,
            message: String::new(),
            mine: mine.iter().map(info).collect(),
            open: open.iter().map(info).collect(),
            next_after,
        })
    }
}

/// Drives the deletions of rooms in phase 1 here: this cluster says it is ready if the
/// deletion names it, and the host completes a deletion once every cluster named is ready.
/// The phases are in the replicated store, so a master killed between them is replaced by
/// one that carries on.
pub struct RoomDeletions {
    pub cluster: u32,
    pub writer: Writer,
    pub reader: Reader,
}

impl Chore for RoomDeletions {
    const NAME: &'static str = "room deletions";
    const FEATURE: Feature = Feature::Rooms;

    fn new_reign(&mut self) {}

    async fn round(&mut self, view: &RoleView) -> Result<(), store::StoreError> {
        let clusters = view.assignment.clusters.max(1);
        for (room, ready) in self.reader.with(store::closing_rooms).await? {
            let command = if room.clusters.contains(&self.cluster) && !ready.contains(&self.cluster) {
                RoomCommand::Ready {
                    room: room.name,
                    cluster: self.cluster,
                }
            } else if host_cluster(&room.name, clusters) == self.cluster
                && room.clusters.iter().all(|c| ready.contains(c))
            {
                RoomCommand::Complete { room: room.name }
            } else {
                continue;
            };
            crate::chores::write_step(&self.writer, Command::Room(command), "room deletion").await;
        }
        Ok(())
    }
}
