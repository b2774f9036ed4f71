//! Output, byte for byte as the classic client prints it.

use chrono::{Local, TimeZone};
use tinysns_client::session::Listing;
use tinysns_common::proto::social::{
    Conversation, DirectMessageView, HistoryReply, Post, Profile, RoomMessageView, Status, TopicPost, TopicSummary,
    UserRef,
};

pub const BANNER: &str = "\n========= TINY SNS CLIENT =========\n Command Lists and Format:\n FOLLOW <username>\n UNFOLLOW <username>\n LIST\n TIMELINE\n=====================================\n";
pub const PROMPT: &str = "Cmd> ";
/// HELP: the classic commands, then the newer ones, in the banner's style.
pub const HELP: &str = "\n========= TINY SNS CLIENT =========\n Command Lists and Format:\n FOLLOW <username>\n UNFOLLOW <username>\n LIST\n TIMELINE\n PASSWORD\n PROFILE [<username>]\n PROFILE NAME <display name>\n PROFILE BIO <bio>\n POSTS [<username>]\n LIKE <post>\n UNLIKE <post>\n LIKES <post>\n REPLY <post> <text>\n THREAD <post> [<page>]\n DELETE <post>\n DM <username> <text>\n INBOX\n READ <username>\n BLOCK <username>\n UNBLOCK <username>\n TOPIC [<topic> [<text>]]\n SUBSCRIBE <topic>\n UNSUBSCRIBE <topic>\n HISTORY <topic> [<from>|+<from>] [<n>]\n DELETEACCOUNT\n HELP\n (a <post> is named <author>/<number>, as POSTS shows; #tags in a post put it in topics)\n=====================================\n";
pub const IN_TIMELINE: &str = "Now you are in the timeline";
pub const CONFIRM_DELETION: &str = "Deleting your account removes your posts, likes, follows and messages in every cluster.\nType your username to confirm: ";

/// The classic message for a reply status.
pub fn status_line(status: Status) -> &'static str {
    match status {
        Status::Success => "Command completed successfully",
        Status::FailureAlreadyExists => "Input username already exists, command failed",
        Status::FailureNotExists => "Input username does not exists, command failed",
        Status::FailureInvalidUsername => "Command failed with invalid username",
        Status::FailureNotAFollower => "Command failed with not a follower",
        Status::FailureInvalid => "Command failed with invalid command",
        Status::FailureUnknown => "Command failed with unknown reason",
        Status::FailureUpgrading => "Command failed: the system is being upgraded, try again later",
        Status::Unspecified => "Invalid status",
    }
}

/// The classic message after FOLLOW (`follow`) or UNFOLLOW. The server's statuses are
/// finer than the classic client's; these are the messages the classic client showed:
/// following yourself or someone you follow already "exists"; an unknown user, and
/// unfollowing anyone you do not follow, is an "invalid username".
pub fn relation_line(follow: bool, status: Status) -> &'static str {
    match (follow, status) {
        (_, Status::Success) => status_line(Status::Success),
        (true, Status::FailureInvalid | Status::FailureAlreadyExists) => status_line(Status::FailureAlreadyExists),
        (true, Status::FailureNotExists | Status::FailureInvalidUsername) => {
            status_line(Status::FailureInvalidUsername)
        }
        (false, Status::FailureNotAFollower | Status::FailureNotExists | Status::FailureInvalidUsername) => {
            status_line(Status::FailureInvalidUsername)
        }
        (false, Status::FailureInvalid) => status_line(Status::FailureInvalidUsername),
        (_, other) => status_line(other),
    }
}

/// A user as the classic output shows it: the username in password mode, else the id.
fn shown(user: &UserRef) -> String {
    if user.username.is_empty() {
        user.id.to_string()
    } else {
        user.username.clone()
    }
}

fn joined(users: &[UserRef]) -> String {
    users.iter().map(|u| format!("{}, ", shown(u))).collect()
}

/// The lines PROFILE prints after its status line: who, the bio if any, the counts.
pub fn profile_lines(profile: &Profile) -> String {
    let who = if profile.username.is_empty() {
        format!("user {}", profile.user_id)
    } else {
        profile.username.clone()
    };
    let mut out = if profile.display_name.is_empty() {
        format!("{who}\n")
    } else {
        format!("{who} ({})\n", profile.display_name)
    };
    if !profile.bio.is_empty() {
        out.push_str(&format!("Bio: {}\n", profile.bio));
    }
    out.push_str(&format!(
        "Followers: {}, Following: {}, Posts: {}\n",
        profile.followers, profile.following, profile.posts
    ));
    out
}

