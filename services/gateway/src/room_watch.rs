//! What a page says on its live WebSocket, and what it is sent back about the room it shows.
//! A page showing a room says so (`{"room": "lobby", "active": true}`), again whenever its
//! user does something (a key, a click, the tab coming back), and `{"room": null}` when it
//! leaves the room. "Active" marks the user present at the room's host; the gateway also
//! looks at the room every `--live-presence-every` without marking anyone, and sends
//! `presence` only when who is here or away has changed. A user who only keeps the page open
//! goes away after the host's `--room-idle`, as the issue's presence asks.

use serde::Deserialize;

/// One message from the page.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PageSays {
    /// The room the page shows (None: none).
    pub room: Option<String>,
    /// The user did something on the page just now.
    #[serde(default)]
    pub active: bool,
}

/// The room a live socket watches, and the presence it last sent.
#[derive(Debug, Default)]
pub struct RoomWatch {
    room: Option<String>,
    sent: Option<Vec<(String, bool)>>,
}

/// A look at the room to take now.
#[derive(Debug, PartialEq)]
pub struct Look {
    pub room: String,
    /// Mark the user present.
    pub present: bool,
}

impl RoomWatch {
    /// Takes a message from the page: the look to take now, if any, or why the message is
    /// not one a page of ours sends.
    pub fn hear(&mut self, text: &str) -> Result<Option<Look>, String> {
        let says: PageSays = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if says.room != self.room {
            self.sent = None;
        }
        self.room = says.room;
        Ok(self.room.clone().map(|room| Look {
            room,
            present: says.active,
        }))
    }

    /// The look of a periodic check (never marking the user present), if a room is watched.
    pub fn check(&self) -> Option<Look> {
        self.room.clone().map(|room| Look { room, present: false })
    }

    /// Whether `members` (name, present) of `room` differ from what was sent last; if so
    /// they count as sent. A look at a room the page has left since changes nothing.
    pub fn changed(&mut self, room: &str, mut members: Vec<(String, bool)>) -> bool {
        if self.room.as_deref() != Some(room) {
            return false;
        }
        members.sort();
        if self.sent.as_ref() == Some(&members) {
            return false;
        }
        self.sent = Some(members);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(list: &[(&str, bool)]) -> Vec<(String, bool)> {
        list.iter().map(|(n, p)| (n.to_string(), *p)).collect()
    }

    #[test]
    fn presence_is_sent_when_it_changes_for_the_room_shown() {
        let mut watch = RoomWatch::default();
        assert_eq!(watch.check(), None, "no room: nothing to look at");
        let look = watch.hear(r#"{"room": "lobby", "active": true}"#).unwrap();
        assert_eq!(
            look,
            Some(Look {
                room: "lobby".into(),
                present: true
            })
        );
        assert_eq!(
            watch.check(),
            Some(Look {
                room: "lobby".into(),
                present: false
            })
        );
        assert!(watch.changed("lobby", members(&[("alice", true), ("bob", true)])));
        assert!(
            !watch.changed("lobby", members(&[("bob", true), ("alice", true)])),
            "the same, in another order"
        );
        assert!(
            watch.changed("lobby", members(&[("alice", true), ("bob", false)])),
            "bob went away"
        );
        // Another room: its presence is new; a late answer about the old one is dropped.
        watch.hear(r#"{"room": "hall"}"#).unwrap();
        assert!(!watch.changed("lobby", members(&[("alice", true)])));
        assert!(watch.changed("hall", members(&[("alice", true), ("bob", false)])));
        assert_eq!(watch.hear(r#"{"room": null}"#).unwrap(), None);
        assert_eq!(watch.check(), None);
    }

    #[test]
    fn anything_else_from_the_page_is_refused() {
        let mut watch = RoomWatch::default();
        for junk in ["", "hello", r#"{"room": 5}"#, r#"{"room": "x", "user": "bob"}"#] {
            assert!(watch.hear(junk).is_err(), "{junk}");
        }
    }
}
