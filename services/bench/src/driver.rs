//! The load: one actor per user, each holding its user's timeline stream open for the whole
//! run. A stream both receives the posts of the users it follows (recorded as deliveries)
//! and carries the user's own posts (recorded with their acknowledgement), like `tsc` in
//! timeline mode. When a stream breaks (a failover), the actor finds the new master through
//! the coordinator, resumes the timeline after the last post it saw and re-sends its
//! unacknowledged posts under their original ids.

use crate::workload::Graph;
use anyhow::{Context, Result};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tinysns_common::auth::Bearer;
use tinysns_common::backoff::Backoff;
use tinysns_common::coordinators::{Coordinators, parse_addresses};
use tinysns_common::proto::coordinator::GetServerRequest;
use tinysns_common::proto::coordinator::coordinator_client::CoordinatorClient;
use tinysns_common::proto::social::social_service_client::SocialServiceClient;
use tinysns_common::proto::social::{
    NewPost, Status as Code, TimelineEvent, TimelineOpen, TimelineRequest, timeline_event, timeline_request,
};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// A client that presents one user's session token.
pub type SocialClient = SocialServiceClient<InterceptedService<Channel, Bearer>>;

/// How long an actor keeps trying to reach its user's cluster before giving up.
const REOPEN_FOR: Duration = Duration::from_secs(60);
const REOPEN_PAUSE: Duration = Duration::from_millis(20);
const REOPEN_MAX_PAUSE: Duration = Duration::from_millis(320);
/// Streams per connection to one server: well under HTTP/2's usual concurrency limits.
const STREAMS_PER_CONNECTION: u64 = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Warmup,
    Latency,
    Throughput,
    Failover,
    Switchover,
    CatchUp,
}

pub struct AckRecord {
    pub post_id: u64,
    pub author: u64,
    pub phase: Phase,
    pub sent: Instant,
    pub acked: Instant,
    pub ok: bool,
    /// The server that acknowledged it.
    pub server: Arc<str>,
}

pub struct DeliveryRecord {
    pub post_id: u64,
    pub follower: u64,
    pub at: Instant,
}

/// Everything the actors observe.
#[derive(Default)]
pub struct Recorder {
    pub acks: Mutex<Vec<AckRecord>>,
    pub deliveries: Mutex<Vec<DeliveryRecord>>,
    pub acked: AtomicU64,
    pub refused: AtomicU64,
    pub delivered: AtomicU64,
    /// (post, follower) pairs expected from the acknowledged posts.
    pub expected: AtomicU64,
    pub reconnects: AtomicU64,
    pub ready: AtomicU64,
    pub gave_up: AtomicU64,
    pub errors: Mutex<Vec<String>>,
}

impl Recorder {
    fn error(&self, message: String) {
        tracing::warn!("{message}");
        let mut errors = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        if errors.len() < 20 {
            errors.push(message);
        }
    }

    pub fn take(&self) -> (Vec<AckRecord>, Vec<DeliveryRecord>) {
        let acks = std::mem::take(&mut *self.acks.lock().unwrap_or_else(|p| p.into_inner()));
        let deliveries = std::mem::take(&mut *self.deliveries.lock().unwrap_or_else(|p| p.into_inner()));
        (acks, deliveries)
    }
}

/// Finds a user's server through the coordinator and hands out connections to it, each
/// presenting the user's session token.
pub struct Router {
    coordinators: Coordinators<CoordinatorClient<Channel>>,
    pools: Mutex<HashMap<String, Vec<Channel>>>,
    connections: usize,
    tokens: Mutex<HashMap<u64, Bearer>>,
}

impl Router {
    /// `coordinators`: `host:port`, or several comma-separated.
    pub fn new(coordinators: &str, users: u64) -> Result<Self> {
        let addresses = parse_addresses(coordinators, 9000).map_err(anyhow::Error::msg)?;
        Ok(Self {
            coordinators: Coordinators::connect(&addresses, |address| {
                tinysns_common::grpc::channel(address, Duration::from_secs(1)).map(CoordinatorClient::new)
            })?,
            pools: Mutex::new(HashMap::new()),
            connections: users.div_ceil(STREAMS_PER_CONNECTION).clamp(1, 16) as usize,
            tokens: Mutex::new(HashMap::new()),
        })
    }

    /// Remembers `user`'s session token for its later calls.
    pub fn set_token(&self, user: u64, token: &str) -> Result<()> {
        let bearer = Bearer::new(token).context("the server issued an unusable token")?;
        tinysns_common::lock(&self.tokens).insert(user, bearer);
        Ok(())
    }

    /// The address of `user`'s master and a client for it (with the user's token, if any).
    pub async fn resolve(&self, user: u64) -> Result<(String, SocialClient), tonic::Status> {
        let (address, channel) = self.resolve_channel(user).await?;
        let bearer = tinysns_common::lock(&self.tokens)
            .get(&user)
            .cloned()
            .or_else(|| Bearer::new("none"))
            .ok_or_else(|| tonic::Status::internal("no bearer"))?;
        Ok((address, SocialServiceClient::with_interceptor(channel, bearer)))
    }

