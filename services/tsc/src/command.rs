//! Parsing a command line the way the classic client does: the command word is
//! case-insensitive, and of the classic commands only FOLLOW and UNFOLLOW take an argument.
//! Newer commands (PROFILE, POSTS, LIKE, UNLIKE, LIKES, REPLY, THREAD, DELETE, DM, INBOX,
//! READ, BLOCK, UNBLOCK, TOPIC, SUBSCRIBE, UNSUBSCRIBE, HISTORY, DELETEACCOUNT, HELP) parse their own
//! arguments.

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Follow(String),
    UnFollow(String),
    List,
    Timeline,
    /// Change the password (password mode): reads the current and the new one.
    Password,
    /// Show a profile: the caller's (None) or a user's.
    Profile(Option<String>),
    /// Set the caller's display name or bio.
    SetProfile(ProfileField, String),
    /// A user's posts with their names (`alice/17`) and likes: the caller's (None) or a user's.
    Posts(Option<String>),
    /// Like or stop liking a post (named `<author>/<number>`).
    Like(String),
    Unlike(String),
    /// Who likes a post.
    Likes(String),
    /// Reply to a post.
    Reply(String, String),
    /// A post and a page of its replies (from this page token; empty: the first page).
    Thread(String, String),
    /// Delete one of your posts.
    Delete(String),
    /// A direct message to a user.
    Message(String, String),
    /// Your conversations with their unread counts.
    Inbox,
    /// Your conversation with a user (marks it read).
    Read(String),
    Block(String),
    Unblock(String),
    /// The topics (by name, and the most active of the last hour) and your subscriptions.
    Topics,
    /// A topic's counts and its newest posts.
    Topic(String),
    /// Post in a topic (besides the #tags of the text).
    TopicPost(String, String),
    Subscribe(String),
    Unsubscribe(String),
    /// A page of a topic's history.
    History(HistoryPage),
    /// Delete your account everywhere (asks for your username as a confirmation).
    DeleteAccount,
    /// The full list of commands.
    Help,
}

/// `HISTORY <topic> [<from>|+<from>] [<n>]`: newest first from `from` (0: the newest), or
/// oldest first from it with `+`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryPage {
    pub topic: String,
    pub from: u64,
    pub forward: bool,
    pub limit: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProfileField {
    Name,
    Bio,
}

/// What to do with one input line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Run(Command),
    /// Print this message and prompt again.
    Complain(&'static str),
    /// A blank line: prompt again.
    Nothing,
}

pub const INVALID_COMMAND: &str = "Invalid Command";
pub const NO_ARGUMENTS: &str = "Invalid Input -- No Arguments Given";
pub const ONLY_FOLLOW_TAKES_ARGUMENTS: &str = "Invalid Input -- Only FOLLOW and UNFOLLOW commands have Arguments";

pub fn parse(line: &str) -> Parsed {
    let line = line.trim_end_matches(['\r', '\n']);
    if line.trim().is_empty() {
        return Parsed::Nothing;
    }
    match line.find(' ') {
        Some(index) => {
            let word = line[..index].to_ascii_uppercase();
            let argument = line[index + 1..].trim();
            if argument.is_empty() {
                return Parsed::Complain(NO_ARGUMENTS);
            }
            match word.as_str() {
                "FOLLOW" => Parsed::Run(Command::Follow(argument.to_string())),
                "UNFOLLOW" => Parsed::Run(Command::UnFollow(argument.to_string())),
                "LIST" | "TIMELINE" | "PASSWORD" => Parsed::Complain(ONLY_FOLLOW_TAKES_ARGUMENTS),
                "PROFILE" => Parsed::Run(profile(argument)),
                "POSTS" => Parsed::Run(Command::Posts(Some(argument.to_string()))),
                "LIKE" => post_command(argument, Command::Like),
                "UNLIKE" => post_command(argument, Command::Unlike),
                "LIKES" => post_command(argument, Command::Likes),
                "DELETE" => post_command(argument, Command::Delete),
                "REPLY" => reply(argument),
                "THREAD" => thread(argument),
                "DM" => match argument.split_once(' ') {
                    Some((to, text)) if !text.trim().is_empty() => {
                        Parsed::Run(Command::Message(to.to_string(), text.trim().to_string()))
                    }
                    _ => Parsed::Complain(DM_NEEDS_TEXT),
                },
                "READ" => Parsed::Run(Command::Read(argument.to_string())),
                "BLOCK" => Parsed::Run(Command::Block(argument.to_string())),
                "UNBLOCK" => Parsed::Run(Command::Unblock(argument.to_string())),
                "INBOX" => Parsed::Complain(INBOX_TAKES_NO_ARGUMENTS),
                "TOPIC" => topic(argument),
                "SUBSCRIBE" => topic_command(argument, Command::Subscribe),
                "UNSUBSCRIBE" => topic_command(argument, Command::Unsubscribe),
                "HISTORY" => history(argument),
                "DELETEACCOUNT" => Parsed::Complain(DELETEACCOUNT_TAKES_NO_ARGUMENTS),
                "HELP" => Parsed::Complain(TAKES_NO_ARGUMENTS),
                _ => Parsed::Complain(INVALID_COMMAND),
            }
        }
        None => match line.to_ascii_uppercase().as_str() {
            "LIST" => Parsed::Run(Command::List),
            "TIMELINE" => Parsed::Run(Command::Timeline),
            "PASSWORD" => Parsed::Run(Command::Password),
            "PROFILE" => Parsed::Run(Command::Profile(None)),
            "POSTS" => Parsed::Run(Command::Posts(None)),
            "INBOX" => Parsed::Run(Command::Inbox),
            "TOPIC" => Parsed::Run(Command::Topics),
            "DELETEACCOUNT" => Parsed::Run(Command::DeleteAccount),
            "HELP" => Parsed::Run(Command::Help),
            _ => Parsed::Complain(INVALID_COMMAND),
        },
    }
}

