//! Timeline mode: shows the history and live posts of the users followed, and posts every
//! line typed. After a failover it reconnects, resumes after the last post it showed and
//! re-sends unacknowledged posts under their original ids, so nothing shows twice or goes
//! missing. `exit` or the end of input leaves timeline mode.

use crate::display;
use crate::session::Session;
use std::collections::{HashSet, VecDeque};
use std::io::Write;
use std::time::{Duration, Instant};
use tinysns_common::grpc::is_retryable;
use tinysns_common::proto::social::{
    NewPost, Status as Code, TimelineOpen, TimelineRequest, timeline_event, timeline_request,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// A source of input lines (stdin in the binary, anything in tests).
pub trait Lines {
    /// The next line without its end-of-line, or None at the end of input.
    fn next_line(&mut self) -> impl Future<Output = Option<String>>;
}

fn open(resume_after: u64) -> TimelineRequest {
    TimelineRequest {
        kind: Some(timeline_request::Kind::Open(TimelineOpen { resume_after })),
    }
}

fn post(post_id: u64, text: &str) -> TimelineRequest {
    TimelineRequest {
        kind: Some(timeline_request::Kind::Post(NewPost {
            post_id,
            text: text.to_string(),
        })),
    }
}

fn print(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// Runs timeline mode until `exit` or the end of input; Err if the server could not be
/// reached again within the retry window.
pub async fn run(session: &mut Session, input: &mut impl Lines) -> Result<(), tonic::Status> {
    let mut shown: HashSet<(u64, u64)> = HashSet::new();
    // Direct messages shown, by (sender, message id).
    let mut shown_messages: HashSet<(u64, u64)> = HashSet::new();
    let mut shown_topic_posts: HashSet<(String, u64)> = HashSet::new();
    let mut cursor = 0u64;
    let mut live = false;
    let mut unacked: VecDeque<(u64, String)> = VecDeque::new();
    let mut leaving = false;
    let mut down_since: Option<Instant> = None;
    loop {
        let (tx, rx) = mpsc::channel(256);
        // The channel is fresh and large enough for these, so the sends cannot block.
        let _ = tx.try_send(open(cursor));
        for (id, text) in &unacked {
            let _ = tx.send(post(*id, text)).await;
        }
        let mut client = session.client(Instant::now() + crate::session::RETRY_FOR).await?;
        let mut events = match client.timeline(ReceiverStream::new(rx)).await {
            Ok(r) => r.into_inner(),
            Err(status) if is_retryable(&status) => {
                retry_pause(session, &mut down_since, status)?;
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            Err(status) => return Err(status),
        };
        down_since = None;
        live = live && cursor > 0;
        loop {
            if leaving && live && unacked.is_empty() {
                return Ok(());
            }
            tokio::select! {
                event = events.message() => match event {
                    Ok(Some(event)) => match event.kind {
                        Some(timeline_event::Kind::Post(p)) => {
                            if shown.insert((p.author, p.post_id)) {
                                print(&display::post_line(&p));
                            }
                            if live {
                                cursor = cursor.max(p.seq);
                            }
                        }
                        Some(timeline_event::Kind::DirectMessage(m)) => {
                            let sender = m.sender.as_ref().map_or(0, |u| u.id);
                            if shown_messages.insert((sender, m.message_id)) {
                                print(&display::live_message_line(&m));
                            }
                            if live {
                                cursor = cursor.max(m.seq);
                            }
                        }
                        // Shown once, also when a resumed stream sends it again.
                        Some(timeline_event::Kind::TopicPost(tp)) if shown_topic_posts.insert((tp.topic.clone(), tp.seq)) => {
                            print(&display::live_topic_line(&tp));
                        }
                        Some(timeline_event::Kind::TopicPost(_)) => {}
                        Some(timeline_event::Kind::LiveFrom(from)) => {
                            cursor = cursor.max(from);
                            live = true;
                        }
                        Some(timeline_event::Kind::Ack(ack)) => {
                            unacked.retain(|(id, _)| *id != ack.post_id);
                            let status = Code::try_from(ack.status).unwrap_or(Code::FailureUnknown);
                            if status != Code::Success {
                                print(&format!("{}\n", display::status_line(status)));
                                eprintln!("post refused: {}", ack.message);
                            }
                        }
                        None => {}
                    },
                    Ok(None) => { session.reset(); break; }
                    Err(status) if is_retryable(&status) => {
                        retry_pause(session, &mut down_since, status)?;
                        break;
                    }
                    Err(status) => return Err(status),
                },
                line = input.next_line(), if !leaving => match line {
                    None => leaving = true,
                    Some(line) if line.trim().eq_ignore_ascii_case("exit") => leaving = true,
                    Some(line) if line.trim().is_empty() => {}
                    Some(line) => {
                        let id = rand::random::<u64>() >> 1;
                        unacked.push_back((id, line.clone()));
                        if tx.send(post(id, &line)).await.is_err() {
                            break;
                        }
                    }
                },
            }
        }
    }
}

/// Notes that the server went away; fails once it has been gone for the whole retry window.
fn retry_pause(
    session: &mut Session,
    down_since: &mut Option<Instant>,
    status: tonic::Status,
) -> Result<(), tonic::Status> {
    session.reset();
    let since = *down_since.get_or_insert_with(Instant::now);
    if since.elapsed() > crate::session::RETRY_FOR {
        return Err(status);
    }
    tracing::debug!(error = %status.message(), "timeline interrupted, reconnecting");
    Ok(())
}