/// What POSTS prints after its status line: each post's name and likes, then the post as
/// the timeline shows it; newest first.
pub fn posts_lines(posts: &[Post]) -> String {
    if posts.is_empty() {
        return "No posts\n".to_string();
    }
    posts
        .iter()
        .map(|post| format!("{}\n{}", post_header(post), post_line(post)))
        .collect()
}

/// `[alice/2] 1 like, you like it, 2 replies, reply to bob/3`: a post's name and counts.
pub fn post_header(post: &Post) -> String {
    let mut parts = vec![plural(post.likes, "like")];
    if post.liked {
        parts.push("you like it".into());
    }
    if post.replies > 0 {
        parts.push(plural_replies(post.replies));
    }
    if let Some(parent) = &post.reply_to {
        parts.push(format!(
            "reply to {}",
            name_of(parent.author, &parent.author_name, parent.number)
        ));
    }
    format!("[{}] {}", post_name(post), parts.join(", "))
}

fn plural_replies(count: u64) -> String {
    if count == 1 {
        "1 reply".into()
    } else {
        format!("{count} replies")
    }
}

/// What THREAD prints after its status line: the post, then a page of its replies, and how
/// to see the next page.
pub fn thread_lines(post: &Post, replies: &[Post], next: Option<String>) -> String {
    let mut out = format!("{}\n{}", post_header(post), post_line(post));
    if replies.is_empty() {
        out.push_str("No replies\n");
    } else {
        out.push_str("Replies:\n");
        out.push_str(&posts_lines(replies));
    }
    if let Some(next) = next {
        out.push_str(&format!("More replies: {next}\n"));
    }
    out
}

fn name_of(author: u64, author_name: &str, number: u64) -> String {
    if author_name.is_empty() {
        format!("{author}/{number}")
    } else {
        format!("{author_name}/{number}")
    }
}

/// `alice/17`: the name LIKE, UNLIKE and LIKES take.
pub fn post_name(post: &Post) -> String {
    name_of(post.author, &post.author_name, post.number)
}

fn plural(count: u64, noun: &str) -> String {
    if count == 1 {
        format!("1 {noun}")
    } else {
        format!("{count} {noun}s")
    }
}

/// What LIKES prints after its status line: the count, then who.
pub fn likes_lines(count: u64, liked: bool, likers: &[UserRef]) -> String {
    let liked = if liked { ", you like it" } else { "" };
    format!("{}{liked}\nLiked by: {}\n", plural(count, "like"), joined(likers))
}

/// What INBOX prints after its status line: the unread total, then each conversation, most
/// recent first.
pub fn inbox_lines(conversations: &[Conversation], unread_total: u64) -> String {
    let mut out = format!("Unread: {unread_total}\n");
    if conversations.is_empty() {
        out.push_str("No conversations\n");
    }
    for c in conversations {
        let peer = c.peer.as_ref().map(shown).unwrap_or_default();
        let unread = if c.unread > 0 {
            format!(", {} unread", c.unread)
        } else {
            String::new()
        };
        out.push_str(&format!("{peer} (last {}){unread}\n", ctime(c.last_ms)));
    }
    out
}

/// What READ prints after its status line: the messages oldest first, each as a timeline
/// line of its sender.
pub fn conversation_lines(messages: &[DirectMessageView]) -> String {
    if messages.is_empty() {
        return "No messages\n".to_string();
    }
    messages
        .iter()
        .rev()
        .map(|m| {
            let sender = m.sender.as_ref().map(shown).unwrap_or_default();
            format!("{sender} ({}) >> {}\n", ctime(m.timestamp_ms), m.text)
        })
        .collect()
}

/// A direct message arriving in timeline mode (posts keep the classic line).
pub fn live_message_line(m: &DirectMessageView) -> String {
    let sender = m.sender.as_ref().map(shown).unwrap_or_default();
    format!("DM from {sender} ({}) >> {}\n", ctime(m.timestamp_ms), m.text)
}

/// A room's message as it arrives live in timeline mode.
pub fn live_room_line(m: &RoomMessageView) -> String {
    let sender = m.sender.as_ref().map(shown).unwrap_or_default();
    format!(
        "[{} #{}] {sender} ({}) >> {}\n",
        m.room,
        m.seq,
        ctime(m.timestamp_ms),
        m.text
    )
}

