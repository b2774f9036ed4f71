//! The JSON HTTP API: one handler per call a client can make, each acting for the session
//! in the request's cookie (never for a user named in the request) through the client
//! library, so failovers only make a call take longer.

use crate::auth::{Credential, clear_cookie};
use crate::error::{ApiError, ErrorBody, check};
use crate::state::{Authed, Gateway, check_origin};
use crate::views::*;
use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tinysns_client::live::{LiveTimeline, Patience};
use tinysns_client::resume::Event;
use tinysns_client::session::{ConnectError, Credentials};
use tinysns_common::proto::social::{HistoryRequest, PostsRequest, PublishRequest, SetProfileRequest, TopicsRequest};

type Shared = State<Arc<Gateway>>;
type ApiResult<T> = Result<Json<T>, ApiError>;

/// Longest name (user, topic) or page token taken from a path or query; the servers bound
/// them more tightly, this only keeps junk from travelling.
const MAX_NAME: usize = 256;
/// How long a login waits for a failover to finish.
const LOGIN_PATIENCE: Duration = Duration::from_secs(10);

/// The body, or why it is refused (too large, not JSON, unknown fields).
pub(crate) fn body<T>(payload: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    payload.map(|Json(t)| t).map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", rejection.body_text())
        }
        _ => ApiError::invalid(rejection.body_text()),
    })
}

pub(crate) fn query<T>(query: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    query.map(|Query(t)| t).map_err(|r| ApiError::invalid(r.body_text()))
}

pub(crate) fn bounded(what: &str, text: &str) -> Result<(), ApiError> {
    if text.len() > MAX_NAME {
        return Err(ApiError::invalid(format!("{what} is longer than {MAX_NAME} bytes")));
    }
    Ok(())
}

/// `author/number` from the path.
fn post_name(author: &str, number: &str) -> Result<String, ApiError> {
    bounded("the author", author)?;
    let number: u64 = number
        .parse()
        .map_err(|_| ApiError::invalid("a post's number is a whole number from 1"))?;
    Ok(format!("{author}/{number}"))
}

fn done((status, message): (tinysns_common::proto::social::Status, String)) -> ApiResult<Done> {
    check(status as i32, message.clone())?;
    Ok(Json(Done { message }))
}

/// The client's address (behind a trusted proxy, the one it forwards for), for limiting
/// requests made before logging in.
pub struct Peer(pub String);

impl FromRequestParts<Arc<Gateway>> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, gateway: &Arc<Gateway>) -> Result<Self, Self::Rejection> {
        let Some(peer) = parts
            .extensions
            .get::<axum::extract::ConnectInfo<SocketAddr>>()
            .map(|info| info.0.ip())
        else {
            return Ok(Self(String::new()));
        };
        let forwarded = parts.headers.get("x-forwarded-for").and_then(|h| h.to_str().ok());
        Ok(Self(gateway.trusted_proxies.client(peer, forwarded).to_string()))
    }
}

/// Logs in (or registers) and answers with the session cookie and the CSRF token.
async fn log_in(
    gateway: &Gateway,
    headers: &HeaderMap,
    peer: Peer,
    credentials: Credentials,
) -> Result<Response, ApiError> {
    check_origin(headers)?;
    gateway.admit(&format!("peer:{}", peer.0))?;
    let (reply, link) = gateway
        .resolver
        .log_in(&credentials, LOGIN_PATIENCE)
        .await
        .map_err(|error| match error {
            ConnectError::Refused { status, message } => ApiError::refused(status, message),
            ConnectError::Unreachable(why) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", why),
        })?;
    let credential = Credential {
        user: reply.user_id,
        token: reply.token,
    };
    // The session ends when tsd says (its expiry), or the cookie's age, whichever is first.
    let expires_in = Duration::from_millis(u64::try_from(reply.expires_ms).unwrap_or(0));
    let max_age = match expires_in.is_zero() {
        true => gateway.session_max_age,
        false => expires_in.min(gateway.session_max_age),
    };
    let cookie = HeaderValue::from_str(&credential.set_cookie(max_age)).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            "unknown",
            "the server issued an unusable token",
        )
    })?;
    drop(link);
    // (A registration's reply may leave the name out: it is the one just given.)
    let username = match (reply.username.is_empty(), &credentials) {
        (true, Credentials::Password { username, .. }) => username.clone(),
        _ => reply.username,
    };
    let view = SessionView {
        user: credential.user,
        username,
        csrf: credential.csrf(),
    };
    Ok(([(header::SET_COOKIE, cookie)], Json(view)).into_response())
}

