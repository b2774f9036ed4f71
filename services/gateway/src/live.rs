//! The live WebSocket: one per browser session, fed by the client library's
//! [`LiveTimeline`], so a failover only shows as `reconnecting` and the stream resumes
//! without a gap or a repeat. Every message carries the cursor; a page that loses the socket
//! (or the gateway replica it talked to) opens a new one with `?after=<cursor>`.

use crate::room_watch::{Look, RoomWatch};
use crate::rooms::MemberView;
use crate::state::{Authed, Gateway};
use crate::views::{LiveEvent, MessageView, PostView, TopicPostView, display_name};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::Response;
use serde::Deserialize;
use std::sync::Arc;
use tinysns_client::live::{LiveTimeline, Patience};
use tinysns_client::resume::Event;
use tinysns_client::session::Link;
use tinysns_common::proto::social::{ReadRoomRequest, Status as Code};
use tinysns_common::shutdown::Shutdown;

/// The page sends control frames and which room it shows (`room_watch`); anything larger
/// is not a page of ours.
const MAX_INCOMING: usize = 1024;
/// Close code "going away": the gateway stops; the page reconnects (to another replica).
const GOING_AWAY: u16 = 1001;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct LiveQuery {
    /// The last `cursor` the page received (absent: start with the history).
    pub after: Option<u64>,
}

/// What the page is sent for a timeline event (None: nothing, e.g. an acknowledgement).
pub fn view(event: Event, cursor: u64) -> Option<LiveEvent> {
    Some(match event {
        Event::Post(post) => LiveEvent::Post {
            post: PostView::from(post),
            cursor,
        },
        Event::DirectMessage(message) => LiveEvent::Message {
            message: MessageView::from(message),
            cursor,
        },
        Event::TopicPost(post) => LiveEvent::TopicPost {
            post: TopicPostView::from(post),
            cursor,
        },
        Event::RoomMessage(message) => LiveEvent::RoomMessage {
            message: crate::rooms::RoomMessageJson::from(message),
            cursor,
        },
        Event::RoomClosed(room) => LiveEvent::RoomClosed { room, cursor },
        Event::Like(like) => LiveEvent::Like {
            number: like.post.map_or(0, |p| p.number),
            by: like.liker.map(|u| display_name(&u.username, u.id)).unwrap_or_default(),
            liked: like.liked,
            cursor,
        },
        Event::Live { from, resumed } => LiveEvent::Live {
            cursor: cursor.max(from),
            resumed,
        },
        Event::Reconnecting { .. } => LiveEvent::Reconnecting { cursor },
        Event::Ack(_) => return None,
    })
}

#[utoipa::path(get, path = "/api/live", params(LiveQuery),
    responses((status = 101, description = "a WebSocket of `LiveEvent` JSON messages"),
              (status = 401, body = crate::error::ErrorBody)))]
pub async fn live(
    State(gateway): State<Arc<Gateway>>,
    authed: Authed,
    query: Result<Query<LiveQuery>, axum::extract::rejection::QueryRejection>,
    upgrade: WebSocketUpgrade,
) -> Result<Response, crate::error::ApiError> {
    let after = query
        .map_err(|r| crate::error::ApiError::invalid(r.body_text()))?
        .0
        .after
        .unwrap_or(0);
    let slot = gateway.live_slot(&authed.credential)?;
    let shutdown = gateway.shutdown.clone();
    Ok(upgrade
        .max_message_size(MAX_INCOMING)
        .on_upgrade(move |socket| async move {
            stream(gateway, authed.link, after, socket, shutdown).await;
            drop(slot);
        }))
}

