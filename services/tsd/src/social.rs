//! The client API: login, list, follow, unfollow and the timeline stream.

use crate::fanout::{self, Fanout, Following, Handback, Subscription};
use crate::feed::Feed;
use crate::reader::Reader;
use crate::sessions::{KEEPALIVE_INTERVAL, Sessions};
use crate::store;
use crate::writer::{Command, Outcome, WriteError, Writer};
use std::sync::Arc;
use std::time::Instant;
use tinysns_common::grpc::not_master;
use tinysns_common::limits::{parse_user_id, validate_post_text};
use tinysns_common::membership::{RoleHandle, RoleView};
use tinysns_common::proto::internal::{LogEntry, change, log_entry};
use tinysns_common::proto::social::social_service_server::{SocialService, SocialServiceServer};
use tinysns_common::proto::social::{
    FollowRequest, ListReply, ListRequest, LoginReply, LoginRequest, NewPost, Post, PostAck, Reply, SessionRequest,
    Status as Code, TimelineEvent, TimelineOpen, TimelineRequest, timeline_event, timeline_request,
};
use tinysns_common::topology::cluster_of_user;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

/// Posts shown when a timeline opens.
pub const HISTORY: usize = 20;

/// Everything the client API needs; cheap to clone into stream tasks.
#[derive(Clone)]
pub struct Social {
    pub cluster: u32,
    pub writer: Writer,
    pub reader: Reader,
    pub feed: Feed,
    pub fanout: Fanout,
    pub role: RoleHandle,
    pub sessions: Arc<Sessions>,
}

fn reply(status: Code, message: impl Into<String>) -> Reply {
    Reply {
        status: status as i32,
        message: message.into(),
    }
}

impl Social {
    pub fn server(self) -> SocialServiceServer<Self> {
        SocialServiceServer::new(self)
    }

    fn master(&self) -> Result<RoleView, Status> {
        let view = self.role.current();
        if view.is_master() {
            Ok(view)
        } else {
            Err(not_master(format!(
                "cluster {} is served by another server",
                self.cluster
            )))
        }
    }

    /// Checks that `user` is a valid id whose home is this cluster.
    fn local_user(&self, user: u64) -> Result<Result<(), Reply>, Status> {
        let view = self.master()?;
        let clusters = view.assignment.clusters.max(1);
        Ok(match cluster_of_user(user, clusters) {
            Err(_) => Err(reply(
                Code::FailureInvalidUsername,
                format!("{user} is not a valid user id"),
            )),
            Ok(c) if c != self.cluster => Err(reply(
                Code::FailureInvalid,
                format!("user {user} belongs to cluster {c}, not {}", self.cluster),
            )),
            Ok(_) => Ok(()),
        })
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&rusqlite::Connection) -> Result<T, store::StoreError> + Send + 'static,
    ) -> Result<T, Status> {
        self.reader.with(f).await.map_err(|e| Status::internal(e.to_string()))
    }

    async fn follow(&self, request: FollowRequest, on: bool) -> Result<Reply, Status> {
        if let Err(r) = self.local_user(request.user_id)? {
            return Ok(r);
        }
        let Some(target) = parse_user_id(&request.target) else {
            return Ok(reply(
                Code::FailureInvalidUsername,
                format!("{:?} is not a valid user id", request.target),
            ));
        };
        let command = Command::Follow {
            follower: request.user_id,
            followee: target,
            on,
        };
        Ok(
            match self.writer.submit(command).await.map_err(WriteError::into_status)? {
                Outcome::Written(_) | Outcome::Unchanged(_) => reply(Code::Success, ""),
                Outcome::Rejected(status, message) => reply(status, message),
            },
        )
    }
}

#[tonic::async_trait]
impl SocialService for Social {
    async fn login(&self, request: Request<LoginRequest>) -> Result<Response<LoginReply>, Status> {
        let req = request.into_inner();
        let answer = |r: Reply, session_id: String| {
            Response::new(LoginReply {
                status: r.status,
                message: r.message,
                session_id,
                keepalive_interval_ms: KEEPALIVE_INTERVAL.as_millis() as u32,
            })
        };
        if let Err(r) = self.local_user(req.user_id)? {
            return Ok(answer(r, String::new()));
        }
        let session = match self.sessions.login(req.user_id, &req.session_id, Instant::now()) {
            Ok(id) => id,
            Err(_) => {
                return Ok(answer(
                    reply(
                        Code::FailureAlreadyExists,
                        format!("user {} is already logged in", req.user_id),
                    ),
                    String::new(),
                ));
            }
        };
        match self.writer.submit(Command::CreateUser { user: req.user_id }).await {
            Ok(_) => {
                tracing::info!(user = req.user_id, "login");
                Ok(answer(reply(Code::Success, ""), session))
            }
            Err(error) => {
                self.sessions.logout(req.user_id, &session);
                Err(error.into_status())
            }
        }
    }