fn password_credentials(b: CredentialsBody, register: bool) -> Result<Credentials, ApiError> {
    bounded("the username", &b.username)?;
    bounded("the password", &b.password)?;
    Ok(Credentials::Password {
        username: b.username,
        password: b.password,
        register,
    })
}

#[utoipa::path(post, path = "/api/register", request_body = CredentialsBody,
    responses((status = 200, body = SessionView, description = "registered and logged in; sets the session cookie"),
              (status = 409, body = ErrorBody, description = "the username is taken")))]
pub async fn register(
    State(gateway): Shared,
    peer: Peer,
    headers: HeaderMap,
    payload: Result<Json<CredentialsBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let credentials = password_credentials(body(payload)?, true)?;
    log_in(&gateway, &headers, peer, credentials).await
}

#[utoipa::path(post, path = "/api/login", request_body = CredentialsBody,
    responses((status = 200, body = SessionView, description = "logged in; sets the session cookie"),
              (status = 404, body = ErrorBody), (status = 400, body = ErrorBody)))]
pub async fn login(
    State(gateway): Shared,
    peer: Peer,
    headers: HeaderMap,
    payload: Result<Json<CredentialsBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let credentials = password_credentials(body(payload)?, false)?;
    log_in(&gateway, &headers, peer, credentials).await
}

#[utoipa::path(post, path = "/api/logout", responses((status = 200, body = Done)))]
pub async fn logout(State(gateway): Shared, authed: Authed) -> Result<Response, ApiError> {
    let ended = authed.link.end_session().await;
    gateway.forget(&authed.credential);
    let message = match ended {
        Ok(_) => "logged out".to_string(),
        Err(status) => format!("logged out here; the servers did not answer ({})", status.message()),
    };
    Ok(([(header::SET_COOKIE, clear_cookie())], Json(Done { message })).into_response())
}

#[utoipa::path(get, path = "/api/session", responses((status = 200, body = SessionView), (status = 401, body = ErrorBody)))]
pub async fn session(authed: Authed) -> ApiResult<SessionView> {
    let username = session_name(&authed).await?;
    Ok(Json(SessionView {
        user: authed.credential.user,
        username,
        csrf: authed.credential.csrf(),
    }))
}

#[utoipa::path(get, path = "/api/users", responses((status = 200, body = UsersView)))]
pub async fn users(authed: Authed) -> ApiResult<UsersView> {
    let listing = authed
        .link
        .list()
        .await?
        .map_err(|status| ApiError::refused(status, String::new()))?;
    Ok(Json(UsersView {
        users: listing.all_users.into_iter().map(UserView::from).collect(),
        followers: listing.followers.into_iter().map(UserView::from).collect(),
    }))
}

#[utoipa::path(get, path = "/api/users/{name}", params(("name" = String, Path)),
    responses((status = 200, body = ProfileView), (status = 404, body = ErrorBody)))]
pub async fn profile(authed: Authed, Path(name): Path<String>) -> ApiResult<ProfileView> {
    bounded("the user", &name)?;
    let reply = authed.link.profile(Some(&name)).await?;
    check(reply.status, reply.message)?;
    let profile = reply.profile.ok_or_else(|| ApiError::invalid("no profile"))?;
    Ok(Json(profile.into()))
}

#[utoipa::path(put, path = "/api/profile", request_body = ProfileBody, responses((status = 200, body = Done)))]
pub async fn set_profile(authed: Authed, payload: Result<Json<ProfileBody>, JsonRejection>) -> ApiResult<Done> {
    let b = body(payload)?;
    done(
        authed
            .link
            .set_profile(SetProfileRequest {
                display_name: b.display_name,
                bio: b.bio,
            })
            .await?,
    )
}