async fn stream(gateway: Arc<Gateway>, link: Link, after: u64, mut socket: WebSocket, shutdown: Shutdown) {
    let metrics = gateway.metrics.clone();
    metrics.live_streams.inc();
    let patience = Patience {
        retry_for: gateway.live_retry_for,
        ..Patience::default()
    };
    let mut timeline = LiveTimeline::new(link.clone(), after, patience)
        .with_own_posts()
        .with_likes();
    let mut ping = tokio::time::interval(gateway.live_ping);
    let mut presence_check = tokio::time::interval(gateway.live_presence_every);
    let mut watch = RoomWatch::default();
    let mut unanswered = 0u32;
    'stream: loop {
        let outgoing: Vec<LiveEvent> = tokio::select! {
            event = timeline.next() => match event {
                Ok(event) => {
                    if matches!(event, Event::Reconnecting { .. }) {
                        metrics.live_reconnects.inc();
                    }
                    let message = matches!(event, Event::DirectMessage(_));
                    let mut out: Vec<LiveEvent> = view(event, timeline.cursor()).into_iter().collect();
                    if message {
                        out.extend(unread(&link, timeline.cursor()).await);
                    }
                    out
                }
                Err(status) => vec![LiveEvent::Closed { error: status.message().to_string(), cursor: timeline.cursor() }],
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Pong(_))) => { unanswered = 0; continue; }
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                Some(Ok(Message::Text(text))) => match watch.hear(&text) {
                    Ok(Some(look)) => presence(&link, &mut watch, look, timeline.cursor()).await.into_iter().collect(),
                    Ok(None) => continue,
                    // Not what a page of ours says.
                    Err(_) => break,
                },
                Some(Ok(_)) => continue,
            },
            _ = presence_check.tick() => match watch.check() {
                Some(look) => presence(&link, &mut watch, look, timeline.cursor()).await.into_iter().collect(),
                None => continue,
            },
            _ = ping.tick() => {
                unanswered += 1;
                if unanswered > 2 || socket.send(Message::Ping(Default::default())).await.is_err() {
                    break;
                }
                continue;
            }
            _ = shutdown.wait() => {
                let close = CloseFrame { code: GOING_AWAY, reason: "the gateway is stopping".into() };
                let _ = socket.send(Message::Close(Some(close))).await;
                break;
            }
        };
        for event in outgoing {
            let closing = matches!(event, LiveEvent::Closed { .. });
            let Ok(text) = serde_json::to_string(&event) else {
                break 'stream;
            };
            if socket.send(Message::Text(text.into())).await.is_err() || closing {
                break 'stream;
            }
            metrics.live_events.inc();
        }
    }
    metrics.live_streams.dec();
}

/// Who is present in the room `look` names, if the user is a member and it changed since
/// the socket last said.
async fn presence(link: &Link, watch: &mut RoomWatch, look: Look, cursor: u64) -> Option<LiveEvent> {
    let request = ReadRoomRequest {
        room: look.room.clone(),
        before_seq: 0,
        limit: 1,
        present: look.present,
    };
    let reply = link.read_room(request).await.ok()?;
    if reply.status != Code::Success as i32 || !reply.member {
        return None;
    }
    let members: Vec<MemberView> = reply.members.into_iter().map(MemberView::from).collect();
    let now = members.iter().map(|m| (m.user.username.clone(), m.present)).collect();
    watch.changed(&look.room, now).then_some(LiveEvent::Presence {
        room: look.room,
        members,
        cursor,
    })
}

/// The user's unread direct messages now.
async fn unread(link: &Link, cursor: u64) -> Option<LiveEvent> {
    let inbox = link.inbox().await.ok()?;
    (inbox.status == Code::Success as i32).then_some(LiveEvent::Unread {
        count: inbox.unread_total,
        cursor,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tinysns_common::proto::social::{Post, PostAck};

    #[test]
    fn every_event_carries_the_cursor_to_resume_from() {
        let post = Post {
            author: 3,
            author_name: "alice".into(),
            number: 2,
            seq: 41,
            text: "<script>alert(1)</script>".into(),
            ..Default::default()
        };
        let json = serde_json::to_value(view(Event::Post(post), 41).unwrap()).unwrap();
        assert_eq!(json["kind"], "post");
        assert_eq!(json["cursor"], 41);
        assert_eq!(json["post"]["name"], "alice/2");
        assert_eq!(
            json["post"]["text"], "<script>alert(1)</script>",
            "text is data, escaped by the page"
        );
        let live = serde_json::to_value(
            view(
                Event::Live {
                    from: 50,
                    resumed: true,
                },
                0,
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(
            (
                live["kind"].as_str(),
                live["cursor"].as_u64(),
                live["resumed"].as_bool()
            ),
            (Some("live"), Some(50), Some(true))
        );
        let again = serde_json::to_value(view(Event::Reconnecting { error: "x".into() }, 50).unwrap()).unwrap();
        assert_eq!(again["kind"], "reconnecting");
        assert!(view(Event::Ack(PostAck::default()), 50).is_none());
    }
}
