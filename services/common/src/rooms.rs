//! Rooms: what names one, and which cluster hosts it.
//!
//! A room is named by 1 to [`MAX_ROOM_LEN`] of `a-z`, `0-9`, `_` and `-`, starting with a
//! letter or a digit; names are case-folded (`Lobby` is `lobby`). Every room has one host
//! cluster, chosen from its name like a topic's home: the host decides who is a member,
//! numbers the messages (gap-free) and keeps who is present.

pub const MAX_ROOM_LEN: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoomNameError {
    #[error("a room name cannot be empty")]
    Empty,
    #[error("a room name has at most {MAX_ROOM_LEN} characters")]
    TooLong,
    #[error("a room name is made of letters, digits, _ and - (starting with a letter or digit): {0:?} is not")]
    BadCharacters(String),
}

/// The canonical name of a room given by a user (`Lobby`, `#lobby` and ` lobby ` are `lobby`).
pub fn parse_room(text: &str) -> Result<String, RoomNameError> {
    let name = text.trim();
    let name = name.strip_prefix('#').unwrap_or(name);
    if name.is_empty() {
        return Err(RoomNameError::Empty);
    }
    if name.chars().count() > MAX_ROOM_LEN {
        return Err(RoomNameError::TooLong);
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    if !name.chars().all(allowed) || !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(RoomNameError::BadCharacters(name.to_string()));
    }
    Ok(name.to_ascii_lowercase())
}

/// Whether `name` is a room's canonical name (as a change from another cluster must carry).
pub fn is_canonical_room(name: &str) -> bool {
    parse_room(name).is_ok_and(|canonical| canonical == name)
}

/// The cluster (1-based) that hosts the room `name` (canonical) among `clusters`.
pub fn host_cluster(name: &str, clusters: u32) -> u32 {
    crate::topics::home_cluster(name, clusters)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_case_folded_and_checked() {
        assert_eq!(parse_room(" #Lobby "), Ok("lobby".to_string()));
        assert_eq!(parse_room("rust-chat_2"), Ok("rust-chat_2".to_string()));
        assert_eq!(parse_room(""), Err(RoomNameError::Empty));
        assert_eq!(parse_room("#"), Err(RoomNameError::Empty));
        assert_eq!(parse_room(&"a".repeat(33)), Err(RoomNameError::TooLong));
        assert!(parse_room(&"a".repeat(32)).is_ok());
        for bad in ["-lobby", "lob by", "lobby!", "<script>", "é"] {
            assert!(matches!(parse_room(bad), Err(RoomNameError::BadCharacters(_))), "{bad}");
        }
        assert!(is_canonical_room("lobby"));
        assert!(!is_canonical_room("Lobby"));
    }

    #[test]
    fn every_room_has_one_host_among_the_clusters() {
        for clusters in 1..=5 {
            for name in ["lobby", "rust", "a", "zz-top"] {
                let host = host_cluster(name, clusters);
                assert!((1..=clusters).contains(&host));
                assert_eq!(host, host_cluster(name, clusters), "always the same");
            }
        }
    }
}
