//! The gateway's HTTP server: the routes (API, live WebSocket, web UI, OpenAPI, health), the
//! layers every answer passes (body limit, security headers, metrics), and serving them over
//! plain HTTP or HTTPS (rustls, certificates from PEM files) until SIGTERM.

use crate::config::Args;
use crate::metrics::Metrics;
use crate::state::Gateway;
use crate::{api, live, openapi, rooms, web};
use anyhow::Context;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::net::SocketAddr;
use std::sync::Arc;
use tinysns_client::session::{Connection, Resolver};
use tinysns_common::shutdown::Shutdown;

/// Every API route, as the OpenAPI description names it.
pub const API_ROUTES: &[&str] = &[
    "/api/register",
    "/api/login",
    "/api/logout",
    "/api/session",
    "/api/users",
    "/api/users/{name}",
    "/api/users/{name}/follow",
    "/api/users/{name}/posts",
    "/api/profile",
    "/api/timeline",
    "/api/posts",
    "/api/posts/{author}/{number}",
    "/api/posts/{author}/{number}/thread",
    "/api/posts/{author}/{number}/likes",
    "/api/posts/{author}/{number}/like",
    "/api/topics",
    "/api/topics/{topic}/history",
    "/api/topics/{topic}/subscription",
    "/api/messages",
    "/api/inbox",
    "/api/conversations/{user}",
    "/api/account",
    "/api/rooms",
    "/api/rooms/{room}",
    "/api/rooms/{room}/membership",
    "/api/rooms/{room}/messages",
    "/api/live",
];

fn api_routes() -> Router<Arc<Gateway>> {
    Router::new()
        .route("/api/register", post(api::register))
        .route("/api/login", post(api::login))
        .route("/api/logout", post(api::logout))
        .route("/api/session", get(api::session))
        .route("/api/users", get(api::users))
        .route("/api/users/{name}", get(api::profile))
        .route("/api/users/{name}/follow", post(api::follow).delete(api::unfollow))
        .route("/api/users/{name}/posts", get(api::user_posts))
        .route("/api/profile", axum::routing::put(api::set_profile))
        .route("/api/timeline", get(api::timeline))
        .route("/api/posts", post(api::publish))
        .route("/api/posts/{author}/{number}", axum::routing::delete(api::delete_post))
        .route("/api/posts/{author}/{number}/thread", get(api::thread))
        .route("/api/posts/{author}/{number}/likes", get(api::likes))
        .route("/api/posts/{author}/{number}/like", post(api::like).delete(api::unlike))
        .route("/api/topics", get(api::topics))
        .route("/api/topics/{topic}/history", get(api::history))
        .route(
            "/api/topics/{topic}/subscription",
            post(api::subscribe).delete(api::unsubscribe),
        )
        .route("/api/messages", post(api::send_message))
        .route("/api/inbox", get(api::inbox))
        .route("/api/conversations/{user}", get(api::conversation))
        .route("/api/account", axum::routing::delete(api::delete_account))
        .route("/api/rooms", get(rooms::rooms).post(rooms::create))
        .route("/api/rooms/{room}", get(rooms::read).delete(rooms::delete))
        .route("/api/rooms/{room}/membership", post(rooms::join).delete(rooms::leave))
        .route("/api/rooms/{room}/messages", post(rooms::say))
        .route("/api/live", get(live::live))
}

/// Counts each answer, and keeps API answers out of caches.
async fn observe(State(gateway): State<Arc<Gateway>>, request: Request, next: Next) -> Response {
    let api = request.uri().path().starts_with("/api/");
    let mut response = next.run(request).await;
    gateway.metrics.answered(response.status().as_u16());
    if api {
        api::no_store(response.headers_mut());
    }
    response
}

async fn openapi_json() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], openapi::json()).into_response()
}

/// Every route of the gateway, with its layers.
pub fn router(gateway: Arc<Gateway>, max_body: usize) -> Router {
    api_routes()
        .route("/api/openapi.json", get(openapi_json))
        .route("/", get(web::index))
        .route("/app.js", get(web::app_js))
        .route("/app.css", get(web::app_css))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
        .fallback(api::not_found)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn(web::security_headers))
        .layer(middleware::from_fn_with_state(gateway.clone(), observe))
        .with_state(gateway)
}

/// Runs the gateway until `shutdown` (SIGTERM): open live streams are told to reconnect
/// elsewhere, requests in flight finish.
pub async fn run(args: Args, shutdown: Shutdown) -> anyhow::Result<()> {
    args.check().map_err(anyhow::Error::msg)?;
    let tls = args.tls.load().context("loading the TLS files")?;
    let connection = Connection {
        coordinators: args.coordinators().map_err(anyhow::Error::msg)?,
        tls: tls.as_ref().map(|t| t.client()),
    };
    let resolver = Resolver::new(connection).context("the coordinators' addresses")?;
    let metrics = Arc::new(Metrics::default());
    let gateway = Arc::new(Gateway::new(resolver, &args, metrics.clone(), shutdown.clone()));
    if let Some(port) = args.metrics.resolve(args.port, &[]).map_err(anyhow::Error::msg)? {
        tinysns_common::metrics::serve(&args.bind, port, metrics, shutdown.clone()).await?;
    }
    let app = router(gateway, args.max_body).into_make_service_with_connect_info::<SocketAddr>();
    let address: SocketAddr = format!("{}:{}", args.bind, args.port)
        .parse()
        .with_context(|| format!("--bind {} is not an IP address", args.bind))?;
    let handle = axum_server::Handle::new();
    let stopping = handle.clone();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        stop.wait().await;
        stopping.graceful_shutdown(Some(std::time::Duration::from_secs(10)));
    });
    match (&args.tls.tls_cert, &args.tls.tls_key) {
        (Some(cert), Some(key)) => {
            let config = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
                .await
                .context("loading --tls-cert and --tls-key")?;
            tracing::info!(%address, "serving the web UI and API over HTTPS");
            axum_server::bind_rustls(address, config)
                .handle(handle)
                .serve(app)
                .await?;
        }
        _ => {
            tracing::info!(%address, "serving the web UI and API over plain HTTP (give --tls-cert and --tls-key for HTTPS)");
            axum_server::bind(address).handle(handle).serve(app).await?;
        }
    }
    Ok(())
}
