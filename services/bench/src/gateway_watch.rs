//! Browsers on the gateway, for its phase: each watched user logs in through the gateway's
//! HTTP API (`POST /api/login`, which answers with the session cookie, as for the web UI)
//! and holds the live WebSocket (`/api/live`, sent with the cookie and the gateway's own
//! `Origin`, as a browser sends them) open; every post arriving on it is recorded with the
//! time it arrived, on the same clock as the gRPC deliveries.

use crate::driver::{DeliveryRecord, Recorder, post_id_of};
use anyhow::{Context, Result, bail};
use futures_util::{StreamExt, TryStreamExt};
use serde::Deserialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The gateway's session cookie (`services/gateway/src/auth.rs`).
const SESSION_COOKIE: &str = "tinysns_session";
/// How long a socket may take to send its history and say it is live.
const LIVE_WITHIN: Duration = Duration::from_secs(30);
/// Logins at once: each costs the user's server a password verification.
const LOGINS_AT_ONCE: usize = 4;
/// How long a reader may take to close its socket once told to stop.
const STOP_WITHIN: Duration = Duration::from_secs(5);

/// A live event, as much of it as the benchmark reads (`LiveEvent` in the gateway's
/// `views.rs`).
#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum LiveEvent {
    Post {
        post: PostText,
    },
    Live {
        cursor: u64,
    },
    Reconnecting {
        cursor: u64,
    },
    Closed {
        error: String,
    },
    /// Direct messages and topic posts (the social mix): not timed.
    #[serde(other)]
    Other,
}

#[derive(Debug, Deserialize)]
struct PostText {
    text: String,
}

/// What the sockets saw, shared with their readers.
#[derive(Default)]
struct Arrivals {
    records: Mutex<Vec<DeliveryRecord>>,
    count: AtomicU64,
    reconnects: AtomicU64,
}

/// The watched users' open sockets.
pub struct Watchers {
    arrivals: Arc<Arrivals>,
    stop: watch::Sender<bool>,
    readers: Vec<JoinHandle<()>>,
}

/// What the sockets saw, once closed.
pub struct Seen {
    /// Every post that arrived after the socket went live, duplicates included.
    pub arrivals: Vec<DeliveryRecord>,
    /// `reconnecting` events: the gateway's stream to the servers broke.
    pub reconnects: u64,
}

impl Watchers {
    /// Logs each `(user, username)` in at `base` (`http://host:port`) and opens its live
    /// socket; returns once every socket has sent its history and said it is live.
    /// Problems once running go to `recorder`'s errors.
    pub async fn open(base: &str, users: &[(u64, String)], recorder: Arc<Recorder>) -> Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .context("an HTTP client")?;
        let sockets: Vec<(u64, Socket)> = futures_util::stream::iter(users)
            .map(|(user, username)| {
                let http = &http;
                async move {
                    let cookie = log_in(http, base, username).await?;
                    let mut socket = connect(base, &cookie).await?;
                    until_live(&mut socket)
                        .await
                        .with_context(|| format!("{username}'s live socket"))?;
                    Ok::<_, anyhow::Error>((*user, socket))
                }
            })
            .buffer_unordered(LOGINS_AT_ONCE)
            .try_collect()
            .await?;
        let arrivals = Arc::new(Arrivals::default());
        let (stop, stopped) = watch::channel(false);
        let readers = sockets
            .into_iter()
            .map(|(user, socket)| {
                let reader = Reader {
                    user,
                    arrivals: arrivals.clone(),
                    recorder: recorder.clone(),
                };
                tokio::spawn(reader.run(socket, stopped.clone()))
            })
            .collect();
        Ok(Self {
            arrivals,
            stop,
            readers,
        })
    }

    /// Posts arrived so far (duplicates included).
    pub fn arrived(&self) -> u64 {
        self.arrivals.count.load(Ordering::Relaxed)
    }

    /// Waits until `expected` posts have arrived, for at most `timeout`.
    pub async fn wait_for(&self, expected: u64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.arrived() < expected && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Let stragglers (duplicates) land, as after every phase.
        tokio::time::sleep(Duration::from_millis(100)).await;
        if self.arrived() < expected {
            tracing::warn!(
                arrived = self.arrived(),
                expected,
                "WebSocket deliveries still outstanding after {timeout:?}"
            );
        }
    }

    /// Closes the sockets; returns what they saw.
    pub async fn stop(self) -> Seen {
        let _ = self.stop.send(true);
        for reader in self.readers {
            let _ = tokio::time::timeout(STOP_WITHIN, reader).await;
        }
        let arrivals = std::mem::take(&mut *tinysns_common::lock(&self.arrivals.records));
        Seen {
            arrivals,
            reconnects: self.arrivals.reconnects.load(Ordering::Relaxed),
        }
    }
}

