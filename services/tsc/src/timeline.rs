//! Timeline mode: shows the history and live posts of the users followed, and posts every
//! line typed. The timeline itself (resuming after a failover without repeats or gaps,
//! re-sending unacknowledged posts) is `tinysns_client::live`'s; this module reads the lines
//! and prints what the timeline shows. `exit` or the end of input leaves timeline mode.

use crate::display;
use std::io::Write;
use tinysns_client::live::{LiveTimeline, Patience};
use tinysns_client::resume::Event;
use tinysns_client::session::Session;
use tinysns_common::proto::social::Status as Code;

/// A source of input lines (stdin in the binary, anything in tests).
pub trait Lines {
    /// The next line without its end-of-line, or None at the end of input.
    fn next_line(&mut self) -> impl Future<Output = Option<String>>;
}

fn print(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// Prints what the timeline shows, the classic way.
fn show(event: Event) {
    match event {
        Event::Post(post) => print(&display::post_line(&post)),
        Event::DirectMessage(message) => print(&display::live_message_line(&message)),
        Event::TopicPost(post) => print(&display::live_topic_line(&post)),
        Event::RoomMessage(message) => print(&display::live_room_line(&message)),
        Event::RoomClosed(room) => print(&format!("[{room}] the room was deleted\n")),
        // (tsc's timeline does not ask for likes.)
        Event::Like(_) => {}
        Event::Ack(ack) => {
            let status = Code::try_from(ack.status).unwrap_or(Code::FailureUnknown);
            if status != Code::Success {
                print(&format!("{}\n", display::status_line(status)));
                eprintln!("post refused: {}", ack.message);
            }
        }
        Event::Live { .. } => {}
        Event::Reconnecting { error } => tracing::debug!(%error, "timeline interrupted, reconnecting"),
    }
}

/// Runs timeline mode until `exit` or the end of input (once every post typed is
/// acknowledged); Err if the server could not be reached again within the retry window.
pub async fn run(session: &Session, input: &mut impl Lines) -> Result<(), tonic::Status> {
    // The user's own posts made elsewhere (the web, another terminal) show too; those typed
    // here do not, as in the classic client.
    let mut timeline = LiveTimeline::new(session.link().clone(), 0, Patience::default()).with_own_posts();
    let mut leaving = false;
    let mut live = false;
    loop {
        if leaving && live && timeline.unacked() == 0 {
            return Ok(());
        }
        tokio::select! {
            event = timeline.next() => {
                let event = event?;
                match &event {
                    Event::Live { .. } => live = true,
                    Event::Reconnecting { .. } => live = false,
                    _ => {}
                }
                show(event);
            }
            line = input.next_line(), if !leaving => match line {
                None => leaving = true,
                Some(line) if line.trim().eq_ignore_ascii_case("exit") => leaving = true,
                Some(line) if line.trim().is_empty() => {}
                Some(line) => {
                    if let Err(backlog) = timeline.post(rand::random::<u64>() >> 1, line).await {
                        eprintln!("{backlog}");
                    }
                }
            },
        }
    }
}