/// What HISTORY (and TOPIC <topic>) print after the status line: the topic's counts, its
/// posts with their numbers, and how to see the next page.
pub fn history_lines(topic: &str, reply: &HistoryReply, next: Option<String>) -> String {
    let subscribed = if reply.subscribed { ", you subscribe" } else { "" };
    let mut out = format!(
        "#{topic}: {}, newest #{}{subscribed}\n",
        plural(reply.count, "post"),
        reply.last_seq
    );
    if reply.posts.is_empty() {
        out.push_str("No posts\n");
    }
    for tp in &reply.posts {
        if let Some(post) = &tp.post {
            out.push_str(&format!("#{} {}\n{}", tp.seq, post_header(post), post_line(post)));
        }
    }
    if let Some(next) = next {
        out.push_str(&format!("More: {next}\n"));
    }
    out
}

/// What TOPIC prints after its status line: the active topics, all topics, subscriptions.
pub fn topics_lines(active: &[TopicSummary], all: &[TopicSummary], subscriptions: &[String]) -> String {
    let line = |t: &TopicSummary| {
        let mark = if t.subscribed { " (subscribed)" } else { "" };
        format!(
            "#{} {}, {} in the last hour{mark}\n",
            t.topic,
            plural(t.count, "post"),
            t.recent
        )
    };
    let mut out = String::from("Active in the last hour:\n");
    if active.is_empty() {
        out.push_str("None\n");
    }
    active.iter().for_each(|t| out.push_str(&line(t)));
    out.push_str("Topics:\n");
    if all.is_empty() {
        out.push_str("None\n");
    }
    all.iter().for_each(|t| out.push_str(&line(t)));
    let names: Vec<String> = subscriptions.iter().map(|t| format!("#{t}")).collect();
    out.push_str(&format!("Subscribed: {}\n", names.join(", ")));
    out
}

/// A post of a subscribed topic as it arrives on the timeline.
pub fn live_topic_line(tp: &TopicPost) -> String {
    let post = tp.post.clone().unwrap_or_default();
    format!("#{} {} [{}]\n{}", tp.topic, tp.seq, post_name(&post), post_line(&post))
}

/// The two lines LIST prints after its status line.
pub fn list_lines(listing: &Listing) -> String {
    format!(
        "All users: {}\nFollowers: {}\n",
        joined(&listing.all_users),
        joined(&listing.followers)
    )
}

/// `ctime(3)` without its trailing newline, in local time: `Sun Nov 22 01:53:24 2026`.
pub fn ctime(timestamp_ms: i64) -> String {
    match Local.timestamp_millis_opt(timestamp_ms).single() {
        Some(t) => t.format("%a %b %e %H:%M:%S %Y").to_string(),
        None => timestamp_ms.to_string(),
    }
}