    async fn resolve_channel(&self, user: u64) -> Result<(String, Channel), tonic::Status> {
        let address = self
            .coordinators
            .call(|mut coordinator| async move {
                let mut request = tonic::Request::new(GetServerRequest {
                    user_id: user,
                    username: String::new(),
                });
                request.set_timeout(Duration::from_secs(2));
                coordinator.get_server(request).await
            })
            .await?
            .into_inner()
            .address;
        let channel = {
            let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
            let pool = match pools.get_mut(&address) {
                Some(pool) => pool,
                None => {
                    let pool = (0..self.connections)
                        .map(|_| tinysns_common::grpc::channel(&address, Duration::from_secs(1)))
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|e| tonic::Status::internal(e.to_string()))?;
                    pools.entry(address.clone()).or_insert(pool)
                }
            };
            pool[(user as usize) % pool.len()].clone()
        };
        Ok((address, channel))
    }

    /// Calls `call` on `user`'s master, re-resolving on retryable errors for up to 30 s.
    pub async fn call<T, F, Fut>(&self, user: u64, mut call: F) -> Result<T>
    where
        F: FnMut(SocialClient) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let result = match self.resolve(user).await {
                Ok((_, client)) => call(client).await.map(tonic::Response::into_inner),
                Err(status) => Err(status),
            };
            match result {
                Ok(reply) => return Ok(reply),
                Err(status) if tinysns_common::grpc::is_retryable(&status) && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(status) => {
                    return Err(anyhow::anyhow!("{}: {}", status.code(), status.message()))
                        .with_context(|| format!("call for user {user}"));
                }
            }
        }
    }
}

pub enum Command {
    Post {
        post_id: u64,
        phase: Phase,
        done: Option<oneshot::Sender<bool>>,
    },
}

struct Pending {
    post_id: u64,
    phase: Phase,
    sent: Instant,
    done: Option<oneshot::Sender<bool>>,
}

/// The driver's side of one user's actor.
pub struct UserHandle {
    pub user: u64,
    pub commands: mpsc::Sender<Command>,
    /// Set while a post sent by the open-loop scheduler is unacknowledged.
    pub busy: Arc<AtomicBool>,
    join: tokio::task::JoinHandle<u64>,
}

impl UserHandle {
    /// Closes the stream; returns where the user's live timeline started (the cursor of
    /// its first open), for re-reading it afterwards.
    pub async fn stop(self) -> u64 {
        drop(self.commands);
        self.join.await.unwrap_or(0)
    }
}

/// ~100 bytes, the size of a typical short post; `tagged`, it names one of the mix's topics.
pub fn post_text(post_id: u64, tagged: bool) -> String {
    let text =
        format!("bench post {post_id:020} lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod");
    match tagged {
        true => format!("{text} #{}", crate::mix::topic_of(post_id)),
        false => text,
    }
}

/// `tagged`: the user's posts name topics (`--mix`).
pub fn spawn_user(
    user: u64,
    router: Arc<Router>,
    recorder: Arc<Recorder>,
    graph: Arc<Graph>,
    tagged: bool,
) -> UserHandle {
    let (commands, rx) = mpsc::channel(1024);
    let busy = Arc::new(AtomicBool::new(false));
    let actor = Actor {
        user,
        router,
        recorder,
        graph,
        tagged,
        busy: busy.clone(),
        commands: rx,
    };
    UserHandle {
        user,
        commands,
        busy,
        join: tokio::spawn(actor.run()),
    }
}

struct Actor {
    user: u64,
    router: Arc<Router>,
    recorder: Arc<Recorder>,
    graph: Arc<Graph>,
    tagged: bool,
    busy: Arc<AtomicBool>,
    commands: mpsc::Receiver<Command>,
}

struct Stream {
    server: Arc<str>,
    tx: mpsc::Sender<TimelineRequest>,
    events: Streaming<TimelineEvent>,
}

fn post_request(post_id: u64, tagged: bool) -> TimelineRequest {
    TimelineRequest {
        kind: Some(timeline_request::Kind::Post(NewPost {
            post_id,
            text: post_text(post_id, tagged),
        })),
    }
}

/// Opens `user`'s timeline on its master (`resume_after` 0: from now on, with history).
pub async fn open_timeline(
    router: &Router,
    user: u64,
    resume_after: u64,
) -> Result<(Arc<str>, mpsc::Sender<TimelineRequest>, Streaming<TimelineEvent>), tonic::Status> {
    let (address, mut client) = router.resolve(user).await?;
    let (tx, rx) = mpsc::channel(256);
    let open = TimelineRequest {
        kind: Some(timeline_request::Kind::Open(TimelineOpen { resume_after })),
    };
    tx.try_send(open)
        .map_err(|_| tonic::Status::internal("cannot queue the open request"))?;
    let events = client.timeline(ReceiverStream::new(rx)).await?.into_inner();
    Ok((address.into(), tx, events))
}

