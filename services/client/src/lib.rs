//! The one client library of tinysns, used by `tsc`, the gateway, the test harness and the
//! benchmark. `session` finds the user's master through the coordinator, logs in (or
//! registers, or carries on a session logged in elsewhere) and follows the master across
//! failovers with the same token; `resume` is what a resumable timeline means (where to
//! resume, what was shown, what waits for an acknowledgement); `live` carries it over
//! streams that break and reopen.

pub mod calls;
pub mod live;
pub mod resume;
pub mod session;
