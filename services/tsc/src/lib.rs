//! tsc, the client. `command` parses what the user types, `display` prints replies and posts
//! exactly like the classic Tiny SNS client, `session` finds the user's server through the
//! coordinator, logs in (or registers) once and follows the server across failovers with the
//! same session token, `password` reads a password without echo, `timeline` runs
//! timeline mode, and `views` runs the newer commands (profiles, posts, likes).

pub mod command;
pub mod display;
pub mod password;
pub mod session;
pub mod timeline;
pub mod views;
