//! Direct messages: sending one (at the sender's home cluster), the inbox with unread
//! counts, reading a conversation (only the caller's own: the other party comes from the
//! request, the caller from the token), and blocking.

use crate::command::{Command, Outcome};
use crate::posts::Refusal;
use crate::social::{Caller, Social, answer};
use crate::store::{self, ConversationSummary, StoredMessage};
use tinysns_common::features::Feature;
use tinysns_common::limits::{page_size, validate_post_text};
use tinysns_common::proto::social::{
    BlockRequest, Conversation, ConversationReply, ConversationRequest, DirectMessageView, InboxReply, InboxRequest,
    Reply, SendMessageRequest, Status as Code, UserRef,
};
use tonic::Status;

impl Social {
    /// Submits `command` for a target user, or the refusal naming the target earned (through
    /// the writer, so that a deposed master cannot answer), gated on direct messages.
    async fn submit_for(
        &self,
        target: Result<u64, Refusal>,
        command: impl FnOnce(u64) -> Command,
    ) -> Result<Reply, Status> {
        let command = match target {
            Ok(user) => command(user),
            Err((status, message)) => Command::Refuse { status, message },
        };
        Ok(answer(self.submit(self.gated(Feature::DirectMessages, command)).await?))
    }

    pub(crate) async fn send_message(&self, caller: Caller, request: SendMessageRequest) -> Result<Reply, Status> {
        let target = match validate_post_text(&request.text) {
            Err(problem) => Err((Code::FailureInvalid, problem.to_string())),
            Ok(()) => self.resolve_target(&request.to).await?,
        };
        let message_id = match request.message_id {
            0 => rand::random::<u64>() >> 1,
            id => id,
        };
        let text = request.text;
        self.submit_for(target, |recipient| Command::SendMessage {
            sender: caller.user,
            sender_name: caller.username.clone(),
            recipient,
            message_id,
            text,
        })
        .await
    }

    pub(crate) async fn block_user(&self, caller: Caller, request: BlockRequest, on: bool) -> Result<Reply, Status> {
        let target = self.resolve_target(&request.user).await?;
        self.submit_for(target, |blocked| Command::Block {
            blocker: caller.user,
            blocked,
            on,
        })
        .await
    }

    pub(crate) async fn inbox_of(&self, caller: Caller, request: InboxRequest) -> Result<InboxReply, Status> {
        let (owner, before, limit) = (caller.user, request.before_stamp, page_size(request.limit));
        let (mut conversations, unread_total) = self
            .read(move |c| {
                Ok((
                    store::inbox(c, owner, before, limit + 1)?,
                    store::unread_total(c, owner)?,
                ))
            })
            .await?;
        let more = conversations.len() > limit;
        conversations.truncate(limit);
        Ok(InboxReply {
            status: Code::Success as i32,
            message: String::new(),
            next_before_stamp: if more {
                conversations.last().map_or(0, |c| c.last_hlc)
            } else {
                0
            },
            conversations: conversations.into_iter().map(conversation_view).collect(),
            unread_total,
        })
    }

    /// A page of the caller's conversation with one user; marks it read up to the newest
    /// message shown if asked.
    pub(crate) async fn read_conversation(
        &self,
        caller: Caller,
        request: ConversationRequest,
    ) -> Result<ConversationReply, Status> {
        let peer = match self.resolve_target(&request.with).await? {
            Ok(peer) => peer,
            Err((status, message)) => {
                return Ok(ConversationReply {
                    status: status as i32,
                    message,
                    ..Default::default()
                });
            }
        };
        let (me, before, limit) = (caller.user, request.before_stamp, page_size(request.limit));
        let mut messages = self
            .read(move |c| store::conversation(c, me, peer, before, limit + 1))
            .await?;
        let more = messages.len() > limit;
        messages.truncate(limit);
        if request.mark_read
            && let Some(newest) = messages.first()
        {
            let command = Command::ReadConversation {
                reader: me,
                peer,
                up_to_hlc: newest.hlc,
            };
            if let Outcome::Rejected(status, message) = self.submit(command).await? {
                return Ok(ConversationReply {
                    status: status as i32,
                    message,
                    ..Default::default()
                });
            }
        }
        let (names, unread) = self
            .read(move |c| {
                let name = |user| store::username_of(c, user).map(Option::unwrap_or_default);
                let unread = store::inbox_entry(c, me, peer)?.map_or(0, |entry| entry.unread);
                Ok(((name(me)?, name(peer)?), unread))
            })
            .await?;
        let user = |id: u64| UserRef {
            id,
            username: if id == me { names.0.clone() } else { names.1.clone() },
        };
        Ok(ConversationReply {
            status: Code::Success as i32,
            message: String::new(),
            next_before_stamp: if more { messages.last().map_or(0, |m| m.hlc) } else { 0 },
            messages: messages.into_iter().map(|m| message_view(m, &user)).collect(),
            unread,
        })
    }
}

fn conversation_view(c: ConversationSummary) -> Conversation {
    Conversation {
        peer: Some(UserRef {
            id: c.peer,
            username: c.peer_name,
        }),
        last_ms: c.last_ms,
        last_stamp: c.last_hlc,
        unread: c.unread,
    }
}

fn message_view(m: StoredMessage, user: &impl Fn(u64) -> UserRef) -> DirectMessageView {
    DirectMessageView {
        sender: Some(user(m.sender)),
        recipient: Some(user(m.recipient)),
        text: m.text,
        timestamp_ms: m.timestamp_ms,
        stamp: m.hlc,
        message_id: m.message_id,
        // (Not on a stream.)
        seq: 0,
    }
}
