//! The HTTP API's JSON shapes, converted from the gRPC replies. Posts are named
//! `author/number` (as `tsc` names them); the random 63-bit ids the servers use to make
//! retries idempotent stay inside (JavaScript numbers cannot hold them).

use serde::{Deserialize, Serialize};
use tinysns_common::proto::social::{
    Conversation, DirectMessageView, Post, PostName, Profile, TopicPost, TopicSummary, UserRef,
};
use utoipa::ToSchema;

#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    pub id: u64,
    pub username: String,
}

impl From<UserRef> for UserView {
    fn from(u: UserRef) -> Self {
        Self {
            id: u.id,
            username: u.username,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PostView {
    /// `author/number`: how the post is named in every other call.
    pub name: String,
    pub author: String,
    pub number: u64,
    pub text: String,
    pub timestamp_ms: i64,
    pub likes: u64,
    pub liked: bool,
    pub replies: u64,
    /// Whether it answers another post.
    pub is_reply: bool,
    /// The post it answers, as `author/number`, when known: a live event names the answered
    /// post's author by id only, and the post's thread names it.
    pub reply_to: Option<String>,
    /// Its position in the reader's timeline (a resume cursor), when it came from one.
    pub seq: u64,
}

fn post_name(name: &PostName) -> Option<String> {
    (!name.author_name.is_empty()).then(|| format!("{}/{}", name.author_name, name.number))
}

pub(crate) fn display_name(username: &str, id: u64) -> String {
    if username.is_empty() {
        id.to_string()
    } else {
        username.to_string()
    }
}

impl From<Post> for PostView {
    fn from(p: Post) -> Self {
        let author = display_name(&p.author_name, p.author);
        Self {
            name: format!("{author}/{}", p.number),
            author,
            number: p.number,
            text: p.text,
            timestamp_ms: p.timestamp_ms,
            likes: p.likes,
            liked: p.liked,
            replies: p.replies,
            is_reply: p.reply_to.is_some(),
            reply_to: p.reply_to.as_ref().and_then(post_name),
            seq: p.seq,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TopicPostView {
    pub topic: String,
    /// The post's number within the topic.
    pub seq: u64,
    pub post: Option<PostView>,
}

impl From<TopicPost> for TopicPostView {
    fn from(t: TopicPost) -> Self {
        Self {
            topic: t.topic,
            seq: t.seq,
            post: t.post.map(PostView::from),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MessageView {
    pub from: String,
    pub to: String,
    pub text: String,
    pub timestamp_ms: i64,
    /// Orders the conversation; pages go back from one.
    pub stamp: u64,
}

fn user_name(u: Option<&UserRef>) -> String {
    u.map(|u| display_name(&u.username, u.id)).unwrap_or_default()
}

impl From<DirectMessageView> for MessageView {
    fn from(m: DirectMessageView) -> Self {
        Self {
            from: user_name(m.sender.as_ref()),
            to: user_name(m.recipient.as_ref()),
            text: m.text,
            timestamp_ms: m.timestamp_ms,
            stamp: m.stamp,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConversationView {
    pub with: String,
    pub last_ms: i64,
    pub unread: u64,
}

impl From<Conversation> for ConversationView {
    fn from(c: Conversation) -> Self {
        Self {
            with: user_name(c.peer.as_ref()),
            last_ms: c.last_ms,
            unread: c.unread,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProfileView {
    pub id: u64,
    pub username: String,
    pub display_name: String,
    pub bio: String,
    pub followers: u64,
    pub following: u64,
    pub posts: u64,
}

impl From<Profile> for ProfileView {
    fn from(p: Profile) -> Self {
        Self {
            id: p.user_id,
            username: p.username,
            display_name: p.display_name,
            bio: p.bio,
            followers: p.followers,
            following: p.following,
            posts: p.posts,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TopicView {
    pub topic: String,
    pub count: u64,
    pub last_seq: u64,
    /// Posts of the last hour.
    pub recent: u64,
    pub subscribed: bool,
}

impl From<TopicSummary> for TopicView {
    fn from(t: TopicSummary) -> Self {
        Self {
            topic: t.topic,
            count: t.count,
            last_seq: t.last_seq,
            recent: t.recent,
            subscribed: t.subscribed,
        }
    }
}

/// Who is logged in, and the CSRF token every state-changing request must carry in the
/// `X-CSRF-Token` header.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionView {
    pub user: u64,
    pub username: String,
    pub csrf: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CredentialsBody {
    pub username: String,
    pub password: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PostBody {
    pub text: String,
    /// The post this answers, `author/number`.
    #[serde(default)]
    pub reply_to: Option<String>,
    /// Topics besides the text's `#tags`.
    #[serde(default)]
    pub topics: Vec<String>,
    /// Chosen by the page (a decimal string up to 2^63 - 1), so that a retried request
    /// stores the post once. A random one when absent.
    #[serde(default)]
    pub id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PublishedView {
    pub name: String,
    pub number: u64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageBody {
    pub to: String,
    pub text: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfileBody {
    pub display_name: Option<String>,
    pub bio: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteAccountBody {
    /// The account's username, to confirm.
    pub confirm: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Done {
    pub message: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PostsPage {
    pub posts: Vec<PostView>,
    /// Where the next (older) page starts; absent at the end.
    pub next: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TimelinePage {
    /// The newest posts of the users followed, newest first.
    pub posts: Vec<PostView>,
    /// Where the live stream (`/api/live?after=`) continues without a gap.
    pub cursor: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ThreadView {
    pub post: Option<PostView>,
    pub replies: Vec<PostView>,
    pub next: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LikesView {
    pub count: u64,
    pub liked: bool,
    pub users: Vec<UserView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UsersView {
    pub users: Vec<UserView>,
    pub followers: Vec<UserView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TopicsView {
    pub topics: Vec<TopicView>,
    pub subscriptions: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryView {
    pub posts: Vec<TopicPostView>,
    /// `from` of the next page in the same direction; absent at the end.
    pub next: Option<u64>,
    pub last_seq: u64,
    pub count: u64,
    pub subscribed: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InboxView {
    pub conversations: Vec<ConversationView>,
    pub unread: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConversationPage {
    /// Newest first.
    pub messages: Vec<MessageView>,
    pub unread: u64,
}

/// What the live WebSocket sends, one JSON object per message. Every message carries the
/// stream's `cursor`: a page that reconnects (to any gateway) passes it as `after` and
/// continues without a gap or a repeat.
#[derive(Debug, Serialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LiveEvent {
    Post {
        post: PostView,
        cursor: u64,
    },
    Message {
        message: MessageView,
        cursor: u64,
    },
    TopicPost {
        post: TopicPostView,
        cursor: u64,
    },
    RoomMessage {
        message: crate::rooms::RoomMessageJson,
        cursor: u64,
    },
    /// Someone liked one of the user's posts (`<user>/<number>`), or stopped.
    Like {
        number: u64,
        by: String,
        liked: bool,
        cursor: u64,
    },
    /// Who is present in the room the page shows (`room_watch`), when it changed.
    Presence {
        room: String,
        members: Vec<crate::rooms::MemberView>,
        cursor: u64,
    },
    /// The user's unread direct messages, after each message of theirs.
    Unread {
        count: u64,
        cursor: u64,
    },
    /// One of the user's rooms was deleted.
    RoomClosed {
        room: String,
        cursor: u64,
    },
    /// History is over; what follows is live. `resumed`: after a reconnection, nothing missed.
    Live {
        cursor: u64,
        resumed: bool,
    },
    /// The servers failed over; the stream is reconnecting.
    Reconnecting {
        cursor: u64,
    },
    /// The stream ended for good (the session ended, or no server for too long).
    Closed {
        error: String,
        cursor: u64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_names_its_post_only_when_the_server_named_the_author() {
        let reply = |author_name: &str| Post {
            author: 2,
            author_name: "bob".into(),
            number: 5,
            reply_to: Some(PostName {
                author: 3,
                author_name: author_name.into(),
                number: 1,
            }),
            ..Default::default()
        };
        let named = PostView::from(reply("alice"));
        assert_eq!(
            (named.name.as_str(), named.is_reply, named.reply_to.as_deref()),
            ("bob/5", true, Some("alice/1"))
        );
        // A live event names the author by id; an id is no username (usernames may be digits).
        let unnamed = PostView::from(reply(""));
        assert_eq!((unnamed.is_reply, unnamed.reply_to), (true, None));
        let plain = PostView::from(Post::default());
        assert!(!plain.is_reply && plain.reply_to.is_none());
    }
}