    async fn keep_alive(&self, request: Request<SessionRequest>) -> Result<Response<Reply>, Status> {
        let req = request.into_inner();
        if let Err(r) = self.local_user(req.user_id)? {
            return Ok(Response::new(r));
        }
        Ok(Response::new(
            if self.sessions.keep_alive(req.user_id, &req.session_id, Instant::now()) {
                reply(Code::Success, "")
            } else {
                reply(Code::FailureAlreadyExists, "another session of this user is active")
            },
        ))
    }

    async fn logout(&self, request: Request<SessionRequest>) -> Result<Response<Reply>, Status> {
        let req = request.into_inner();
        if let Err(r) = self.local_user(req.user_id)? {
            return Ok(Response::new(r));
        }
        self.sessions.logout(req.user_id, &req.session_id);
        Ok(Response::new(reply(Code::Success, "")))
    }

    async fn list(&self, request: Request<ListRequest>) -> Result<Response<ListReply>, Status> {
        let user = request.into_inner().user_id;
        if let Err(r) = self.local_user(user)? {
            return Ok(Response::new(ListReply {
                status: r.status,
                message: r.message,
                ..Default::default()
            }));
        }
        let found = self
            .read(move |c| {
                if !store::user_exists(c, user)? {
                    return Ok(None);
                }
                Ok(Some((store::all_users(c)?, store::followers(c, user)?)))
            })
            .await?;
        Ok(Response::new(match found {
            Some((all_users, followers)) => ListReply {
                status: Code::Success as i32,
                message: String::new(),
                all_users,
                followers,
            },
            None => ListReply {
                status: Code::FailureNotExists as i32,
                message: format!("user {user} has never logged in"),
                ..Default::default()
            },
        }))
    }

    async fn follow(&self, request: Request<FollowRequest>) -> Result<Response<Reply>, Status> {
        Social::follow(self, request.into_inner(), true)
            .await
            .map(Response::new)
    }

    async fn un_follow(&self, request: Request<FollowRequest>) -> Result<Response<Reply>, Status> {
        Social::follow(self, request.into_inner(), false)
            .await
            .map(Response::new)
    }

    type TimelineStream = ReceiverStream<Result<TimelineEvent, Status>>;