impl Actor {
    async fn open(&self, resume_after: u64) -> Option<Stream> {
        let deadline = Instant::now() + REOPEN_FOR;
        // Jittered: hundreds of users retry at once during a failover, and the first of them
        // to get through is what the failover figure sees.
        let mut pause = Backoff::new(REOPEN_PAUSE, REOPEN_MAX_PAUSE);
        loop {
            match open_timeline(&self.router, self.user, resume_after).await {
                Ok((server, tx, events)) => return Some(Stream { server, tx, events }),
                Err(status) if Instant::now() < deadline => {
                    tracing::debug!(user = self.user, error = %status, "timeline not open yet, retrying");
                    tokio::time::sleep(pause.next_delay()).await;
                }
                Err(status) => {
                    self.recorder.error(format!(
                        "user {}: cannot open the timeline for {REOPEN_FOR:?}: {status}",
                        self.user
                    ));
                    return None;
                }
            }
        }
    }

    fn finish(&self, pending: Pending, ok: bool, server: &Arc<str>) {
        let acked = Instant::now();
        let recorder = &self.recorder;
        if ok {
            recorder.acked.fetch_add(1, Ordering::Relaxed);
            let fan_out = self.graph.followers_of(self.user).len() as u64;
            recorder.expected.fetch_add(fan_out, Ordering::Relaxed);
        } else {
            recorder.refused.fetch_add(1, Ordering::Relaxed);
        }
        recorder.acks.lock().unwrap_or_else(|p| p.into_inner()).push(AckRecord {
            post_id: pending.post_id,
            author: self.user,
            phase: pending.phase,
            sent: pending.sent,
            acked,
            ok,
            server: server.clone(),
        });
        self.busy.store(false, Ordering::Release);
        if let Some(done) = pending.done {
            let _ = done.send(ok);
        }
    }

    /// Returns the cursor of the first open.
    async fn run(mut self) -> u64 {
        let mut first_cursor: Option<u64> = None;
        let mut cursor = 0u64;
        let mut pending: VecDeque<Pending> = VecDeque::new();
        'connection: loop {
            let Some(mut stream) = self.open(cursor).await else {
                self.recorder.gave_up.fetch_add(1, Ordering::Relaxed);
                for p in pending.drain(..) {
                    self.busy.store(false, Ordering::Release);
                    if let Some(done) = p.done {
                        let _ = done.send(false);
                    }
                }
                return first_cursor.unwrap_or(0);
            };
            for p in &pending {
                if stream.tx.send(post_request(p.post_id, self.tagged)).await.is_err() {
                    self.recorder.reconnects.fetch_add(1, Ordering::Relaxed);
                    continue 'connection;
                }
            }
            loop {
                tokio::select! {
                    command = self.commands.recv() => match command {
                        Some(Command::Post { post_id, phase, done }) => {
                            pending.push_back(Pending { post_id, phase, sent: Instant::now(), done });
                            if stream.tx.send(post_request(post_id, self.tagged)).await.is_err() {
                                self.recorder.reconnects.fetch_add(1, Ordering::Relaxed);
                                continue 'connection;
                            }
                        }
                        None => return first_cursor.unwrap_or(0),
                    },
                    event = stream.events.message() => match event {
                        Ok(Some(TimelineEvent { kind: Some(kind) })) => match kind {
                            timeline_event::Kind::Post(post) => {
                                if first_cursor.is_none() {
                                    continue; // history from before the run
                                }
                                cursor = cursor.max(post.seq);
                                self.recorder.delivered.fetch_add(1, Ordering::Relaxed);
                                self.recorder
                                    .deliveries
                                    .lock()
                                    .unwrap_or_else(|p| p.into_inner())
                                    .push(DeliveryRecord { post_id: post.post_id, follower: self.user, at: Instant::now() });
                            }
                            // (The mix's messages and topic posts are not timed; a message moves
                            // the cursor.)
                            timeline_event::Kind::DirectMessage(message) => cursor = cursor.max(message.seq),
                            timeline_event::Kind::TopicPost(_) => {}
                            timeline_event::Kind::Ack(ack) => {
                                let found = pending.iter().position(|p| p.post_id == ack.post_id);
                                if let Some(p) = found.and_then(|index| pending.remove(index)) {
                                    let ok = ack.status == Code::Success as i32;
                                    if !ok {
                                        self.recorder.error(format!(
                                            "user {}: post {} refused: {}",
                                            self.user, ack.post_id, ack.message
                                        ));
                                    }
                                    self.finish(p, ok, &stream.server);
                                }
                            }
                            timeline_event::Kind::LiveFrom(from) => {
                                if first_cursor.is_none() {
                                    first_cursor = Some(from);
                                    self.recorder.ready.fetch_add(1, Ordering::Relaxed);
                                }
                                cursor = from;
                            }
                        },
                        Ok(Some(_)) => {}
                        Ok(None) | Err(_) => {
                            tracing::debug!(user = self.user, server = %stream.server, "timeline stream broke, reopening");
                            self.recorder.reconnects.fetch_add(1, Ordering::Relaxed);
                            continue 'connection;
                        }
                    },
                }
            }
        }
    }
}