pub const TAKES_NO_ARGUMENTS: &str = "Invalid Input -- HELP takes no arguments";
pub const BAD_POST_NAME: &str = "Invalid Input -- a post is named <author>/<number>, as in alice/17";

/// A command on one post, named as `alice/17` (checked here, so a typo costs no round trip).
fn post_command(argument: &str, command: impl FnOnce(String) -> Command) -> Parsed {
    match tinysns_common::limits::parse_post_name(argument) {
        Ok(name) => Parsed::Run(command(name.to_string())),
        Err(_) => Parsed::Complain(BAD_POST_NAME),
    }
}

/// `PROFILE NAME <text>`, `PROFILE BIO <text>` or `PROFILE <user>`. A user named `name` or
/// `bio` is shown by `PROFILE name`, since a field needs text after it.
fn profile(argument: &str) -> Command {
    let (first, rest) = match argument.split_once(' ') {
        Some((first, rest)) => (first, rest.trim()),
        None => (argument, ""),
    };
    match first.to_ascii_uppercase().as_str() {
        "NAME" if !rest.is_empty() => Command::SetProfile(ProfileField::Name, rest.to_string()),
        "BIO" if !rest.is_empty() => Command::SetProfile(ProfileField::Bio, rest.to_string()),
        _ => Command::Profile(Some(argument.to_string())),
    }
}

/// `REPLY <post> <text>`: the text is everything after the post's name.
fn reply(argument: &str) -> Parsed {
    match argument.split_once(' ') {
        Some((post, text)) if !text.trim().is_empty() => {
            post_command(post, |post| Command::Reply(post, text.trim().to_string()))
        }
        _ => Parsed::Complain(REPLY_NEEDS_TEXT),
    }
}

/// `THREAD <post> [<page>]` (a page token as THREAD printed it).
fn thread(argument: &str) -> Parsed {
    let (post, page) = match argument.split_once(' ') {
        Some((_, page)) if page.trim().contains(' ') => return Parsed::Complain(THREAD_USAGE),
        Some((post, page)) => (post, page.trim()),
        None => (argument, ""),
    };
    post_command(post, |post| Command::Thread(post, page.to_string()))
}

/// A command on one topic (its name checked here, so a typo costs no round trip).
fn topic_command(argument: &str, command: impl FnOnce(String) -> Command) -> Parsed {
    if argument.contains(' ') {
        return Parsed::Complain(BAD_TOPIC);
    }
    match tinysns_common::topics::parse_topic(argument) {
        Ok(topic) => Parsed::Run(command(topic)),
        Err(_) => Parsed::Complain(BAD_TOPIC),
    }
}

/// `TOPIC <topic>` or `TOPIC <topic> <text>`.
fn topic(argument: &str) -> Parsed {
    match argument.split_once(' ') {
        Some((name, text)) => topic_command(name, |topic| Command::TopicPost(topic, text.trim().to_string())),
        None => topic_command(argument, Command::Topic),
    }
}

