//! A programmatic user, for tests and the benchmark: the same session code as `tsc`
//! (coordinator lookup, login, failover), with results returned instead of printed.

use std::collections::VecDeque;
use std::time::{Duration, Instant};
use tinysns_client::live::{LiveTimeline, Patience};
use tinysns_client::resume::Event;
use tinysns_client::session::{ConnectError, Connection, Credentials, Link, Listing, Session};
use tinysns_common::proto::social::{
    ConversationReply, DirectMessageView, HistoryReply, HistoryRequest, InboxReply, LikesReply, Post, PostAck,
    PostsReply, PostsRequest, ProfileReply, PublishReply, SetProfileRequest, Status as Code, ThreadReply, TopicPost,
    TopicsReply, TopicsRequest,
};

pub struct User {
    session: Session,
}

impl User {
    /// Logs in (or registers), retrying while the user's cluster has no reachable master
    /// (during a failover or start-up) for up to `patience`. A refused login fails at once.
    pub async fn connect(
        connection: impl Into<Connection>,
        credentials: Credentials,
        patience: Duration,
    ) -> Result<Self, ConnectError> {
        Ok(Self {
            session: Session::connect(connection, credentials, patience).await?,
        })
    }

    /// Open mode: logs in as `user` with no patience (fails at once if no server can take it).
    pub async fn login(coordinator: &str, user: u64) -> Result<Self, ConnectError> {
        Self::connect(coordinator, Credentials::Open(user), Duration::ZERO).await
    }

    pub fn id(&self) -> u64 {
        self.session.user
    }

    /// The session token, for raw calls as this user.
    pub fn token(&self) -> &str {
        self.session.token()
    }

    /// Empty in open mode.
    pub fn username(&self) -> &str {
        &self.session.username
    }

    /// PASSWORD: (status, server's detail).
    pub async fn change_password(&mut self, current: &str, new: &str) -> Result<(Code, String), tonic::Status> {
        self.session.change_password(current, new).await
    }

    pub async fn follow(&mut self, target: &str) -> Result<Code, tonic::Status> {
        self.session.relation(target, true).await
    }

    pub async fn unfollow(&mut self, target: &str) -> Result<Code, tonic::Status> {
        self.session.relation(target, false).await
    }

    /// PROFILE: `target`'s profile (the user's own when None).
    pub async fn profile(&mut self, target: Option<&str>) -> Result<ProfileReply, tonic::Status> {
        self.session.profile(target).await
    }

    /// Sets the display name and/or bio (None keeps a field): (status, server's detail).
    pub async fn set_profile(
        &mut self,
        display_name: Option<&str>,
        bio: Option<&str>,
    ) -> Result<(Code, String), tonic::Status> {
        self.session
            .set_profile(SetProfileRequest {
                display_name: display_name.map(str::to_owned),
                bio: bio.map(str::to_owned),
            })
            .await
    }

    /// `user`'s newest posts (the user's own when None) with numbers and likes.
    pub async fn posts(&mut self, user: Option<&str>) -> Result<PostsReply, tonic::Status> {
        self.session
            .posts(PostsRequest {
                user: user.unwrap_or_default().to_owned(),
                before_number: 0,
                limit: 0,
            })
            .await
    }

    /// Likes (`on`) or stops liking `post` (`alice/3`): (status, server's detail).
    pub async fn like(&mut self, post: &str, on: bool) -> Result<(Code, String), tonic::Status> {
        self.session.like(post, on).await
    }

    /// Posts `text` as a reply to `post` (`alice/3`) without a timeline stream.
    pub async fn reply(&mut self, post: &str, text: &str) -> Result<PublishReply, tonic::Status> {
        self.session.publish(text, post, &[]).await
    }

    /// Posts `text` without a timeline stream, in `topics` besides its #tags.
    pub async fn publish(&mut self, text: &str, topics: &[String]) -> Result<PublishReply, tonic::Status> {
        self.session.publish(text, "", topics).await
    }

    /// Starts deleting the account, confirmed by `confirm` (its name): (status, detail).
    pub async fn delete_account(&mut self, confirm: &str) -> Result<(Code, String), tonic::Status> {
        self.session.delete_account(confirm).await
    }

