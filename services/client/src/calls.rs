//! Every call of the client API, as methods of a [`Link`]: each follows failovers (see
//! [`Link::call`]) and returns the server's reply, or its status and detail.

use crate::session::{Link, Listing};
use std::time::{Duration, Instant};
use tinysns_common::proto::social::{
    BlockRequest, ChangePasswordRequest, ConversationReply, ConversationRequest, DeleteAccountRequest, Empty,
    FollowRequest, HistoryReply, HistoryRequest, InboxReply, InboxRequest, LikesReply, LikesRequest, ListRequest,
    PostRef, PostsReply, PostsRequest, ProfileReply, ProfileRequest, PublishReply, PublishRequest, ReadRoomRequest,
    Reply, RoomReply, RoomRequest, RoomsReply, RoomsRequest, SayRequest, SendMessageRequest, SetProfileRequest,
    Status as Code, ThreadReply, ThreadRequest, TopicRequest, TopicsReply, TopicsRequest,
};

/// A room call answered with a plain reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomAction {
    Create,
    Join,
    Leave,
    Delete,
}

impl Link {
    /// Makes, joins, leaves or deletes a room (each idempotent when retried).
    pub async fn room_action(&self, room: &str, action: RoomAction) -> Result<(Code, String), tonic::Status> {
        let request = RoomRequest { room: room.to_string() };
        let reply = self
            .call(|mut c| {
                let request = request.clone();
                async move {
                    match action {
                        RoomAction::Create => c.create_room(request).await,
                        RoomAction::Join => c.join_room(request).await,
                        RoomAction::Leave => c.leave_room(request).await,
                        RoomAction::Delete => c.delete_room(request).await,
                    }
                }
            })
            .await?;
        Ok(outcome(reply))
    }

    /// Says `text` in `room` under `message_id` (from 1, unique per sender): a retry, here
    /// after a failover or by the caller, is stored once.
    pub async fn say(&self, room: &str, message_id: u64, text: &str) -> Result<RoomReply, tonic::Status> {
        let request = SayRequest {
            room: room.to_string(),
            message_id,
            text: text.to_string(),
        };
        self.call(|mut c| {
            let request = request.clone();
            async move { c.say(request).await }
        })
        .await
    }

    pub async fn read_room(&self, request: ReadRoomRequest) -> Result<RoomReply, tonic::Status> {
        self.call(|mut c| {
            let request = request.clone();
            async move { c.read_room(request).await }
        })
        .await
    }

    pub async fn rooms(&self, request: RoomsRequest) -> Result<RoomsReply, tonic::Status> {
        self.call(|mut c| {
            let request = request.clone();
            async move { c.rooms(request).await }
        })
        .await
    }

    /// Logs the session out: its token stops working on every server. One attempt (with a
    /// short wait for a master): a session left behind expires on its own.
    pub async fn end_session(&self) -> Result<(Code, String), tonic::Status> {
        let mut client = self.client(Instant::now() + Duration::from_secs(2)).await?;
        Ok(outcome(client.logout(Empty {}).await?.into_inner()))
    }

    /// FOLLOW (`follow` true) or UNFOLLOW `target`, following failovers.
    pub async fn relation(&self, target: &str, follow: bool) -> Result<Code, tonic::Status> {
        let request = FollowRequest {
            target: target.to_string(),
        };
        let reply = self
            .call(|mut c| {
                let request = request.clone();
                async move {
                    if follow {
                        c.follow(request).await
                    } else {
                        c.un_follow(request).await
                    }
                }
            })
            .await?;
        Ok(Code::try_from(reply.status).unwrap_or(Code::FailureUnknown))
    }

