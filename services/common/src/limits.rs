//! Input limits for everything a client can send. One definition, used by the server to
//! reject and by the client to warn early.

/// Longest post accepted, in bytes of UTF-8. Generous for a "tiny Twitter" yet small enough
/// that a single post can never dominate a replication batch or an AMQP frame.
pub const MAX_POST_BYTES: usize = 4096;

/// Why a post text was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PostTextError {
    #[error("post is empty")]
    Empty,
    #[error("post is {0} bytes, the limit is {MAX_POST_BYTES}")]
    TooLong(usize),
    #[error("post contains a control character (U+{0:04X})")]
    ControlCharacter(u32),
}

/// Accepts printable text; tabs are allowed, other control characters (including newlines,
/// which would break the one-line-per-post display) are not.
pub fn validate_post_text(text: &str) -> Result<(), PostTextError> {
    if text.trim().is_empty() {
        return Err(PostTextError::Empty);
    }
    if text.len() > MAX_POST_BYTES {
        return Err(PostTextError::TooLong(text.len()));
    }
    if let Some(c) = text.chars().find(|c| c.is_control() && *c != '\t') {
        return Err(PostTextError::ControlCharacter(c as u32));
    }
    Ok(())
}

/// Longest display name and bio of a profile, in characters.
pub const MAX_DISPLAY_NAME_CHARS: usize = 64;
pub const MAX_BIO_CHARS: usize = 280;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProfileError {
    #[error("the {field} is longer than {max} characters ({len})")]
    TooLong {
        field: &'static str,
        max: usize,
        len: usize,
    },
    #[error("the {field} holds a control character (U+{code:04X})")]
    ControlCharacter { field: &'static str, code: u32 },
}

/// A profile's display name and bio: bounded, one line each, no control characters. Empty
/// is allowed (nothing shown).
pub fn validate_profile(display_name: &str, bio: &str) -> Result<(), ProfileError> {
    for (field, text, max) in [
        ("display name", display_name, MAX_DISPLAY_NAME_CHARS),
        ("bio", bio, MAX_BIO_CHARS),
    ] {
        let len = text.chars().count();
        if len > max {
            return Err(ProfileError::TooLong { field, max, len });
        }
        if let Some(c) = text.chars().find(|c| c.is_control()) {
            return Err(ProfileError::ControlCharacter { field, code: c as u32 });
        }
    }
    Ok(())
}

/// Longest username, in characters of `[a-z0-9_]`.
pub const MAX_USERNAME_LEN: usize = 32;
/// Password length bounds, in bytes of UTF-8.
pub const MIN_PASSWORD_BYTES: usize = 8;
pub const MAX_PASSWORD_BYTES: usize = 128;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AccountInputError {
    #[error("a username is 1 to {MAX_USERNAME_LEN} characters of a-z, 0-9 and _")]
    Username,
    #[error("a password is {MIN_PASSWORD_BYTES} to {MAX_PASSWORD_BYTES} bytes")]
    PasswordLength,
}

/// The canonical (lower-case) form of a username, or why it is not one. Usernames are
/// case-insensitive: `Alice` and `alice` are one account.
pub fn canonical_username(text: &str) -> Result<String, AccountInputError> {
    let ok = !text.is_empty()
        && text.len() <= MAX_USERNAME_LEN
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(text.to_ascii_lowercase())
    } else {
        Err(AccountInputError::Username)
    }
}

pub fn validate_password(password: &str) -> Result<(), AccountInputError> {
    if (MIN_PASSWORD_BYTES..=MAX_PASSWORD_BYTES).contains(&password.len()) {
        Ok(())
    } else {
        Err(AccountInputError::PasswordLength)
    }
}

/// Highest term any member may claim. Terms grow by one per election, so no real deployment
/// comes near it; a larger one is forged or corrupt, and accepting it would overflow.
pub const MAX_TERM: u64 = 1 << 53;

/// Highest log position accepted from the network (positions are stored as SQLite's signed
/// 64-bit integers, and a log grows by far less than 2^53 entries in any lifetime).
pub const MAX_LSN: u64 = 1 << 53;

/// Parses a user name as the positive integer user id it must be.
pub fn parse_user_id(text: &str) -> Option<u64> {
    let t = text.trim();
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    t.parse::<u64>().ok().filter(|&id| id > 0)
}

/// A post as users name it: `<author>/<number>` (`alice/17`, or `7/17` in open mode).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostName {
    /// The author as typed (a username or a numeric id; the server resolves it).
    pub author: String,
    pub number: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("a post is named <author>/<number>, as in alice/17")]
pub struct PostNameError;