    /// Subscribes to `topic` (`on`) or stops: (status, server's detail).
    pub async fn subscribe(&mut self, topic: &str, on: bool) -> Result<(Code, String), tonic::Status> {
        self.session.subscribe(topic, on).await
    }

    /// A page of `topic`'s history from `from` (0: the newest backwards, the first forwards).
    pub async fn history(
        &mut self,
        topic: &str,
        from: u64,
        forward: bool,
        limit: u32,
    ) -> Result<HistoryReply, tonic::Status> {
        let request = HistoryRequest {
            topic: topic.to_string(),
            from_seq: from,
            forward,
            limit,
        };
        self.session.history(request).await
    }

    /// Topics by name, or the most active of the last hour.
    pub async fn topics(&mut self, active: bool) -> Result<TopicsReply, tonic::Status> {
        let request = TopicsRequest {
            active,
            limit: 0,
            after: String::new(),
        };
        self.session.topics(request).await
    }

    /// `post` and the page of its replies from `page_token` (empty: the first page).
    pub async fn thread(&mut self, post: &str, page_token: &str) -> Result<ThreadReply, tonic::Status> {
        self.session.thread(post, page_token).await
    }

    /// Deletes one of the user's posts: (status, server's detail).
    pub async fn delete_post(&mut self, post: &str) -> Result<(Code, String), tonic::Status> {
        self.session.delete_post(post).await
    }

    /// A direct message to `to`: (status, server's detail).
    pub async fn send_message(&mut self, to: &str, text: &str) -> Result<(Code, String), tonic::Status> {
        self.session.send_message(to, text).await
    }

    pub async fn inbox(&mut self) -> Result<InboxReply, tonic::Status> {
        self.session.inbox().await
    }

    /// The newest messages with `with`, newest first (marking them read if `mark_read`).
    pub async fn conversation(&mut self, with: &str, mark_read: bool) -> Result<ConversationReply, tonic::Status> {
        self.session.conversation(with, mark_read).await
    }

    /// Blocks (`on`) or stops blocking `user`.
    pub async fn block(&mut self, user: &str, on: bool) -> Result<(Code, String), tonic::Status> {
        self.session.block(user, on).await
    }

    /// Who likes `post`, and how many.
    pub async fn likes(&mut self, post: &str) -> Result<LikesReply, tonic::Status> {
        self.session.likes(post).await
    }

    /// LIST, every page. A refused LIST is an error with the status's name.
    pub async fn list(&mut self) -> Result<Listing, tonic::Status> {
        self.session
            .list()
            .await?
            .map_err(|status| tonic::Status::failed_precondition(format!("LIST refused: {status:?}")))
    }

    /// Opens the timeline (history first, newest first) from the start, or resuming after
    /// `resume_after`. It resumes on its own across failovers, like `tsc`'s.
    pub async fn timeline(&mut self, resume_after: u64) -> Result<Timeline, tonic::Status> {
        let live = LiveTimeline::new(self.session.link().clone(), resume_after, Patience::default());
        Timeline::start(live).await
    }

    /// The way to the user's master, for timelines opened beside the session's calls.
    pub fn link(&self) -> &Link {
        self.session.link()
    }

    pub async fn logout(self) {
        self.session.logout().await;
    }
}

/// An open timeline, for tests: what it shows is kept by kind until taken.
pub struct Timeline {
    live: LiveTimeline<Link>,
    /// The posts shown on opening, newest first.
    pub history: Vec<Post>,
    /// Where live delivery started (the resume cursor).
    pub live_from: u64,
    /// What arrived live and was not taken yet, by kind.
    received: VecDeque<Post>,
    messages: VecDeque<DirectMessageView>,
    topic_posts: VecDeque<TopicPost>,
    /// Room messages, and rooms closed (as `RoomClosed` events, by name).
    room_events: VecDeque<Event>,
    acks: VecDeque<PostAck>,
    /// How many times the stream broke and was resumed.
    pub reconnects: u64,
}

impl Timeline {
    async fn start(mut live: LiveTimeline<Link>) -> Result<Self, tonic::Status> {
        let mut history = Vec::new();
        loop {
            match live.next().await? {
                Event::Post(p) => history.push(p),
                Event::Live { from, .. } => {
                    return Ok(Self {
                        live,
                        history,
                        live_from: from,
                        received: VecDeque::new(),
                        messages: VecDeque::new(),
                        topic_posts: VecDeque::new(),
                        room_events: VecDeque::new(),
                        acks: VecDeque::new(),
                        reconnects: 0,
                    });
                }
                _ => {}
            }
        }
    }