/// Logs `username` in through the HTTP API; returns its `Cookie` header.
async fn log_in(http: &reqwest::Client, base: &str, username: &str) -> Result<String> {
    let body = serde_json::json!({
        "username": username,
        "password": tinysns_stack::accounts::PASSWORD,
    });
    let response = http
        .post(format!("{base}/api/login"))
        .json(&body)
        .send()
        .await
        .with_context(|| format!("logging {username} in at {base}"))?;
    let status = response.status();
    if !status.is_success() {
        let answer = response.text().await.unwrap_or_default();
        bail!("the gateway refused {username}'s login ({status}): {answer}");
    }
    response
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .filter_map(|value| value.split(';').next())
        .find(|pair| pair.trim_start().starts_with(&format!("{SESSION_COOKIE}=")))
        .map(|pair| pair.trim().to_string())
        .with_context(|| format!("the gateway's login of {username} set no {SESSION_COOKIE} cookie"))
}

/// Opens the live WebSocket with the session cookie and the gateway's own origin.
async fn connect(base: &str, cookie: &str) -> Result<Socket> {
    let url = format!("{}/api/live", base.replacen("http", "ws", 1));
    let mut request = url
        .as_str()
        .into_client_request()
        .with_context(|| format!("{url} is no WebSocket URL"))?;
    let headers = request.headers_mut();
    headers.insert("Cookie", cookie.parse().context("an unusable session cookie")?);
    headers.insert("Origin", base.parse().with_context(|| format!("{base} is no origin"))?);
    let (socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .with_context(|| format!("opening {url}"))?;
    Ok(socket)
}

/// Reads the socket's history until its `live` event.
async fn until_live(socket: &mut Socket) -> Result<()> {
    let read = async {
        while let Some(message) = socket.next().await {
            let Message::Text(text) = message.context("reading the socket")? else {
                continue;
            };
            match serde_json::from_str::<LiveEvent>(&text) {
                Ok(LiveEvent::Live { cursor }) => {
                    tracing::debug!(cursor, "live socket open");
                    return Ok(());
                }
                Ok(LiveEvent::Closed { error }) => bail!("the gateway closed it: {error}"),
                Ok(_) => {}
                Err(e) => bail!("an unreadable live event ({e}): {text}"),
            }
        }
        bail!("the gateway closed it before it was live")
    };
    tokio::time::timeout(LIVE_WITHIN, read)
        .await
        .with_context(|| format!("not live within {LIVE_WITHIN:?}"))?
}

/// Reads one user's socket until told to stop.
struct Reader {
    user: u64,
    arrivals: Arc<Arrivals>,
    recorder: Arc<Recorder>,
}

impl Reader {
    async fn run(self, mut socket: Socket, mut stop: watch::Receiver<bool>) {
        loop {
            let message = tokio::select! {
                message = socket.next() => message,
                _ = stop.changed() => {
                    let _ = socket.close(None).await;
                    return;
                }
            };
            let at = Instant::now();
            let text = match message {
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(Message::Close(_))) | None => return self.error("the gateway closed the live socket".into()),
                Some(Ok(_)) => continue,
                Some(Err(e)) => return self.error(format!("the live socket broke: {e}")),
            };
            match serde_json::from_str::<LiveEvent>(&text) {
                Ok(LiveEvent::Post { post }) => self.arrived(&post.text, at),
                Ok(LiveEvent::Reconnecting { cursor }) => {
                    tracing::debug!(user = self.user, cursor, "the gateway's stream is reconnecting");
                    self.arrivals.reconnects.fetch_add(1, Ordering::Relaxed);
                }
                Ok(LiveEvent::Closed { error }) => {
                    return self.error(format!("the gateway closed the stream: {error}"));
                }
                Ok(LiveEvent::Live { .. } | LiveEvent::Other) => {}
                Err(e) => self.error(format!("an unreadable live event ({e})")),
            }
        }
    }

    /// Records a post's arrival (posts the benchmark did not write are not its to time).
    fn arrived(&self, text: &str, at: Instant) {
        let Some(post_id) = post_id_of(text) else {
            return;
        };
        tinysns_common::lock(&self.arrivals.records).push(DeliveryRecord {
            post_id,
            follower: self.user,
            at,
        });
        self.arrivals.count.fetch_add(1, Ordering::Relaxed);
    }

    fn error(&self, message: String) {
        self.recorder.error(format!("user {}: gateway: {message}", self.user));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gateways_live_events_are_read() {
        let post = r#"{"kind":"post","cursor":9,"post":{"name":"user2/1","author":"user2","number":1,
            "text":"bench post 00000000000000000042 x","timestamp_ms":1,"likes":0,"liked":false,
            "replies":0,"is_reply":false,"reply_to":null,"seq":9}}"#;
        let Ok(LiveEvent::Post { post }) = serde_json::from_str(post) else {
            panic!("a post event");
        };
        assert_eq!(post_id_of(&post.text), Some(42));
        for (json, live) in [
            (r#"{"kind":"live","cursor":5,"resumed":false}"#, true),
            (r#"{"kind":"message","cursor":5,"message":{}}"#, false),
            (r#"{"kind":"topic_post","cursor":5,"post":{}}"#, false),
        ] {
            let event: LiveEvent = serde_json::from_str(json).expect(json);
            assert_eq!(matches!(event, LiveEvent::Live { cursor: 5 }), live, "{json}");
        }
        let closed: LiveEvent = serde_json::from_str(r#"{"kind":"closed","error":"gone","cursor":3}"#).expect("closed");
        assert!(matches!(closed, LiveEvent::Closed { error } if error == "gone"));
    }
}