/// Reads `<author>/<number>`: a non-empty author of at most [`MAX_USERNAME_LEN`] characters
/// and a post number from 1 to [`MAX_LSN`].
pub fn parse_post_name(text: &str) -> Result<PostName, PostNameError> {
    let (author, number) = text.trim().split_once('/').ok_or(PostNameError)?;
    let ok_author = !author.is_empty() && author.len() <= MAX_USERNAME_LEN && !author.contains(char::is_whitespace);
    let number = parse_user_id(number).filter(|n| *n <= MAX_LSN).ok_or(PostNameError)?;
    if !ok_author {
        return Err(PostNameError);
    }
    Ok(PostName {
        author: author.to_owned(),
        number,
    })
}

impl std::fmt::Display for PostName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.author, self.number)
    }
}

/// Posts per page of a paged view, by default and at most.
pub const DEFAULT_PAGE: usize = 20;
pub const MAX_PAGE: usize = 100;

/// The page size a request asks for (0: the default), capped at [`MAX_PAGE`].
pub fn page_size(asked: u32) -> usize {
    match asked as usize {
        0 => DEFAULT_PAGE,
        n => n.min(MAX_PAGE),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn posts_are_named_author_slash_number() {
        let name = parse_post_name(" alice/17 ").unwrap();
        assert_eq!((name.author.as_str(), name.number), ("alice", 17));
        assert_eq!(name.to_string(), "alice/17");
        assert_eq!(parse_post_name("7/1").unwrap().author, "7");
        for bad in [
            "",
            "alice",
            "alice/",
            "/3",
            "alice/0",
            "alice/-1",
            "alice/x",
            "alice/3/4",
            "a b/3",
            "alice/99999999999999999999",
        ] {
            assert_eq!(parse_post_name(bad), Err(PostNameError), "{bad:?}");
        }
        let long = format!("{}/1", "a".repeat(MAX_USERNAME_LEN + 1));
        assert_eq!(parse_post_name(&long), Err(PostNameError));
    }

    #[test]
    fn pages_default_to_20_and_stop_at_100() {
        assert_eq!(
            (page_size(0), page_size(7), page_size(100), page_size(5000)),
            (20, 7, 100, 100)
        );
    }

    #[test]
    fn profiles_are_bounded_one_line_texts() {
        assert_eq!(validate_profile("", ""), Ok(()));
        assert_eq!(
            validate_profile(&"é".repeat(MAX_DISPLAY_NAME_CHARS), "bio"),
            Ok(()),
            "characters, not bytes"
        );
        assert!(matches!(
            validate_profile(&"x".repeat(MAX_DISPLAY_NAME_CHARS + 1), ""),
            Err(ProfileError::TooLong {
                field: "display name",
                ..
            })
        ));
        assert!(matches!(
            validate_profile("", &"x".repeat(MAX_BIO_CHARS + 1)),
            Err(ProfileError::TooLong { field: "bio", .. })
        ));
        assert!(matches!(
            validate_profile("a\tb", ""),
            Err(ProfileError::ControlCharacter { code: 9, .. })
        ));
    }

    #[test]
    fn post_text_rules() {
        assert_eq!(validate_post_text("hello\tworld"), Ok(()));
        assert_eq!(validate_post_text("  "), Err(PostTextError::Empty));
        assert_eq!(validate_post_text("a\nb"), Err(PostTextError::ControlCharacter(10)));
        assert_eq!(validate_post_text("a\u{7}"), Err(PostTextError::ControlCharacter(7)));
        let long = "é".repeat(MAX_POST_BYTES / 2 + 1);
        assert_eq!(validate_post_text(&long), Err(PostTextError::TooLong(long.len())));
        assert_eq!(validate_post_text(&"x".repeat(MAX_POST_BYTES)), Ok(()));
    }

    #[test]
    fn usernames_and_passwords() {
        assert_eq!(canonical_username("Alice_42").unwrap(), "alice_42");
        assert_eq!(canonical_username(&"a".repeat(32)).unwrap(), "a".repeat(32));
        for bad in ["", "a b", "ali-ce", "é", &"a".repeat(33), "a\u{0}"] {
            assert_eq!(canonical_username(bad), Err(AccountInputError::Username), "{bad:?}");
        }
        assert_eq!(validate_password("12345678"), Ok(()));
        assert_eq!(validate_password("1234567"), Err(AccountInputError::PasswordLength));
        assert_eq!(
            validate_password(&"p".repeat(129)),
            Err(AccountInputError::PasswordLength)
        );
    }

    #[test]
    fn user_ids() {
        assert_eq!(parse_user_id("42"), Some(42));
        assert_eq!(parse_user_id(" 7 "), Some(7));
        for bad in ["0", "-1", "abc", "", "1.5", "99999999999999999999999", "+3"] {
            assert_eq!(parse_user_id(bad), None, "{bad}");
        }
    }
}