pub fn post_line(post: &Post) -> String {
    let author = if post.author_name.is_empty() {
        post.author.to_string()
    } else {
        post.author_name.clone()
    };
    format!("{author} ({}) >> {}\n", ctime(post.timestamp_ms), post.text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tinysns_common::proto::social::PostName;

    fn ids(ids: &[u64]) -> Vec<UserRef> {
        ids.iter()
            .map(|&id| UserRef {
                id,
                username: String::new(),
            })
            .collect()
    }

    #[test]
    fn posts_show_their_names_and_likes() {
        let post = |number, likes, liked| Post {
            author: 3,
            post_id: 99,
            text: "hello".into(),
            timestamp_ms: 0,
            seq: 5,
            author_name: "alice".into(),
            number,
            likes,
            liked,
            reply_to: None,
            replies: 0,
        };
        let text = posts_lines(&[post(2, 1, true), post(1, 0, false)]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0], "[alice/2] 1 like, you like it");
        assert!(lines[1].starts_with("alice (") && lines[1].ends_with(") >> hello"));
        assert_eq!(lines[2], "[alice/1] 0 likes");
        assert_eq!(posts_lines(&[]), "No posts\n");
        let reply = Post {
            replies: 2,
            reply_to: Some(PostName {
                author: 7,
                author_name: String::new(),
                number: 3,
            }),
            ..post(4, 0, false)
        };
        assert_eq!(post_header(&reply), "[alice/4] 0 likes, 2 replies, reply to 7/3");
        let thread = thread_lines(&post(1, 0, false), &[reply], Some("THREAD alice/1 17-3-4".into()));
        let lines: Vec<&str> = thread.lines().collect();
        assert_eq!(lines[2], "Replies:");
        assert_eq!(lines[3], "[alice/4] 0 likes, 2 replies, reply to 7/3");
        assert_eq!(lines[5], "More replies: THREAD alice/1 17-3-4");
        assert!(thread_lines(&post(1, 0, false), &[], None).ends_with("No replies\n"));
        assert_eq!(likes_lines(2, false, &ids(&[4, 9])), "2 likes\nLiked by: 4, 9, \n");
    }

    #[test]
    fn inbox_and_conversations() {
        let alice = UserRef {
            id: 3,
            username: "alice".into(),
        };
        let conversations = [Conversation {
            peer: Some(alice.clone()),
            last_ms: 0,
            last_stamp: 9,
            unread: 2,
        }];
        let text = inbox_lines(&conversations, 2);
        assert!(text.starts_with("Unread: 2\nalice (last "), "{text}");
        assert!(text.ends_with("), 2 unread\n"), "{text}");
        assert_eq!(inbox_lines(&[], 0), "Unread: 0\nNo conversations\n");
        let message = |text: &str| DirectMessageView {
            sender: Some(alice.clone()),
            recipient: None,
            text: text.into(),
            timestamp_ms: 0,
            stamp: 1,
            message_id: 1,
            seq: 0,
        };
        let lines = conversation_lines(&[message("second"), message("first")]);
        let lines: Vec<&str> = lines.lines().collect();
        assert!(lines[0].starts_with("alice (") && lines[0].ends_with(">> first"));
        assert!(lines[1].ends_with(">> second"));
        assert_eq!(conversation_lines(&[]), "No messages\n");
        let live = live_message_line(&message("psst"));
        assert!(
            live.starts_with("DM from alice (") && live.ends_with(") >> psst\n"),
            "{live}"
        );
    }

    #[test]
    fn list_format_matches_the_classic_client() {
        let listing = Listing {
            all_users: ids(&[1, 2, 3]),
            followers: ids(&[2]),
        };
        assert_eq!(list_lines(&listing), "All users: 1, 2, 3, \nFollowers: 2, \n");
        let empty = Listing {
            all_users: ids(&[1]),
            followers: vec![],
        };
        assert_eq!(list_lines(&empty), "All users: 1, \nFollowers: \n");
        let named = Listing {
            all_users: vec![UserRef {
                id: 3,
                username: "alice".into(),
            }],
            followers: vec![],
        };
        assert_eq!(list_lines(&named), "All users: alice, \nFollowers: \n");
    }

    #[test]
    fn follow_and_unfollow_show_the_classic_messages() {
        const EXISTS: &str = "Input username already exists, command failed";
        const INVALID: &str = "Command failed with invalid username";
        // FOLLOW <self>, FOLLOW <someone followed already>.
        assert_eq!(relation_line(true, Status::FailureInvalid), EXISTS);
        assert_eq!(relation_line(true, Status::FailureAlreadyExists), EXISTS);
        // FOLLOW <unknown>, FOLLOW <malformed>.
        assert_eq!(relation_line(true, Status::FailureNotExists), INVALID);
        assert_eq!(relation_line(true, Status::FailureInvalidUsername), INVALID);
        // UNFOLLOW <not followed>, <unknown>, <malformed>, <self>.
        for status in [
            Status::FailureNotAFollower,
            Status::FailureNotExists,
            Status::FailureInvalidUsername,
            Status::FailureInvalid,
        ] {
            assert_eq!(relation_line(false, status), INVALID, "{status:?}");
        }
        assert_eq!(relation_line(false, Status::Success), "Command completed successfully");
    }

    #[test]
    fn posts_show_author_ctime_and_text() {
        let post = Post {
            author: 7,
            text: "hello".into(),
            timestamp_ms: 0,
            ..Default::default()
        };
        let line = post_line(&post);
        assert!(line.starts_with("7 ("), "{line}");
        let named = Post {
            author_name: "alice".into(),
            ..post.clone()
        };
        assert!(post_line(&named).starts_with("alice ("));
        assert!(line.ends_with(") >> hello\n"), "{line}");
        // ctime: weekday, month, space-padded day, time, year.
        let t = ctime(1_700_000_000_000);
        assert_eq!(t.len(), 24, "{t}");
        assert!(t.ends_with("2023"), "{t}");
    }

    #[test]
    fn every_status_has_its_classic_message() {
        assert_eq!(status_line(Status::Success), "Command completed successfully");
        assert_eq!(
            status_line(Status::FailureNotExists),
            "Input username does not exists, command failed"
        );
        assert_eq!(
            status_line(Status::FailureInvalidUsername),
            "Command failed with invalid username"
        );
    }
}
