//! The load: one actor per user, each holding its user's timeline stream open for the whole
//! run. A stream both receives the posts of the users it follows (recorded as deliveries)
//! and carries the user's own posts (recorded with their acknowledgement), like `tsc` in
//! timeline mode, through the same client library: when a stream breaks (a failover), the
//! timeline finds the new master through the coordinator, resumes after the last post it
//! showed and re-sends the unacknowledged posts under their original ids.

use crate::workload::Graph;
use anyhow::{Context, Result};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tinysns_client::live::{LiveTimeline, Opened, Opener, Patience};
use tinysns_client::resume::Event;
use tinysns_common::auth::Bearer;
use tinysns_common::coordinators::{Coordinators, parse_addresses};
use tinysns_common::proto::coordinator::GetServerRequest;
use tinysns_common::proto::coordinator::coordinator_client::CoordinatorClient;
use tinysns_common::proto::social::social_service_client::SocialServiceClient;
use tinysns_common::proto::social::{Status as Code, TimelineRequest};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
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
    Gateway,
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
    /// Logs a problem and keeps it (the first 20) for the report.
    pub fn error(&self, message: String) {
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

/// How every post's text starts, before its id.
const POST_PREFIX: &str = "bench post ";

/// ~100 bytes, the size of a typical short post; `tagged`, it names one of the mix's topics.
pub fn post_text(post_id: u64, tagged: bool) -> String {
    let text =
        format!("{POST_PREFIX}{post_id:020} lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod");
    match tagged {
        true => format!("{text} #{}", crate::mix::topic_of(post_id)),
        false => text,
    }
}

/// The id of a post from its text (for views that leave ids out, like the gateway's); None
/// for a text [`post_text`] did not write.
pub fn post_id_of(text: &str) -> Option<u64> {
    let digits = text.strip_prefix(POST_PREFIX)?.get(..20)?;
    digits
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| digits.parse().ok())?
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

/// One user's way to its master through the shared [`Router`] (pooled connections), for
/// the client library's [`LiveTimeline`].
pub struct Routed<R> {
    pub router: R,
    pub user: u64,
}

impl<R: std::ops::Deref<Target = Router> + Send + Sync> Opener for Routed<R> {
    async fn open(&self, requests: ReceiverStream<TimelineRequest>) -> Result<Opened, tonic::Status> {
        let (address, mut client) = self.router.resolve(self.user).await?;
        let events = client.timeline(requests).await?.into_inner();
        Ok(Opened {
            server: address.into(),
            events,
        })
    }

    /// Every open asks the coordinator afresh.
    fn reset(&self) {}
}

/// How an actor reconnects: jittered, since hundreds of users retry at once during a
/// failover, and the first of them to get through is what the failover figure sees.
pub const PATIENCE: Patience = Patience {
    retry_for: REOPEN_FOR,
    first_pause: REOPEN_PAUSE,
    max_pause: REOPEN_MAX_PAUSE,
};

impl Actor {
    fn finish(&self, pending: Pending, ok: bool, server: Option<&Arc<str>>) {
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
            server: server.cloned().unwrap_or_else(|| Arc::from("")),
        });
        self.busy.store(false, Ordering::Release);
        if let Some(done) = pending.done {
            let _ = done.send(ok);
        }
    }

    /// Runs the user's timeline until the driver closes the commands; returns the cursor of
    /// the first open.
    async fn run(mut self) -> u64 {
        let opener = Routed {
            router: self.router.clone(),
            user: self.user,
        };
        let mut timeline = LiveTimeline::new(opener, 0, PATIENCE);
        let mut first_cursor: Option<u64> = None;
        let mut pending: VecDeque<Pending> = VecDeque::new();
        loop {
            tokio::select! {
                command = self.commands.recv() => match command {
                    Some(Command::Post { post_id, phase, done }) => {
                        let p = Pending { post_id, phase, sent: Instant::now(), done };
                        match timeline.post(post_id, post_text(post_id, self.tagged)).await {
                            Ok(()) => pending.push_back(p),
                            Err(backlog) => {
                                self.recorder.error(format!("user {}: {backlog}", self.user));
                                self.finish(p, false, None);
                            }
                        }
                    }
                    None => return first_cursor.unwrap_or(0),
                },
                event = timeline.next() => match event {
                    Ok(Event::Post(post)) => {
                        if first_cursor.is_none() {
                            continue; // history from before the run
                        }
                        self.recorder.delivered.fetch_add(1, Ordering::Relaxed);
                        self.recorder
                            .deliveries
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(DeliveryRecord { post_id: post.post_id, follower: self.user, at: Instant::now() });
                    }
                    // (The mix's messages and topic posts are not timed; it has no rooms.)
                    Ok(Event::DirectMessage(_) | Event::TopicPost(_) | Event::RoomMessage(_) | Event::RoomClosed(_) | Event::Like(_)) => {}
                    Ok(Event::Ack(ack)) => {
                        let found = pending.iter().position(|p| p.post_id == ack.post_id);
                        if let Some(p) = found.and_then(|index| pending.remove(index)) {
                            let ok = ack.status == Code::Success as i32;
                            if !ok {
                                self.recorder.error(format!(
                                    "user {}: post {} refused: {}",
                                    self.user, ack.post_id, ack.message
                                ));
                            }
                            self.finish(p, ok, timeline.server());
                        }
                    }
                    Ok(Event::Live { from, .. }) => {
                        if first_cursor.is_none() {
                            first_cursor = Some(from);
                            self.recorder.ready.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Ok(Event::Reconnecting { error }) => {
                        tracing::debug!(user = self.user, %error, "timeline stream broke, reopening");
                        self.recorder.reconnects.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(status) => {
                        self.recorder.error(format!(
                            "user {}: cannot open the timeline for {REOPEN_FOR:?}: {status}",
                            self.user
                        ));
                        self.recorder.gave_up.fetch_add(1, Ordering::Relaxed);
                        for p in pending.drain(..) {
                            self.busy.store(false, Ordering::Release);
                            if let Some(done) = p.done {
                                let _ = done.send(false);
                            }
                        }
                        return first_cursor.unwrap_or(0);
                    }
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_posts_id_is_read_back_from_its_text() {
        for (id, tagged) in [(1, false), (u64::MAX >> 1, true), (42, true)] {
            assert_eq!(post_id_of(&post_text(id, tagged)), Some(id));
        }
        for other in [
            "",
            "bench post ",
            "bench post 12",
            "hello",
            "bench post -0000000000000000001 x",
        ] {
            assert_eq!(post_id_of(other), None, "{other:?}");
        }
    }
}