    /// The last log position shown live.
    pub fn cursor(&self) -> u64 {
        self.live.cursor()
    }

    /// Live posts and messages the server sent twice (shown once).
    pub fn repeats(&self) -> u64 {
        self.live.repeats()
    }

    /// Posts `text` and waits for its acknowledgement.
    pub async fn post(&mut self, text: &str) -> Result<PostAck, tonic::Status> {
        self.post_with_id(rand::random::<u64>() >> 1, text).await
    }

    /// Posts `text` under `post_id` (re-sent after a failover until acknowledged) and waits
    /// for its acknowledgement.
    pub async fn post_with_id(&mut self, post_id: u64, text: &str) -> Result<PostAck, tonic::Status> {
        self.live
            .post(post_id, text.to_string())
            .await
            .map_err(|backlog| tonic::Status::resource_exhausted(backlog.to_string()))?;
        loop {
            if let Some(index) = self.acks.iter().position(|a| a.post_id == post_id)
                && let Some(ack) = self.acks.remove(index)
            {
                return Ok(ack);
            }
            self.pump_one().await?;
        }
    }

    /// Reads one event into its queue.
    async fn pump_one(&mut self) -> Result<(), tonic::Status> {
        match self.live.next().await? {
            Event::Post(p) => self.received.push_back(p),
            Event::DirectMessage(m) => self.messages.push_back(m),
            Event::TopicPost(t) => self.topic_posts.push_back(t),
            event @ (Event::RoomMessage(_) | Event::RoomClosed(_)) => self.room_events.push_back(event),
            // (The harness's timelines do not ask for likes.)
            Event::Like(_) => {}
            Event::Ack(ack) => self.acks.push_back(ack),
            Event::Reconnecting { .. } => self.reconnects += 1,
            Event::Live { .. } => {}
        }
        Ok(())
    }

    /// Reads one event before `deadline` into its queue; false when the deadline passed.
    async fn pump(&mut self, deadline: tokio::time::Instant) -> Result<bool, tonic::Status> {
        match tokio::time::timeout_at(deadline, self.pump_one()).await {
            Err(_) => Ok(false),
            Ok(pumped) => pumped.map(|()| true),
        }
    }

    /// The next of what `queue` holds, reading the stream for up to `timeout` (what else
    /// arrives meanwhile is kept for its own call).
    async fn next_in<T>(
        &mut self,
        timeout: Duration,
        queue: fn(&mut Self) -> &mut VecDeque<T>,
    ) -> Result<Option<T>, tonic::Status> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(item) = queue(self).pop_front() {
                return Ok(Some(item));
            }
            if !self.pump(deadline).await? {
                return Ok(None);
            }
        }
    }

    /// The next live post, waiting up to `timeout`.
    pub async fn next_post(&mut self, timeout: Duration) -> Result<Option<Post>, tonic::Status> {
        self.next_in(timeout, |t| &mut t.received).await
    }

    /// The next direct message the stream delivers, waiting up to `timeout`.
    pub async fn next_message(&mut self, timeout: Duration) -> Result<Option<DirectMessageView>, tonic::Status> {
        self.next_in(timeout, |t| &mut t.messages).await
    }

    /// The next post of a subscribed topic the stream delivers, waiting up to `timeout`.
    pub async fn next_topic_post(&mut self, timeout: Duration) -> Result<Option<TopicPost>, tonic::Status> {
        self.next_in(timeout, |t| &mut t.topic_posts).await
    }

    /// The next room message or closing (`Event::RoomMessage`, `Event::RoomClosed`) that
    /// arrives within `timeout`.
    pub async fn next_room_event(&mut self, timeout: Duration) -> Result<Option<Event>, tonic::Status> {
        self.next_in(timeout, |t| &mut t.room_events).await
    }

    /// Every live post that arrives within `window`.
    pub async fn collect(&mut self, window: Duration) -> Result<Vec<Post>, tonic::Status> {
        let deadline = Instant::now() + window;
        let mut posts = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.next_post(left).await? {
                Some(p) => posts.push(p),
                None => break,
            }
        }
        Ok(posts)
    }
}