    /// LIST, every page, following failovers; Ok(Err(status)) for a refused LIST.
    pub async fn list(&self) -> Result<Result<Listing, Code>, tonic::Status> {
        let mut listing = Listing::default();
        // Where each list continues; None once it is complete.
        let (mut users_after, mut followers_after) = (Some(0u64), Some(0u64));
        while users_after.is_some() || followers_after.is_some() {
            let request = ListRequest {
                page_size: 0,
                users_after: users_after.unwrap_or(u64::MAX),
                followers_after: followers_after.unwrap_or(u64::MAX),
            };
            let reply = self.call(|mut c| async move { c.list(request).await }).await?;
            let status = Code::try_from(reply.status).unwrap_or(Code::FailureUnknown);
            if status != Code::Success {
                return Ok(Err(status));
            }
            if users_after.is_some() {
                listing.all_users.extend(reply.all_users);
                users_after = Some(reply.next_users_after).filter(|n| *n != 0);
            }
            if followers_after.is_some() {
                listing.followers.extend(reply.followers);
                followers_after = Some(reply.next_followers_after).filter(|n| *n != 0);
            }
        }
        Ok(Ok(listing))
    }

    /// The profile of `target` (the caller's when None), following failovers.
    pub async fn profile(&self, target: Option<&str>) -> Result<ProfileReply, tonic::Status> {
        let request = ProfileRequest {
            user: target.unwrap_or_default().to_string(),
        };
        self.call(|mut c| {
            let request = request.clone();
            async move { c.get_profile(request).await }
        })
        .await
    }

    /// Sets the caller's display name and/or bio (None keeps a field), following failovers.
    pub async fn set_profile(&self, request: SetProfileRequest) -> Result<(Code, String), tonic::Status> {
        let reply = self
            .call(|mut c| {
                let request = request.clone();
                async move { c.set_profile(request).await }
            })
            .await?;
        Ok(outcome(reply))
    }

    /// A page of `user`'s posts (the caller's when empty) with numbers and likes, newest
    /// first, numbered below `before_number` (0: the newest).
    pub async fn posts(&self, request: PostsRequest) -> Result<PostsReply, tonic::Status> {
        self.call(|mut c| {
            let request = request.clone();
            async move { c.posts(request).await }
        })
        .await
    }

    /// Likes (`on`) or stops liking the post named `post` (`alice/17`).
    pub async fn like(&self, post: &str, on: bool) -> Result<(Code, String), tonic::Status> {
        let request = PostRef { post: post.to_string() };
        let reply = self
            .call(|mut c| {
                let request = request.clone();
                async move {
                    if on {
                        c.like(request).await
                    } else {
                        c.unlike(request).await
                    }
                }
            })
            .await?;
        Ok(outcome(reply))
    }

    /// Posts outside a timeline (a reply when `reply_to` names a post); a retry after a
    /// failover re-sends the same post id, so the post is stored once.
    pub async fn publish(&self, text: &str, reply_to: &str, topics: &[String]) -> Result<PublishReply, tonic::Status> {
        self.publish_post(PublishRequest {
            post_id: rand::random::<u64>() >> 1,
            text: text.to_string(),
            reply_to: reply_to.to_string(),
            topics: topics.to_vec(),
        })
        .await
    }

    /// [`Self::publish`] with the post id chosen by the caller (a client that retries on
    /// its own keeps the id, so the post is stored once).
    pub async fn publish_post(&self, request: PublishRequest) -> Result<PublishReply, tonic::Status> {
        self.call(|mut c| {
            let request = request.clone();
            async move { c.publish(request).await }
        })
        .await
    }

    /// Starts deleting the account, confirmed by its name (its id in open mode).
    pub async fn delete_account(&self, confirm: &str) -> Result<(Code, String), tonic::Status> {
        let request = DeleteAccountRequest {
            confirm: confirm.to_string(),
        };
        let reply = self
            .call(|mut c| {
                let request = request.clone();
                async move { c.delete_account(request).await }
            })
            .await?;
        Ok(outcome(reply))
    }

    /// Subscribes to `topic` (`on`) or stops.
    pub async fn subscribe(&self, topic: &str, on: bool) -> Result<(Code, String), tonic::Status> {
        let request = TopicRequest {
            topic: topic.to_string(),
        };
        let reply = self
            .call(|mut c| {
                let request = request.clone();
                async move {
                    if on {
                        c.subscribe(request).await
                    } else {
                        c.unsubscribe(request).await
                    }
                }
            })
            .await?;
        Ok(outcome(reply))
    }

