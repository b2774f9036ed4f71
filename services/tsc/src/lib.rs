//! tsc, the client. `command` parses what the user types, `display` prints replies and posts
//! exactly like the classic Tiny SNS client, `password` reads a password without echo,
//! `timeline` runs timeline mode, and `views` runs the newer commands (profiles, posts,
//! likes). The session, failovers and the resumable timeline are `tinysns-client`'s.

pub mod command;
pub mod display;
pub mod password;
pub mod timeline;
pub mod views;