#[utoipa::path(post, path = "/api/users/{name}/follow", params(("name" = String, Path)), responses((status = 200, body = Done)))]
pub async fn follow(authed: Authed, Path(name): Path<String>) -> ApiResult<Done> {
    relation(authed, name, true).await
}

#[utoipa::path(delete, path = "/api/users/{name}/follow", params(("name" = String, Path)), responses((status = 200, body = Done)))]
pub async fn unfollow(authed: Authed, Path(name): Path<String>) -> ApiResult<Done> {
    relation(authed, name, false).await
}

async fn relation(authed: Authed, name: String, on: bool) -> ApiResult<Done> {
    bounded("the user", &name)?;
    let status = authed.link.relation(&name, on).await?;
    done((status, String::new()))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PostsQuery {
    /// Posts numbered below this (the `next` of the page before).
    pub before: Option<u64>,
}

#[utoipa::path(get, path = "/api/users/{name}/posts", params(("name" = String, Path), PostsQuery),
    responses((status = 200, body = PostsPage)))]
pub async fn user_posts(
    authed: Authed,
    Path(name): Path<String>,
    q: Result<Query<PostsQuery>, QueryRejection>,
) -> ApiResult<PostsPage> {
    bounded("the user", &name)?;
    let q = query(q)?;
    let reply = authed
        .link
        .posts(PostsRequest {
            user: name,
            before_number: q.before.unwrap_or(0),
            limit: 0,
        })
        .await?;
    check(reply.status, reply.message)?;
    Ok(Json(PostsPage {
        posts: reply.posts.into_iter().map(PostView::from).collect(),
        next: (reply.next_before_number > 0).then(|| reply.next_before_number.to_string()),
    }))
}

#[utoipa::path(get, path = "/api/timeline", responses((status = 200, body = TimelinePage)))]
pub async fn timeline(State(gateway): Shared, authed: Authed) -> ApiResult<TimelinePage> {
    let patience = Patience {
        retry_for: gateway.live_retry_for.min(Duration::from_secs(20)),
        ..Patience::default()
    };
    let mut live = LiveTimeline::new(authed.link, 0, patience);
    let mut posts = Vec::new();
    loop {
        match live.next().await? {
            Event::Post(post) => posts.push(PostView::from(post)),
            Event::Live { from, .. } => return Ok(Json(TimelinePage { posts, cursor: from })),
            _ => {}
        }
    }
}

#[utoipa::path(post, path = "/api/posts", request_body = PostBody,
    responses((status = 200, body = PublishedView), (status = 400, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn publish(authed: Authed, payload: Result<Json<PostBody>, JsonRejection>) -> ApiResult<PublishedView> {
    let b = body(payload)?;
    let post_id = page_chosen_id(b.id.as_deref())?;
    if b.topics.len() > 16 {
        return Err(ApiError::invalid("at most 16 topics"));
    }
    let reply_to = b.reply_to.unwrap_or_default();
    bounded("reply_to", &reply_to)?;
    let reply = authed
        .link
        .publish_post(PublishRequest {
            post_id,
            text: b.text,
            reply_to,
            topics: b.topics,
        })
        .await?;
    check(reply.status, reply.message)?;
    let me = session_name(&authed).await?;
    Ok(Json(PublishedView {
        name: format!("{me}/{}", reply.number),
        number: reply.number,
    }))
}

/// The id a page chose for what it sends (a decimal string, so that JavaScript keeps every
/// digit), or a random one; a retried request with the same id is stored once.
pub(crate) fn page_chosen_id(id: Option<&str>) -> Result<u64, ApiError> {
    match id {
        None => Ok((rand::random::<u64>() >> 1).max(1)),
        Some(id) => id
            .parse::<u64>()
            .ok()
            .filter(|id| (1..1 << 63).contains(id))
            .ok_or_else(|| ApiError::invalid("an id is a decimal number from 1 to 2^63 - 1")),
    }
}

/// The caller's username.
async fn session_name(authed: &Authed) -> Result<String, ApiError> {
    let reply = authed.link.profile(None).await?;
    check(reply.status, reply.message)?;
    Ok(reply.profile.map(|p| p.username).unwrap_or_default())
}

#[utoipa::path(delete, path = "/api/posts/{author}/{number}", params(("author" = String, Path), ("number" = u64, Path)),
    responses((status = 200, body = Done), (status = 400, body = ErrorBody, description = "not the caller's post")))]
