//! The OpenAPI description of the HTTP API, served at `/api/openapi.json`.

use crate::{api, error, live, rooms, views};
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "tinysns gateway",
        description = "The HTTP API of tinysns. Log in (or register) to get the session cookie and the \
                       CSRF token; every request that changes something sends the token in the \
                       `X-CSRF-Token` header. Live events come over the WebSocket at `/api/live`."
    ),
    paths(
        api::register,
        api::login,
        api::logout,
        api::session,
        api::users,
        api::profile,
        api::set_profile,
        api::follow,
        api::unfollow,
        api::user_posts,
        api::timeline,
        api::publish,
        api::delete_post,
        api::thread,
        api::likes,
        api::like,
        api::unlike,
        api::topics,
        api::history,
        api::subscribe,
        api::unsubscribe,
        api::send_message,
        api::inbox,
        api::conversation,
        api::delete_account,
        rooms::rooms,
        rooms::create,
        rooms::read,
        rooms::delete,
        rooms::join,
        rooms::leave,
        rooms::say,
        live::live,
    ),
    components(schemas(error::ErrorBody, views::LiveEvent))
)]
pub struct ApiDoc;

/// The description as JSON.
pub fn json() -> String {
    ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_described() {
        let doc: serde_json::Value = serde_json::from_str(&json()).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        for route in crate::server::API_ROUTES {
            assert!(paths.contains_key(*route), "{route} is not in the OpenAPI description");
        }
        assert_eq!(paths.len(), crate::server::API_ROUTES.len(), "and nothing else is");
    }
}
