//! A live timeline that outlives its streams: when a stream breaks (a failover, a restarted
//! master), it finds the user's master again, resumes just after what it showed and re-sends
//! the posts still unacknowledged ([`crate::resume`] holds what that means). `tsc`, the
//! gateway, the test harness and the benchmark all read their timelines through it.

use crate::resume::{Event, Resume};
use crate::session::{Link, RETRY_FOR};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tinysns_common::backoff::Backoff;
use tinysns_common::grpc::is_retryable;
use tinysns_common::proto::social::{TimelineEvent, TimelineRequest};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

/// Requests a stream may queue before the server reads them.
const REQUESTS: usize = 256;

/// An open Timeline call.
pub struct Opened {
    /// The server that answers it (for reports).
    pub server: Arc<str>,
    pub events: Streaming<TimelineEvent>,
}

/// How a timeline reaches the user's master: a session's [`Link`], or the benchmark's
/// pooled connections.
pub trait Opener: Send + Sync {
    /// Opens the Timeline call on the master with `requests` (the open request first).
    fn open(
        &self,
        requests: ReceiverStream<TimelineRequest>,
    ) -> impl Future<Output = Result<Opened, tonic::Status>> + Send;
    /// The last stream broke: the next open finds the master again.
    fn reset(&self);
}

impl Opener for Link {
    async fn open(&self, requests: ReceiverStream<TimelineRequest>) -> Result<Opened, tonic::Status> {
        let (server, mut client) = self.attached(Instant::now() + RETRY_FOR).await?;
        let events = client.timeline(requests).await?.into_inner();
        Ok(Opened { server, events })
    }

    fn reset(&self) {
        Link::reset(self);
    }
}

/// How patiently a timeline reconnects.
#[derive(Debug, Clone, Copy)]
pub struct Patience {
    /// How long the master may stay unreachable before [`LiveTimeline::next`] fails.
    pub retry_for: Duration,
    /// The first pause between attempts (doubling, with jitter).
    pub first_pause: Duration,
    pub max_pause: Duration,
}

impl Default for Patience {
    fn default() -> Self {
        Self {
            retry_for: RETRY_FOR,
            first_pause: Duration::from_millis(20),
            max_pause: Duration::from_millis(500),
        }
    }
}

struct Stream {
    server: Arc<str>,
    requests: mpsc::Sender<TimelineRequest>,
    events: Streaming<TimelineEvent>,
}

/// One user's timeline, resumed across failovers. Every method is cancel-safe: a caller may
/// `select!` on [`Self::next`] beside other work.
pub struct LiveTimeline<O> {
    opener: O,
    state: Resume,
    stream: Option<Stream>,
    patience: Patience,
    backoff: Backoff,
    /// Since when no stream has been up (None while one is).
    down_since: Option<Instant>,
}

impl<O: Opener> LiveTimeline<O> {
    /// A timeline that opens on the first [`Self::next`]; `resume_after` is the last log
    /// position the user saw (0: start with the history).
    /// The user's own new posts show too (see [`Resume::show_own_posts`]).
    pub fn with_own_posts(mut self) -> Self {
        self.state.show_own_posts();
        self
    }

    /// Likes of the user's posts show too (see [`Resume::show_likes`]).
    pub fn with_likes(mut self) -> Self {
        self.state.show_likes();
        self
    }

    pub fn new(opener: O, resume_after: u64, patience: Patience) -> Self {
        Self {
            opener,
            state: Resume::new(resume_after),
            stream: None,
            backoff: Backoff::new(patience.first_pause, patience.max_pause),
            patience,
            down_since: None,
        }
    }

    /// The last log position shown live: where a later timeline of this user resumes.
    pub fn cursor(&self) -> u64 {
        self.state.cursor()
    }

    /// How many live posts and messages the server sent twice (shown once; see
    /// [`Resume::repeats`]).
    pub fn repeats(&self) -> u64 {
        self.state.repeats()
    }

    /// How many posts wait for their acknowledgement.
    pub fn unacked(&self) -> usize {
        self.state.unacked()
    }

    /// The server of the current stream, if one is up.
    pub fn server(&self) -> Option<&Arc<str>> {
        self.stream.as_ref().map(|s| &s.server)
    }

    /// Posts `text` under `post_id` (re-sent under the same id until acknowledged, so it is
    /// stored once). Its [`Event::Ack`] comes through [`Self::next`].
    pub async fn post(&mut self, post_id: u64, text: String) -> Result<(), crate::resume::Backlog> {
        let request = self.state.send(post_id, text)?;
        if let Some(stream) = &self.stream
            && stream.requests.send(request).await.is_err()
        {
            // The call has ended; the next stream sends the post again.
            tracing::debug!("timeline stream gone while posting");
        }
        Ok(())
    }

    /// The next thing the timeline shows. Fails only when the master has been unreachable
    /// for longer than [`Patience::retry_for`], or the server refuses the stream for good
    /// (the session ended).
    pub async fn next(&mut self) -> Result<Event, tonic::Status> {
        loop {
            let Some(stream) = &mut self.stream else {
                self.connect().await?;
                continue;
            };
            let failure = match stream.events.message().await {
                Ok(Some(event)) => {
                    if let Some(shown) = self.state.receive(event) {
                        return Ok(shown);
                    }
                    continue;
                }
                Ok(None) => tonic::Status::unavailable("the server ended the timeline"),
                Err(status) if is_retryable(&status) => status,
                Err(status) => return Err(status),
            };
            tracing::debug!(error = %failure.message(), "timeline interrupted, reconnecting");
            self.stream = None;
            self.opener.reset();
            self.down_since.get_or_insert_with(Instant::now);
            return Ok(Event::Reconnecting {
                error: failure.message().to_string(),
            });
        }
    }

    /// Opens a stream (once), pausing first if the last attempt failed.
    async fn connect(&mut self) -> Result<(), tonic::Status> {
        let (requests, rx) = mpsc::channel(REQUESTS.max(self.state.unacked() + 1));
        for request in self.state.opening() {
            // The channel is fresh and large enough for these.
            let _ = requests.try_send(request);
        }
        match self.opener.open(ReceiverStream::new(rx)).await {
            Ok(Opened { server, events }) => {
                self.stream = Some(Stream {
                    server,
                    requests,
                    events,
                });
                self.down_since = None;
                self.backoff.reset();
                Ok(())
            }
            Err(status) if is_retryable(&status) => {
                let since = *self.down_since.get_or_insert_with(Instant::now);
                if since.elapsed() > self.patience.retry_for {
                    return Err(status);
                }
                tracing::debug!(error = %status.message(), "timeline not open yet, retrying");
                self.opener.reset();
                tokio::time::sleep(self.backoff.next_delay()).await;
                Ok(())
            }
            Err(status) => Err(status),
        }
    }
}