pub async fn delete_post(authed: Authed, Path((author, number)): Path<(String, String)>) -> ApiResult<Done> {
    let name = post_name(&author, &number)?;
    done(authed.link.delete_post(&name).await?)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    /// The `next` of the page before.
    pub page: Option<String>,
}

#[utoipa::path(get, path = "/api/posts/{author}/{number}/thread", params(("author" = String, Path), ("number" = u64, Path), PageQuery),
    responses((status = 200, body = ThreadView), (status = 404, body = ErrorBody)))]
pub async fn thread(
    authed: Authed,
    Path((author, number)): Path<(String, String)>,
    q: Result<Query<PageQuery>, QueryRejection>,
) -> ApiResult<ThreadView> {
    let name = post_name(&author, &number)?;
    let page = query(q)?.page.unwrap_or_default();
    bounded("the page", &page)?;
    let reply = authed.link.thread(&name, &page).await?;
    check(reply.status, reply.message)?;
    Ok(Json(ThreadView {
        post: reply.post.map(PostView::from),
        replies: reply.replies.into_iter().map(PostView::from).collect(),
        next: Some(reply.next_page_token).filter(|t| !t.is_empty()),
    }))
}

#[utoipa::path(get, path = "/api/posts/{author}/{number}/likes", params(("author" = String, Path), ("number" = u64, Path)),
    responses((status = 200, body = LikesView), (status = 404, body = ErrorBody)))]
pub async fn likes(authed: Authed, Path((author, number)): Path<(String, String)>) -> ApiResult<LikesView> {
    let name = post_name(&author, &number)?;
    let reply = authed.link.likes(&name).await?;
    check(reply.status, reply.message)?;
    Ok(Json(LikesView {
        count: reply.count,
        liked: reply.liked,
        users: reply.users.into_iter().map(UserView::from).collect(),
    }))
}

#[utoipa::path(post, path = "/api/posts/{author}/{number}/like", params(("author" = String, Path), ("number" = u64, Path)),
    responses((status = 200, body = Done), (status = 404, body = ErrorBody)))]
pub async fn like(authed: Authed, Path((author, number)): Path<(String, String)>) -> ApiResult<Done> {
    let name = post_name(&author, &number)?;
    done(authed.link.like(&name, true).await?)
}

#[utoipa::path(delete, path = "/api/posts/{author}/{number}/like", params(("author" = String, Path), ("number" = u64, Path)),
    responses((status = 200, body = Done)))]