    async fn timeline(
        &self,
        request: Request<Streaming<TimelineRequest>>,
    ) -> Result<Response<Self::TimelineStream>, Status> {
        let mut inbound = request.into_inner();
        let open = match inbound.message().await?.and_then(|m| m.kind) {
            Some(timeline_request::Kind::Open(open)) => open,
            _ => return Err(Status::invalid_argument("the first timeline message must be `open`")),
        };
        if let Err(r) = self.local_user(open.user_id)? {
            return Err(Status::invalid_argument(r.message));
        }
        let user = open.user_id;
        if !self.read(move |c| store::user_exists(c, user)).await? {
            return Err(Status::not_found(format!("user {user} has never logged in")));
        }
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(self.clone().deliver(open, tx.clone()));
        tokio::spawn(self.clone().accept_posts(user, inbound, tx));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

type Events = mpsc::Sender<Result<TimelineEvent, Status>>;

/// A post entry as the client sees it.
fn shown_post(entry: &LogEntry) -> Option<Post> {
    let Some(log_entry::Kind::Change(c)) = &entry.kind else {
        return None;
    };
    let Some(change::Kind::Post(p)) = &c.kind else {
        return None;
    };
    Some(Post {
        author: p.author,
        post_id: p.post_id,
        text: p.text.clone(),
        timestamp_ms: entry.timestamp_ms,
        seq: entry.lsn,
    })
}

fn event(kind: timeline_event::Kind) -> Result<TimelineEvent, Status> {
    Ok(TimelineEvent { kind: Some(kind) })
}

impl Social {
    /// Streams the timeline: history (or what was missed), then live posts, until the client
    /// goes away or this server stops being master.
    async fn deliver(self, open: TimelineOpen, tx: Events) {
        if let Err(status) = self.try_deliver(open, &tx).await {
            let _ = tx.send(Err(status)).await;
        }
    }

    async fn try_deliver(&self, open: TimelineOpen, tx: &Events) -> Result<(), Status> {
        let user = open.user_id;
        let committed = self.feed.committed();
        let cursor = if open.resume_after == 0 {
            let history = self.read(move |c| store::timeline(c, user, committed, HISTORY)).await?;
            for post in history {
                if tx.send(event(timeline_event::Kind::Post(post))).await.is_err() {
                    return Ok(());
                }
            }
            committed
        } else {
            open.resume_after.min(committed)
        };
        let following: Following = self
            .read(move |c| store::following(c, user))
            .await?
            .into_iter()
            .collect();
        if tx.send(event(timeline_event::Kind::LiveFrom(cursor))).await.is_err() {
            return Ok(());
        }
        let mut place = Handback {
            after: cursor,
            following,
        };
        // Read the log on our own until the fan-out can take over; back to reading on our own
        // whenever it lets go (we fell behind).
        loop {
            match self.fanout.join(user, place.after, &place.following) {
                Some(subscription) => match self.served(subscription, tx).await? {
                    Some(handback) => place = handback,
                    None => return Ok(()),
                },
                None => {
                    if !self.read_on(user, &mut place, tx).await? {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Shows what the fan-out routes to this timeline. `None` when the client went away,
    /// else where to continue on our own.
    async fn served(&self, mut subscription: Subscription, tx: &Events) -> Result<Option<Handback>, Status> {
        let mut role = self.role.clone();
        loop {
            let entry = tokio::select! {
                routed = subscription.next() => match routed {
                    Ok(entry) => entry,
                    Err(Some(handback)) => return Ok(Some(handback)),
                    Err(None) => return Err(Status::unavailable("the timeline lost its place; open it again to resume")),
                },
                _ = role.changed() => { self.master()?; continue; }
                _ = tx.closed() => return Ok(None),
            };
            // A master that has just learned of a newer term (from its new master's first
            // Append) stops streaming at once: its log may be rewritten under it.
            self.master()?;
            if let Some(post) = shown_post(&entry)
                && tx.send(event(timeline_event::Kind::Post(post))).await.is_err()
            {
                return Ok(None);
            }
        }
    }

    /// Reads one stretch of the log after `place` on our own, showing what the user follows
    /// and moving `place` on. False when the client went away.
    async fn read_on(&self, user: u64, place: &mut Handback, tx: &Events) -> Result<bool, Status> {
        let mut tail = self.feed.tail(self.reader.clone(), place.after);
        let mut role = self.role.clone();
        let entries = loop {
            tokio::select! {
                entries = tail.next() => break entries.map_err(|e| Status::internal(e.to_string()))?,
                _ = role.changed() => { self.master()?; }
                _ = tx.closed() => return Ok(false),
            }
        };
        self.master()?;
        for entry in entries {
            if fanout::step(&mut place.following, user, &entry)
                && let Some(post) = shown_post(&entry)
                && tx.send(event(timeline_event::Kind::Post(post))).await.is_err()
            {
                return Ok(false);
            }
        }
        // Where the tail is, also when it skipped back over a rewound log.
        place.after = tail.cursor();
        Ok(true)
    }

    /// Stores the posts the client sends on its timeline stream, acknowledging each.
    async fn accept_posts(self, user: u64, mut inbound: Streaming<TimelineRequest>, tx: Events) {
        loop {
            let message = match inbound.message().await {
                Ok(Some(m)) => m,
                Ok(None) => return,
                Err(status) => {
                    tracing::debug!(user, error = %status, "timeline stream ended");
                    return;
                }
            };
            let Some(timeline_request::Kind::Post(NewPost { post_id, text })) = message.kind else {
                let ack = PostAck {
                    post_id: 0,
                    status: Code::FailureInvalid as i32,
                    message: "expected a post".into(),
                };
                if tx.send(event(timeline_event::Kind::Ack(ack))).await.is_err() {
                    return;
                }
                continue;
            };
            let post_id = if post_id == 0 {
                rand::random::<u64>() >> 1
            } else {
                post_id
            };
            let ack = match validate_post_text(&text) {
                Err(problem) => PostAck {
                    post_id,
                    status: Code::FailureInvalid as i32,
                    message: problem.to_string(),
                },
                Ok(()) => match self
                    .writer
                    .submit(Command::Post {
                        author: user,
                        post_id,
                        text,
                    })
                    .await
                {
                    Ok(Outcome::Rejected(status, message)) => PostAck {
                        post_id,
                        status: status as i32,
                        message,
                    },
                    Ok(_) => PostAck {
                        post_id,
                        status: Code::Success as i32,
                        message: String::new(),
                    },
                    Err(error) => {
                        let _ = tx.send(Err(error.into_status())).await;
                        return;
                    }
                },
            };
            if tx.send(event(timeline_event::Kind::Ack(ack))).await.is_err() {
                return;
            }
        }
    }
}
