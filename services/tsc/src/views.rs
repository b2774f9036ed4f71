//! The newer commands (PROFILE, POSTS, LIKE, UNLIKE, LIKES, REPLY, THREAD, DELETE, DM, INBOX,
//! READ, BLOCK, UNBLOCK, TOPIC, SUBSCRIBE, UNSUBSCRIBE, HISTORY): what each asks the server and
//! the text it prints. The classic commands stay in `main`, printed by `display` byte for byte.
//! A refusal prints the classic status line, and the server's detail on stderr.

use crate::command::{Command, HistoryPage, ProfileField};
use crate::display;
use tinysns_client::session::Session;
use tinysns_common::proto::social::{HistoryRequest, PostsRequest, SetProfileRequest, Status as Code, TopicsRequest};

/// What one of the newer commands prints (None for any other command).
pub async fn run(session: &mut Session, command: &Command) -> Option<Result<String, tonic::Status>> {
    Some(match command {
        Command::Profile(target) => profile(session, target.as_deref()).await,
        Command::SetProfile(field, text) => set_profile(session, *field, text).await,
        Command::Posts(user) => posts(session, user.as_deref()).await,
        Command::Like(post) => status(session.like(post, true).await),
        Command::Unlike(post) => status(session.like(post, false).await),
        Command::Likes(post) => likes(session, post).await,
        Command::Reply(post, text) => reply(session, post, text).await,
        Command::Thread(post, page) => thread(session, post, page).await,
        Command::Delete(post) => status(session.delete_post(post).await),
        Command::Message(to, text) => status(session.send_message(to, text).await),
        Command::Inbox => inbox(session).await,
        Command::Read(with) => conversation(session, with).await,
        Command::Block(user) => status(session.block(user, true).await),
        Command::Unblock(user) => status(session.block(user, false).await),
        Command::Topics => topics(session).await,
        Command::Topic(topic) => {
            let page = HistoryPage {
                topic: topic.clone(),
                from: 0,
                forward: false,
                limit: 0,
            };
            history(session, &page).await
        }
        Command::TopicPost(topic, text) => topic_post(session, topic, text).await,
        Command::Subscribe(topic) => status(session.subscribe(topic, true).await),
        Command::Unsubscribe(topic) => status(session.subscribe(topic, false).await),
        Command::History(page) => history(session, page).await,
        Command::Follow(_)
        | Command::UnFollow(_)
        | Command::List
        | Command::Timeline
        | Command::Password
        | Command::DeleteAccount
        | Command::Help => return None,
    })
}

fn success(lines: String) -> String {
    format!("{}\n{lines}", display::status_line(Code::Success))
}

/// The classic line for a refusal, with the server's detail on stderr.
fn refused(status: i32, message: &str) -> String {
    if !message.is_empty() {
        eprintln!("{message}");
    }
    let status = Code::try_from(status).unwrap_or(Code::FailureUnknown);
    format!("{}\n", display::status_line(status))
}

fn status(answer: Result<(Code, String), tonic::Status>) -> Result<String, tonic::Status> {
    let (status, message) = answer?;
    Ok(match status {
        Code::Success => success(String::new()),
        other => refused(other as i32, &message),
    })
}

async fn profile(session: &mut Session, target: Option<&str>) -> Result<String, tonic::Status> {
    let reply = session.profile(target).await?;
    Ok(match (Code::try_from(reply.status), reply.profile) {
        (Ok(Code::Success), Some(profile)) => success(display::profile_lines(&profile)),
        (Ok(Code::Success), None) => refused(Code::FailureUnknown as i32, "the server sent no profile"),
        _ => refused(reply.status, &reply.message),
    })
}

async fn set_profile(session: &mut Session, field: ProfileField, text: &str) -> Result<String, tonic::Status> {
    let text = Some(text.to_string());
    let request = match field {
        ProfileField::Name => SetProfileRequest {
            display_name: text,
            bio: None,
        },
        ProfileField::Bio => SetProfileRequest {
            display_name: None,
            bio: text,
        },
    };
    status(session.set_profile(request).await)
}