pub async fn unlike(authed: Authed, Path((author, number)): Path<(String, String)>) -> ApiResult<Done> {
    let name = post_name(&author, &number)?;
    done(authed.link.like(&name, false).await?)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct TopicsQuery {
    /// The most active topics of the last hour instead of all by name.
    pub active: Option<bool>,
    /// By name: the page after this topic.
    pub after: Option<String>,
}

#[utoipa::path(get, path = "/api/topics", params(TopicsQuery), responses((status = 200, body = TopicsView)))]
pub async fn topics(authed: Authed, q: Result<Query<TopicsQuery>, QueryRejection>) -> ApiResult<TopicsView> {
    let q = query(q)?;
    let after = q.after.unwrap_or_default();
    bounded("after", &after)?;
    let reply = authed
        .link
        .topics(TopicsRequest {
            active: q.active.unwrap_or(false),
            limit: 0,
            after,
        })
        .await?;
    check(reply.status, reply.message)?;
    Ok(Json(TopicsView {
        topics: reply.topics.into_iter().map(TopicView::from).collect(),
        subscriptions: reply.subscriptions,
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    /// The sequence number to start from (0 or absent: the newest backwards, the first
    /// forwards).
    pub from: Option<u64>,
    pub forward: Option<bool>,
    /// Default 20, at most 100.
    pub limit: Option<u32>,
}

#[utoipa::path(get, path = "/api/topics/{topic}/history", params(("topic" = String, Path), HistoryQuery),
    responses((status = 200, body = HistoryView), (status = 400, body = ErrorBody)))]
pub async fn history(
    authed: Authed,
    Path(topic): Path<String>,
    q: Result<Query<HistoryQuery>, QueryRejection>,
) -> ApiResult<HistoryView> {
    bounded("the topic", &topic)?;
    let q = query(q)?;
    let reply = authed
        .link
        .history(HistoryRequest {
            topic,
            from_seq: q.from.unwrap_or(0),
            forward: q.forward.unwrap_or(false),
            limit: q.limit.unwrap_or(0),
        })
        .await?;
    check(reply.status, reply.message)?;
    Ok(Json(HistoryView {
        posts: reply.posts.into_iter().map(TopicPostView::from).collect(),
        next: (reply.next_seq > 0).then_some(reply.next_seq),
        last_seq: reply.last_seq,
        count: reply.count,
        subscribed: reply.subscribed,
    }))
}

#[utoipa::path(post, path = "/api/topics/{topic}/subscription", params(("topic" = String, Path)), responses((status = 200, body = Done)))]
pub async fn subscribe(authed: Authed, Path(topic): Path<String>) -> ApiResult<Done> {
    bounded("the topic", &topic)?;
    done(authed.link.subscribe(&topic, true).await?)
}

#[utoipa::path(delete, path = "/api/topics/{topic}/subscription", params(("topic" = String, Path)), responses((status = 200, body = Done)))]
pub async fn unsubscribe(authed: Authed, Path(topic): Path<String>) -> ApiResult<Done> {
    bounded("the topic", &topic)?;
    done(authed.link.subscribe(&topic, false).await?)
}

#[utoipa::path(post, path = "/api/messages", request_body = MessageBody,
    responses((status = 200, body = Done), (status = 404, body = ErrorBody)))]
pub async fn send_message(authed: Authed, payload: Result<Json<MessageBody>, JsonRejection>) -> ApiResult<Done> {
    let b = body(payload)?;
    bounded("the recipient", &b.to)?;
    done(authed.link.send_message(&b.to, &b.text).await?)
}

#[utoipa::path(get, path = "/api/inbox", responses((status = 200, body = InboxView)))]
pub async fn inbox(authed: Authed) -> ApiResult<InboxView> {
    let reply = authed.link.inbox().await?;
    check(reply.status, reply.message)?;
    Ok(Json(InboxView {
        conversations: reply.conversations.into_iter().map(ConversationView::from).collect(),
        unread: reply.unread_total,
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ConversationQuery {
    /// Mark the messages read (the default when reading).
    pub mark_read: Option<bool>,
}

#[utoipa::path(get, path = "/api/conversations/{user}", params(("user" = String, Path), ConversationQuery),
    responses((status = 200, body = ConversationPage), (status = 404, body = ErrorBody)))]
pub async fn conversation(
    authed: Authed,
    Path(user): Path<String>,
    q: Result<Query<ConversationQuery>, QueryRejection>,
) -> ApiResult<ConversationPage> {
    bounded("the user", &user)?;
    let mark_read = query(q)?.mark_read.unwrap_or(true);
    let reply = authed.link.conversation(&user, mark_read).await?;
    check(reply.status, reply.message)?;
    Ok(Json(ConversationPage {
        messages: reply.messages.into_iter().map(MessageView::from).collect(),
        unread: reply.unread,
    }))
}

#[utoipa::path(delete, path = "/api/account", request_body = DeleteAccountBody, responses((status = 200, body = Done)))]
pub async fn delete_account(
    State(gateway): Shared,
    authed: Authed,
    payload: Result<Json<DeleteAccountBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let b = body(payload)?;
    bounded("confirm", &b.confirm)?;
    let Json(done) = done(authed.link.delete_account(&b.confirm).await?)?;
    gateway.forget(&authed.credential);
    Ok(([(header::SET_COOKIE, clear_cookie())], Json(done)).into_response())
}

/// Answers every unknown `/api` path in the API's JSON shape.
pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such API call")
}

/// Headers of every API answer: never cached.
pub fn no_store(headers: &mut HeaderMap) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}