    pub async fn history(&self, request: HistoryRequest) -> Result<HistoryReply, tonic::Status> {
        self.call(|mut c| {
            let request = request.clone();
            async move { c.history(request).await }
        })
        .await
    }

    pub async fn topics(&self, request: TopicsRequest) -> Result<TopicsReply, tonic::Status> {
        self.call(|mut c| {
            let request = request.clone();
            async move { c.topics(request).await }
        })
        .await
    }

    /// `post` and the page of its replies from `page_token` (empty: the first page).
    pub async fn thread(&self, post: &str, page_token: &str) -> Result<ThreadReply, tonic::Status> {
        let request = ThreadRequest {
            post: post.to_string(),
            page_token: page_token.to_string(),
            limit: 0,
        };
        self.call(|mut c| {
            let request = request.clone();
            async move { c.thread(request).await }
        })
        .await
    }

    /// Deletes one of the caller's posts, in every cluster.
    pub async fn delete_post(&self, post: &str) -> Result<(Code, String), tonic::Status> {
        let request = PostRef { post: post.to_string() };
        let reply = self
            .call(|mut c| {
                let request = request.clone();
                async move { c.delete_post(request).await }
            })
            .await?;
        Ok(outcome(reply))
    }

    /// A direct message to `to`; a retry re-sends the same message id, so it is stored once.
    pub async fn send_message(&self, to: &str, text: &str) -> Result<(Code, String), tonic::Status> {
        let request = SendMessageRequest {
            to: to.to_string(),
            message_id: rand::random::<u64>() >> 1,
            text: text.to_string(),
        };
        let reply = self
            .call(|mut c| {
                let request = request.clone();
                async move { c.send_message(request).await }
            })
            .await?;
        Ok(outcome(reply))
    }

    /// The newest conversations with their unread counts.
    pub async fn inbox(&self) -> Result<InboxReply, tonic::Status> {
        self.call(|mut c| async move { c.inbox(InboxRequest::default()).await })
            .await
    }

    /// The newest messages with `with` (newest first), marking them read if `mark_read`.
    pub async fn conversation(&self, with: &str, mark_read: bool) -> Result<ConversationReply, tonic::Status> {
        let request = ConversationRequest {
            with: with.to_string(),
            before_stamp: 0,
            limit: 0,
            mark_read,
        };
        self.call(|mut c| {
            let request = request.clone();
            async move { c.read_conversation(request).await }
        })
        .await
    }

    /// Blocks (`on`) or stops blocking `user`.
    pub async fn block(&self, user: &str, on: bool) -> Result<(Code, String), tonic::Status> {
        let request = BlockRequest { user: user.to_string() };
        let reply = self
            .call(|mut c| {
                let request = request.clone();
                async move {
                    if on {
                        c.block(request).await
                    } else {
                        c.unblock(request).await
                    }
                }
            })
            .await?;
        Ok(outcome(reply))
    }

    /// Who likes `post` (the first page of up to 1000 likers), and how many do.
    pub async fn likes(&self, post: &str) -> Result<LikesReply, tonic::Status> {
        let request = LikesRequest {
            post: post.to_string(),
            page_size: 0,
            users_after: 0,
        };
        self.call(|mut c| {
            let request = request.clone();
            async move { c.likes(request).await }
        })
        .await
    }

    /// Changes the password (password mode); other sessions of the user end.
    pub async fn change_password(&self, current: &str, new: &str) -> Result<(Code, String), tonic::Status> {
        let request = ChangePasswordRequest {
            current_password: current.to_string(),
            new_password: new.to_string(),
        };
        let reply = self
            .call(|mut c| {
                let request = request.clone();
                async move { c.change_password(request).await }
            })
            .await?;
        Ok(outcome(reply))
    }
}

/// A reply's status and the server's detail.
fn outcome(reply: Reply) -> (Code, String) {
    (
        Code::try_from(reply.status).unwrap_or(Code::FailureUnknown),
        reply.message,
    )
}