async fn posts(session: &mut Session, user: Option<&str>) -> Result<String, tonic::Status> {
    let reply = session
        .posts(PostsRequest {
            user: user.unwrap_or_default().to_string(),
            before_number: 0,
            limit: 0,
        })
        .await?;
    Ok(match Code::try_from(reply.status) {
        Ok(Code::Success) => success(display::posts_lines(&reply.posts)),
        _ => refused(reply.status, &reply.message),
    })
}

async fn likes(session: &mut Session, post: &str) -> Result<String, tonic::Status> {
    let reply = session.likes(post).await?;
    Ok(match Code::try_from(reply.status) {
        Ok(Code::Success) => success(display::likes_lines(reply.count, reply.liked, &reply.users)),
        _ => refused(reply.status, &reply.message),
    })
}

async fn reply(session: &mut Session, post: &str, text: &str) -> Result<String, tonic::Status> {
    let reply = session.publish(text, post, &[]).await?;
    Ok(match Code::try_from(reply.status) {
        Ok(Code::Success) => success(format!("Your reply is {}/{}\n", session.me(), reply.number)),
        _ => refused(reply.status, &reply.message),
    })
}

async fn thread(session: &mut Session, post: &str, page: &str) -> Result<String, tonic::Status> {
    let reply = session.thread(post, page).await?;
    Ok(match (Code::try_from(reply.status), reply.post) {
        (Ok(Code::Success), Some(root)) => {
            let next = (!reply.next_page_token.is_empty()).then(|| format!("THREAD {post} {}", reply.next_page_token));
            success(display::thread_lines(&root, &reply.replies, next))
        }
        (Ok(Code::Success), None) => refused(Code::FailureUnknown as i32, "the server sent no post"),
        _ => refused(reply.status, &reply.message),
    })
}

async fn inbox(session: &mut Session) -> Result<String, tonic::Status> {
    let reply = session.inbox().await?;
    Ok(match Code::try_from(reply.status) {
        Ok(Code::Success) => success(display::inbox_lines(&reply.conversations, reply.unread_total)),
        _ => refused(reply.status, &reply.message),
    })
}

async fn conversation(session: &mut Session, with: &str) -> Result<String, tonic::Status> {
    let reply = session.conversation(with, true).await?;
    Ok(match Code::try_from(reply.status) {
        Ok(Code::Success) => success(display::conversation_lines(&reply.messages)),
        _ => refused(reply.status, &reply.message),
    })
}

async fn topic_post(session: &mut Session, topic: &str, text: &str) -> Result<String, tonic::Status> {
    let reply = session.publish(text, "", &[topic.to_string()]).await?;
    Ok(match Code::try_from(reply.status) {
        Ok(Code::Success) => success(format!("Your post is {}/{}\n", session.me(), reply.number)),
        _ => refused(reply.status, &reply.message),
    })
}

async fn history(session: &mut Session, page: &HistoryPage) -> Result<String, tonic::Status> {
    let reply = session
        .history(HistoryRequest {
            topic: page.topic.clone(),
            from_seq: page.from,
            forward: page.forward,
            limit: page.limit,
        })
        .await?;
    Ok(match Code::try_from(reply.status) {
        Ok(Code::Success) => {
            let next = match (reply.next_seq, page.forward) {
                (0, _) => None,
                (next, true) => Some(format!("HISTORY {} +{next}", page.topic)),
                (next, false) => Some(format!("HISTORY {} {next}", page.topic)),
            };
            success(display::history_lines(&page.topic, &reply, next))
        }
        _ => refused(reply.status, &reply.message),
    })
}

async fn topics(session: &mut Session) -> Result<String, tonic::Status> {
    let by_name = |active| TopicsRequest {
        active,
        limit: 0,
        after: String::new(),
    };
    let active = session.topics(by_name(true)).await?;
    let all = session.topics(by_name(false)).await?;
    Ok(match (Code::try_from(active.status), Code::try_from(all.status)) {
        (Ok(Code::Success), Ok(Code::Success)) => {
            success(display::topics_lines(&active.topics, &all.topics, &all.subscriptions))
        }
        (Ok(Code::Success), _) => refused(all.status, &all.message),
        _ => refused(active.status, &active.message),
    })
}
