//! Rooms over HTTP: the list, making and deleting one, joining and leaving, reading one (which
//! also marks the caller present) and saying something in it. Room messages and closings
//! arrive live on the WebSocket (`live`).

use crate::api::{body, bounded, query};
use crate::error::{ApiError, ErrorBody, check};
use crate::state::Authed;
use crate::views::{Done, UserView, display_name};
use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query};
use serde::{Deserialize, Serialize};
use tinysns_client::calls::RoomAction;
use tinysns_common::proto::social::{
    ReadRoomRequest, RoomInfo, RoomMember, RoomMessageView, RoomState, RoomsRequest, Status as Code,
};
use utoipa::ToSchema;

type ApiResult<T> = Result<Json<T>, ApiError>;

#[derive(Debug, Serialize, ToSchema)]
pub struct RoomInfoView {
    pub name: String,
    pub creator: String,
    /// `open`, `closing` (being deleted) or `closed`.
    pub state: String,
    pub last_seq: u64,
    pub members: u32,
}

impl From<RoomInfo> for RoomInfoView {
    fn from(r: RoomInfo) -> Self {
        let state = match RoomState::try_from(r.state).unwrap_or(RoomState::RoomClosed) {
            RoomState::RoomOpen => "open",
            RoomState::RoomClosing => "closing",
            RoomState::RoomClosed => "closed",
        };
        Self {
            name: r.name,
            creator: r.creator.map(|u| display_name(&u.username, u.id)).unwrap_or_default(),
            state: state.into(),
            last_seq: r.last_seq,
            members: r.members,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RoomMessageJson {
    pub room: String,
    /// Its number in the room (1, 2, ... as the room's host gave them).
    pub seq: u64,
    pub from: String,
    pub text: String,
    pub timestamp_ms: i64,
}

impl From<RoomMessageView> for RoomMessageJson {
    fn from(m: RoomMessageView) -> Self {
        Self {
            room: m.room,
            seq: m.seq,
            from: m.sender.map(|u| display_name(&u.username, u.id)).unwrap_or_default(),
            text: m.text,
            timestamp_ms: m.timestamp_ms,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MemberView {
    pub user: UserView,
    /// Seen in the room lately; otherwise away.
    pub present: bool,
}

impl From<RoomMember> for MemberView {
    fn from(m: RoomMember) -> Self {
        Self {
            user: m.user.map(UserView::from).unwrap_or(UserView {
                id: 0,
                username: String::new(),
            }),
            present: m.present,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RoomsView {
    /// The caller's rooms.
    pub mine: Vec<RoomInfoView>,
    /// Open rooms by name (this page).
    pub open: Vec<RoomInfoView>,
    /// `after` of the next page; absent at the end.
    pub next: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RoomView {
    pub room: RoomInfoView,
    pub member: bool,
    /// Members only: present first.
    pub members: Vec<MemberView>,
    /// Members only: newest first.
    pub messages: Vec<RoomMessageJson>,
    /// `before` of the next (older) page; absent at the end.
    pub next: Option<u64>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRoomBody {
    pub name: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SayBody {
    pub text: String,
    /// Chosen by the page (a decimal string from 1 to 2^63 - 1), so that a retried request
    /// is stored once. A random one when absent.
    #[serde(default)]
    pub id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SaidView {
    pub seq: u64,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RoomsQuery {
    /// The page of open rooms after this name.
    pub after: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RoomQuery {
    /// Messages numbered below this (absent: the newest).
    pub before: Option<u64>,
    /// Default 20, at most 100.
    pub limit: Option<u32>,
    /// The page is showing the room: the caller is present (default true).
    pub present: Option<bool>,
}

async fn act(authed: &Authed, room: &str, action: RoomAction) -> ApiResult<Done> {
    bounded("the room", room)?;
    let (status, message) = authed.link.room_action(room, action).await?;
    check(status as i32, message.clone())?;
    Ok(Json(Done { message }))
}

#[utoipa::path(get, path = "/api/rooms", params(RoomsQuery), responses((status = 200, body = RoomsView)))]
pub async fn rooms(authed: Authed, q: Result<Query<RoomsQuery>, QueryRejection>) -> ApiResult<RoomsView> {
    let after = query(q)?.after.unwrap_or_default();
    bounded("after", &after)?;
    let reply = authed.link.rooms(RoomsRequest { after, limit: 0 }).await?;
    check(reply.status, reply.message)?;
    Ok(Json(RoomsView {
        mine: reply.mine.into_iter().map(RoomInfoView::from).collect(),
        open: reply.open.into_iter().map(RoomInfoView::from).collect(),
        next: Some(reply.next_after).filter(|n| !n.is_empty()),
    }))
}

#[utoipa::path(post, path = "/api/rooms", request_body = NewRoomBody,
    responses((status = 200, body = Done), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create(authed: Authed, payload: Result<Json<NewRoomBody>, JsonRejection>) -> ApiResult<Done> {
    let b = body(payload)?;
    act(&authed, &b.name, RoomAction::Create).await
}

#[utoipa::path(get, path = "/api/rooms/{room}", params(("room" = String, Path), RoomQuery),
    responses((status = 200, body = RoomView), (status = 404, body = ErrorBody)))]
pub async fn read(
    authed: Authed,
    Path(room): Path<String>,
    q: Result<Query<RoomQuery>, QueryRejection>,
) -> ApiResult<RoomView> {
    bounded("the room", &room)?;
    let q = query(q)?;
    let reply = authed
        .link
        .read_room(ReadRoomRequest {
            room,
            before_seq: q.before.unwrap_or(0),
            limit: q.limit.unwrap_or(0),
            present: q.present.unwrap_or(true),
        })
        .await?;
    check(reply.status, reply.message)?;
    Ok(Json(RoomView {
        room: RoomInfoView::from(reply.room.unwrap_or_default()),
        member: reply.member,
        members: reply.members.into_iter().map(MemberView::from).collect(),
        messages: reply.messages.into_iter().map(RoomMessageJson::from).collect(),
        next: (reply.next_before_seq > 0).then_some(reply.next_before_seq),
    }))
}

#[utoipa::path(delete, path = "/api/rooms/{room}", params(("room" = String, Path)),
    responses((status = 200, body = Done), (status = 400, body = ErrorBody)))]
pub async fn delete(authed: Authed, Path(room): Path<String>) -> ApiResult<Done> {
    act(&authed, &room, RoomAction::Delete).await
}

#[utoipa::path(post, path = "/api/rooms/{room}/membership", params(("room" = String, Path)),
    responses((status = 200, body = Done), (status = 404, body = ErrorBody)))]
pub async fn join(authed: Authed, Path(room): Path<String>) -> ApiResult<Done> {
    act(&authed, &room, RoomAction::Join).await
}

#[utoipa::path(delete, path = "/api/rooms/{room}/membership", params(("room" = String, Path)),
    responses((status = 200, body = Done)))]
pub async fn leave(authed: Authed, Path(room): Path<String>) -> ApiResult<Done> {
    act(&authed, &room, RoomAction::Leave).await
}

#[utoipa::path(post, path = "/api/rooms/{room}/messages", params(("room" = String, Path)), request_body = SayBody,
    responses((status = 200, body = SaidView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn say(
    authed: Authed,
    Path(room): Path<String>,
    payload: Result<Json<SayBody>, JsonRejection>,
) -> ApiResult<SaidView> {
    bounded("the room", &room)?;
    let b = body(payload)?;
    let id = crate::api::page_chosen_id(b.id.as_deref())?;
    let reply = authed.link.say(&room, id, &b.text).await?;
    check(reply.status, reply.message)?;
    debug_assert!(reply.status == Code::Success as i32);
    Ok(Json(SaidView { seq: reply.seq }))
}