/// `HISTORY <topic> [<from>|+<from>] [<n>]`.
fn history(argument: &str) -> Parsed {
    let mut words = argument.split_whitespace();
    let Some(name) = words.next() else {
        return Parsed::Complain(HISTORY_USAGE);
    };
    let (from, forward) = match words.next() {
        None => (0, false),
        Some(from) => match (from.strip_prefix('+'), from.parse::<u64>()) {
            (Some(after), _) => match after.parse::<u64>() {
                Ok(n) => (n, true),
                Err(_) => return Parsed::Complain(HISTORY_USAGE),
            },
            (None, Ok(n)) => (n, false),
            (None, Err(_)) => return Parsed::Complain(HISTORY_USAGE),
        },
    };
    let limit = match words.next().map(str::parse::<u32>) {
        None => 0,
        Some(Ok(n)) if (1..=tinysns_common::limits::MAX_PAGE as u32).contains(&n) => n,
        Some(_) => return Parsed::Complain(HISTORY_USAGE),
    };
    if words.next().is_some() {
        return Parsed::Complain(HISTORY_USAGE);
    }
    topic_command(name, |topic| {
        Command::History(HistoryPage {
            topic,
            from,
            forward,
            limit,
        })
    })
}

pub const DELETEACCOUNT_TAKES_NO_ARGUMENTS: &str =
    "Invalid Input -- DELETEACCOUNT takes no arguments (it asks for your username to confirm)";
pub const BAD_TOPIC: &str =
    "Invalid Input -- a topic is a name of letters, digits and _ (up to 64, with a letter), as in rust or #rust";
