//! The tinysns gateway: the HTTP/WebSocket face of the system for browsers. `auth` is what a
//! browser session is (cookie, CSRF token, origin), `client_address` who a request comes from
//! (behind trusted proxies), `state` what requests share and how a
//! request becomes an authenticated caller, `api` the JSON calls (`rooms` those of rooms), `live` the WebSocket (`room_watch` what a page says on it),
//! `views` the JSON shapes, `web` the embedded UI and security headers, `openapi` the API's
//! description, `server` the routes and serving, `config` the flags, `metrics` Prometheus.

pub mod api;
pub mod auth;
pub mod client_address;
pub mod config;
pub mod error;
pub mod live;
pub mod metrics;
pub mod openapi;
pub mod room_watch;
pub mod rooms;
pub mod server;
pub mod state;
pub mod views;
pub mod web;
