//! tsc, the client. `command` parses what the user types, `display` prints replies and posts
//! exactly like the classic Tiny SNS client, `session` finds the user's server through the
//! coordinator and follows it across failovers, and `timeline` runs timeline mode.

pub mod command;
pub mod display;
pub mod session;
pub mod timeline;