pub const HISTORY_USAGE: &str = "Invalid Input -- HISTORY <topic> [<from>|+<from>] [<n> up to 100]";
pub const DM_NEEDS_TEXT: &str = "Invalid Input -- DM <username> <text>";
pub const INBOX_TAKES_NO_ARGUMENTS: &str = "Invalid Input -- INBOX takes no arguments";
pub const REPLY_NEEDS_TEXT: &str = "Invalid Input -- REPLY <post> <text>";
pub const THREAD_USAGE: &str = "Invalid Input -- THREAD <post> [<page>]";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_commands_check_their_topic_and_numbers() {
        assert_eq!(parse("TOPIC"), Parsed::Run(Command::Topics));
        assert_eq!(parse("topic #Rust"), Parsed::Run(Command::Topic("rust".into())));
        assert_eq!(
            parse("TOPIC rust hello there"),
            Parsed::Run(Command::TopicPost("rust".into(), "hello there".into()))
        );
        assert_eq!(parse("SUBSCRIBE go"), Parsed::Run(Command::Subscribe("go".into())));
        assert_eq!(parse("unsubscribe #go"), Parsed::Run(Command::Unsubscribe("go".into())));
        assert_eq!(parse("SUBSCRIBE a b"), Parsed::Complain(BAD_TOPIC));
        assert_eq!(parse("SUBSCRIBE 42"), Parsed::Complain(BAD_TOPIC));
        assert_eq!(parse("TOPIC café x"), Parsed::Complain(BAD_TOPIC));
        let page = |from, forward, limit| {
            Parsed::Run(Command::History(HistoryPage {
                topic: "rust".into(),
                from,
                forward,
                limit,
            }))
        };
        assert_eq!(parse("HISTORY rust"), page(0, false, 0));
        assert_eq!(parse("HISTORY rust 40 5"), page(40, false, 5));
        assert_eq!(parse("HISTORY rust +1 100"), page(1, true, 100));
        for bad in [
            "HISTORY rust x",
            "HISTORY rust 1 0",
            "HISTORY rust 1 101",
            "HISTORY rust 1 2 3",
            "HISTORY rust -1",
        ] {
            assert_eq!(parse(bad), Parsed::Complain(HISTORY_USAGE), "{bad}");
        }
        assert_eq!(parse("HISTORY #"), Parsed::Complain(BAD_TOPIC));
        assert_eq!(parse("deleteaccount"), Parsed::Run(Command::DeleteAccount));
        assert_eq!(
            parse("DELETEACCOUNT now"),
            Parsed::Complain(DELETEACCOUNT_TAKES_NO_ARGUMENTS)
        );
    }

    #[test]
    fn commands_are_case_insensitive() {
        assert_eq!(parse("list"), Parsed::Run(Command::List));
        assert_eq!(parse("TimeLine\n"), Parsed::Run(Command::Timeline));
        assert_eq!(parse("follow 3"), Parsed::Run(Command::Follow("3".into())));
        assert_eq!(parse("UnFollow 12\r\n"), Parsed::Run(Command::UnFollow("12".into())));
        assert_eq!(parse("password"), Parsed::Run(Command::Password));
    }

    #[test]
    fn profile_commands() {
        assert_eq!(parse("PROFILE"), Parsed::Run(Command::Profile(None)));
        assert_eq!(
            parse("profile alice"),
            Parsed::Run(Command::Profile(Some("alice".into())))
        );
        assert_eq!(
            parse("profile name"),
            Parsed::Run(Command::Profile(Some("name".into())))
        );
        assert_eq!(
            parse("Profile Name Alice Liddell"),
            Parsed::Run(Command::SetProfile(ProfileField::Name, "Alice Liddell".into()))
        );
        assert_eq!(
            parse("PROFILE BIO  curiouser and curiouser "),
            Parsed::Run(Command::SetProfile(ProfileField::Bio, "curiouser and curiouser".into()))
        );
        assert_eq!(parse("help"), Parsed::Run(Command::Help));
        assert_eq!(parse("HELP me"), Parsed::Complain(TAKES_NO_ARGUMENTS));
    }

    #[test]
    fn post_commands() {
        assert_eq!(parse("like alice/3"), Parsed::Run(Command::Like("alice/3".into())));
        assert_eq!(parse("UNLIKE 7/12 "), Parsed::Run(Command::Unlike("7/12".into())));
        assert_eq!(parse("Likes bob/1"), Parsed::Run(Command::Likes("bob/1".into())));
        for bad in ["LIKE alice", "LIKE alice/0", "UNLIKE /3", "LIKES alice/x", "LIKE a b/3"] {
            assert_eq!(parse(bad), Parsed::Complain(BAD_POST_NAME), "{bad}");
        }
        assert_eq!(parse("LIKE"), Parsed::Complain(INVALID_COMMAND));
        assert_eq!(parse("posts"), Parsed::Run(Command::Posts(None)));
        assert_eq!(
            parse("REPLY alice/3  so true "),
            Parsed::Run(Command::Reply("alice/3".into(), "so true".into()))
        );
        assert_eq!(parse("REPLY alice/3"), Parsed::Complain(REPLY_NEEDS_TEXT));
        assert_eq!(parse("REPLY alice hi"), Parsed::Complain(BAD_POST_NAME));
        assert_eq!(
            parse("thread bob/2"),
            Parsed::Run(Command::Thread("bob/2".into(), String::new()))
        );
        assert_eq!(
            parse("THREAD bob/2 17-3-4"),
            Parsed::Run(Command::Thread("bob/2".into(), "17-3-4".into()))
        );
        assert_eq!(parse("THREAD bob/2 x y"), Parsed::Complain(THREAD_USAGE));
        assert_eq!(parse("DELETE bob/2"), Parsed::Run(Command::Delete("bob/2".into())));
        assert_eq!(parse("DELETE bob"), Parsed::Complain(BAD_POST_NAME));
    }

    #[test]
    fn message_commands() {
        assert_eq!(
            parse("dm alice  see you at tea "),
            Parsed::Run(Command::Message("alice".into(), "see you at tea".into()))
        );
        assert_eq!(parse("DM alice"), Parsed::Complain(DM_NEEDS_TEXT));
        assert_eq!(parse("inbox"), Parsed::Run(Command::Inbox));
        assert_eq!(parse("INBOX 2"), Parsed::Complain(INBOX_TAKES_NO_ARGUMENTS));
        assert_eq!(parse("Read alice"), Parsed::Run(Command::Read("alice".into())));
        assert_eq!(parse("BLOCK bob"), Parsed::Run(Command::Block("bob".into())));
        assert_eq!(parse("unblock bob"), Parsed::Run(Command::Unblock("bob".into())));
        assert_eq!(parse("POSTS alice"), Parsed::Run(Command::Posts(Some("alice".into()))));
    }

    #[test]
    fn classic_complaints() {
        assert_eq!(parse("FOLLOW "), Parsed::Complain(NO_ARGUMENTS));
        assert_eq!(parse("FOLLOW"), Parsed::Complain(INVALID_COMMAND));
        assert_eq!(parse("LIST 2"), Parsed::Complain(ONLY_FOLLOW_TAKES_ARGUMENTS));
        assert_eq!(parse("JUMP 2"), Parsed::Complain(INVALID_COMMAND));
        assert_eq!(parse("JUMP"), Parsed::Complain(INVALID_COMMAND));
        assert_eq!(parse("   "), Parsed::Nothing);
    }
}
