//! Output, byte for byte as the classic client prints it.

use chrono::{Local, TimeZone};
use tinysns_common::proto::social::{ListReply, Post, Status};

pub const BANNER: &str = "\n========= TINY SNS CLIENT =========\n Command Lists and Format:\n FOLLOW <username>\n UNFOLLOW <username>\n LIST\n TIMELINE\n=====================================\n";
pub const PROMPT: &str = "Cmd> ";
pub const IN_TIMELINE: &str = "Now you are in the timeline";

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
        Status::Unspecified => "Invalid status",
    }
}

fn joined(ids: &[u64]) -> String {
    ids.iter().map(|id| format!("{id}, ")).collect()
}

/// The two lines LIST prints after its status line.
pub fn list_lines(reply: &ListReply) -> String {
    format!(
        "All users: {}\nFollowers: {}\n",
        joined(&reply.all_users),
        joined(&reply.followers)
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
    format!("{} ({}) >> {}\n", post.author, ctime(post.timestamp_ms), post.text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_format_matches_the_classic_client() {
        let reply = ListReply {
            all_users: vec![1, 2, 3],
            followers: vec![2],
            ..Default::default()
        };
        assert_eq!(list_lines(&reply), "All users: 1, 2, 3, \nFollowers: 2, \n");
        let empty = ListReply {
            all_users: vec![1],
            ..Default::default()
        };
        assert_eq!(list_lines(&empty), "All users: 1, \nFollowers: \n");
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
