//! Reads of the derived tables: accounts, follows, timelines, and a digest to compare replicas.

use super::{Result, bound};
use rusqlite::{Connection, OptionalExtension, params};
use tinysns_common::proto::social::{Post, PostName, Profile, UserRef};

pub fn user_exists(conn: &Connection, user: u64) -> Result<bool> {
    let mut stmt = conn.prepare_cached("SELECT 1 FROM users WHERE user_id = ?1")?;
    Ok(stmt.exists([user as i64])?)
}

/// `(following, version)` of the relation, if it was ever recorded.
pub fn follow_state(conn: &Connection, follower: u64, followee: u64) -> Result<Option<(bool, u64)>> {
    let mut stmt =
        conn.prepare_cached("SELECT following, version FROM follows WHERE follower = ?1 AND followee = ?2")?;
    Ok(stmt
        .query_row([follower as i64, followee as i64], |r| {
            Ok((r.get::<_, bool>(0)?, r.get::<_, i64>(1)? as u64))
        })
        .optional()?)
}

/// The log position of a post, if it is stored.
pub fn post_seq(conn: &Connection, author: u64, post_id: u64) -> Result<Option<u64>> {
    let mut stmt = conn.prepare_cached("SELECT seq FROM posts WHERE author = ?1 AND post_id = ?2")?;
    Ok(stmt
        .query_row([author as i64, post_id as i64], |r| r.get::<_, i64>(0))
        .optional()?
        .map(|s| s as u64))
}

/// The highest post number of `author` this replica holds or saw deleted (0: none): a
/// number is never given twice.
pub fn highest_post_number(conn: &Connection, author: u64) -> Result<u64> {
    Ok(conn
        .prepare_cached(HIGHEST_POST_NUMBER)?
        .query_row([author as i64], |r| r.get::<_, i64>(0))? as u64)
}

/// `+?1`, not `?1`: SQLite (built with STAT4) plans a search on an index prefix for the bound
/// value, so a plain `author = ?1` here was prepared again on every use, 15% of the writer's
/// time under load. The unary plus hides the value from the planner; the index is still used.
pub(super) const HIGHEST_POST_NUMBER: &str =
    "SELECT MAX(COALESCE((SELECT MAX(number) FROM posts WHERE author = +?1), 0),
                COALESCE((SELECT MAX(number) FROM post_tombstones WHERE author = +?1), 0))";

/// The columns [`numbered_post`] reads ...
const NUMBERED_COLUMNS: &str = "p.author, p.post_id, p.text, p.ts_ms, p.seq, p.author_name, p.number,
        p.reply_author, COALESCE(u.username, ''), p.reply_number";
/// ... from `posts p` joined with the replied-to author `u`.
const NUMBERED_FROM: &str = "FROM posts p LEFT JOIN users u ON u.user_id = p.reply_author AND p.reply_number > 0";

/// The post `author/number` (its `seq` is its log position here), if this replica holds it.
pub fn post_by_number(conn: &Connection, author: u64, number: u64) -> Result<Option<Post>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {NUMBERED_COLUMNS} {NUMBERED_FROM} WHERE p.author = ?1 AND p.number = ?2"
    ))?;
    Ok(stmt
        .query_row([author as i64, number.min(i64::MAX as u64) as i64], numbered_post)
        .optional()?)
}

/// The number of the author's post with the client-chosen `post_id`, if stored here.
pub fn post_number(conn: &Connection, author: u64, post_id: u64) -> Result<Option<u64>> {
    Ok(conn
        .prepare_cached("SELECT number FROM posts WHERE author = ?1 AND post_id = ?2")?
        .query_row([author as i64, post_id as i64], |r| r.get::<_, i64>(0))
        .optional()?
        .map(|n| n as u64))
}

/// Whether the author deleted `author/number`.
pub fn is_tombstoned(conn: &Connection, author: u64, number: u64) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM post_tombstones WHERE author = ?1 AND number = ?2")?
        .exists([author as i64, number.min(i64::MAX as u64) as i64])?)
}

/// A post row as [`NUMBERED_COLUMNS`] are selected (counts not filled in).
fn numbered_post(r: &rusqlite::Row<'_>) -> rusqlite::Result<Post> {
    let reply_number = r.get::<_, i64>(9)? as u64;
    Ok(Post {
        number: r.get::<_, i64>(6)? as u64,
        reply_to: (reply_number > 0)
            .then(|| -> rusqlite::Result<PostName> {
                Ok(PostName {
                    author: r.get::<_, i64>(7)? as u64,
                    author_name: r.get(8)?,
                    number: reply_number,
                })
            })
            .transpose()?,
        ..post_row(r)?
    })
}

/// Fills in a post's like and reply counts, and whether `viewer` likes it.
pub fn with_counts(conn: &Connection, mut post: Post, viewer: u64) -> Result<Post> {
    post.likes = like_count(conn, post.author, post.number)?;
    post.liked = like_state(conn, post.author, post.number, viewer)?.is_some_and(|(liked, _)| liked);
    post.replies = conn
        .prepare_cached("SELECT COUNT(*) FROM replies WHERE parent_author = ?1 AND parent_number = ?2")?
        .query_row([post.author as i64, post.number.min(i64::MAX as u64) as i64], |r| {
            r.get::<_, i64>(0)
        })? as u64;
    Ok(post)
}

/// Up to `limit` posts of `author` numbered below `before` (0: from the newest), newest
/// first, each with its counts.
pub fn posts_of(conn: &Connection, author: u64, before: u64, limit: usize, viewer: u64) -> Result<Vec<Post>> {
    let before = if before == 0 { i64::MAX } else { bound(before) };
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {NUMBERED_COLUMNS} {NUMBERED_FROM} WHERE p.author = ?1 AND p.number < ?2
         ORDER BY p.number DESC LIMIT ?3"
    ))?;
    let posts = stmt
        .query_map(params![author as i64, before, limit as i64], numbered_post)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    posts.into_iter().map(|post| with_counts(conn, post, viewer)).collect()
}

/// Where a page of replies starts: after the reply with this (stamp, author, number), in
/// the order replies were made (the same in every cluster).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplyCursor {
    pub hlc: u64,
    pub author: u64,
    pub number: u64,
}

impl ReplyCursor {
    /// The cursor as clients carry it: `<stamp>-<author>-<number>`.
    pub fn token(&self) -> String {
        format!("{}-{}-{}", self.hlc, self.author, self.number)
    }

    /// Reads a token (an empty one is the start).
    pub fn parse(token: &str) -> Option<Self> {
        let token = token.trim();
        if token.is_empty() {
            return Some(Self::default());
        }
        let mut parts = token
            .split('-')
            .map(|p| p.parse::<u64>().ok().filter(|n| *n <= i64::MAX as u64));
        let cursor = Self {
            hlc: parts.next()??,
            author: parts.next()??,
            number: parts.next()??,
        };
        parts.next().is_none().then_some(cursor)
    }
}

/// Up to `limit` direct replies to `author/number` after `after`, oldest first, each with
/// its counts, and the cursor after the last one.
pub fn replies_to(
    conn: &Connection,
    author: u64,
    number: u64,
    after: ReplyCursor,
    limit: usize,
    viewer: u64,
) -> Result<Vec<(Post, ReplyCursor)>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {NUMBERED_COLUMNS}, r.hlc FROM replies r
           JOIN posts p ON p.author = r.author AND p.number = r.number
           LEFT JOIN users u ON u.user_id = p.reply_author AND p.reply_number > 0
         WHERE r.parent_author = ?1 AND r.parent_number = ?2
           AND (r.hlc, r.author, r.number) > (?3, ?4, ?5) ORDER BY r.hlc, r.author, r.number LIMIT ?6"
    ))?;
    let rows = stmt
        .query_map(
            params![
                author as i64,
                number.min(i64::MAX as u64) as i64,
                bound(after.hlc),
                bound(after.author),
                bound(after.number),
                limit as i64
            ],
            |r| {
                let post = numbered_post(r)?;
                let cursor = ReplyCursor {
                    hlc: r.get::<_, i64>(10)? as u64,
                    author: post.author,
                    number: post.number,
                };
                Ok((post, cursor))
            },
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    rows.into_iter()
        .map(|(post, cursor)| Ok((with_counts(conn, post, viewer)?, cursor)))
        .collect()
}

/// Whether `liker` likes `author/number`, and the log position (in the liker's home
/// cluster) that said so; None if it never did.
pub fn like_state(conn: &Connection, author: u64, number: u64, liker: u64) -> Result<Option<(bool, u64)>> {
    Ok(conn
        .prepare_cached("SELECT liked, version FROM likes WHERE author = ?1 AND number = ?2 AND liker = ?3")?
        .query_row(
            params![author as i64, number.min(i64::MAX as u64) as i64, liker as i64],
            |r| Ok((r.get::<_, bool>(0)?, r.get::<_, i64>(1)? as u64)),
        )
        .optional()?)
}

pub fn like_count(conn: &Connection, author: u64, number: u64) -> Result<u64> {
    Ok(conn
        .prepare_cached("SELECT COUNT(*) FROM likes WHERE author = ?1 AND number = ?2 AND liked = 1")?
        .query_row(params![author as i64, number.min(i64::MAX as u64) as i64], |r| {
            r.get::<_, i64>(0)
        })? as u64)
}

/// Up to `limit` users who like `author/number`, ascending by id after `after`.
pub fn likers_page(conn: &Connection, author: u64, number: u64, after: u64, limit: usize) -> Result<Vec<UserRef>> {
    let mut stmt = conn.prepare_cached(
        "SELECT l.liker, COALESCE(u.username, '') FROM likes l LEFT JOIN users u ON u.user_id = l.liker
         WHERE l.author = ?1 AND l.number = ?2 AND l.liked = 1 AND l.liker > ?3 ORDER BY l.liker LIMIT ?4",
    )?;
    let rows = stmt.query_map(
        params![
            author as i64,
            number.min(i64::MAX as u64) as i64,
            bound(after),
            limit as i64
        ],
        |r| {
            Ok(UserRef {
                id: r.get::<_, i64>(0)? as u64,
                username: r.get(1)?,
            })
        },
    )?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The id of the account with this (canonical) username.
pub fn user_by_name(conn: &Connection, username: &str) -> Result<Option<u64>> {
    let mut stmt = conn.prepare_cached("SELECT user_id FROM users WHERE username = ?1")?;
    Ok(stmt
        .query_row([username], |r| r.get::<_, i64>(0))
        .optional()?
        .map(|id| id as u64))
}

pub fn username_of(conn: &Connection, user: u64) -> Result<Option<String>> {
    let mut stmt = conn.prepare_cached("SELECT username FROM users WHERE user_id = ?1")?;
    Ok(stmt
        .query_row([user as i64], |r| r.get::<_, Option<String>>(0))
        .optional()?
        .flatten())
}

/// The stored password hash (PHC string) of a user of this cluster.
pub fn password_hash(conn: &Connection, user: u64) -> Result<Option<String>> {
    let mut stmt = conn.prepare_cached("SELECT phc FROM credentials WHERE user_id = ?1")?;
    Ok(stmt.query_row([user as i64], |r| r.get(0)).optional()?)
}

/// `(user, expires_ms)` of the session whose token hashes to `token_hash`.
pub fn session(conn: &Connection, token_hash: &[u8]) -> Result<Option<(u64, i64)>> {
    let mut stmt = conn.prepare_cached("SELECT user_id, expires_ms FROM sessions WHERE token_hash = ?1")?;
    Ok(stmt
        .query_row([token_hash], |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)))
        .optional()?)
}

/// The highest id this cluster has registered (0 for none).
pub fn highest_registered(conn: &Connection) -> Result<u64> {
    Ok(conn
        .query_row("SELECT value FROM meta WHERE key = 'highest_registered'", [], |r| {
            r.get::<_, i64>(0)
        })
        .optional()?
        .unwrap_or(0) as u64)
}

fn user_refs(stmt: &mut rusqlite::CachedStatement<'_>, args: impl rusqlite::Params) -> Result<Vec<UserRef>> {
    let rows = stmt.query_map(args, |r| {
        Ok(UserRef {
            id: r.get::<_, i64>(0)? as u64,
            username: r.get::<_, Option<String>>(1)?.unwrap_or_default(),
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Up to `limit` users with ids above `after`, ascending.
pub fn users_page(conn: &Connection, after: u64, limit: usize) -> Result<Vec<UserRef>> {
    let mut stmt =
        conn.prepare_cached("SELECT user_id, username FROM users WHERE user_id > ?1 ORDER BY user_id LIMIT ?2")?;
    user_refs(&mut stmt, params![bound(after), limit as i64])
}

/// Up to `limit` followers of `user` with ids above `after`, ascending.
pub fn followers_page(conn: &Connection, user: u64, after: u64, limit: usize) -> Result<Vec<UserRef>> {
    let mut stmt = conn.prepare_cached(
        "SELECT f.follower, u.username FROM follows f LEFT JOIN users u ON u.user_id = f.follower
         WHERE f.followee = ?1 AND f.following = 1 AND f.follower > ?2 ORDER BY f.follower LIMIT ?3",
    )?;
    user_refs(&mut stmt, params![user as i64, bound(after), limit as i64])
}

pub fn all_users(conn: &Connection) -> Result<Vec<u64>> {
    let mut stmt = conn.prepare_cached("SELECT user_id FROM users ORDER BY user_id")?;
    let rows = stmt.query_map([], |r| r.get::<_, i64>(0))?;
    Ok(rows.map(|r| r.map(|v| v as u64)).collect::<rusqlite::Result<_>>()?)
}

pub fn followers(conn: &Connection, user: u64) -> Result<Vec<u64>> {
    let mut stmt =
        conn.prepare_cached("SELECT follower FROM follows WHERE followee = ?1 AND following = 1 ORDER BY follower")?;
    let rows = stmt.query_map([user as i64], |r| r.get::<_, i64>(0))?;
    Ok(rows.map(|r| r.map(|v| v as u64)).collect::<rusqlite::Result<_>>()?)
}

/// Who `user` follows, with the hybrid clock stamp of each follow (`crate::clock`).
pub fn following(conn: &Connection, user: u64) -> Result<Vec<(u64, u64)>> {
    let mut stmt =
        conn.prepare_cached("SELECT followee, since_hlc FROM follows WHERE follower = ?1 AND following = 1")?;
    let rows = stmt.query_map([user as i64], |r| {
        Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The newest `limit` posts (newest first, by hybrid clock stamp) by users `user` follows,
/// made after each follow (by stamp, not wall clock), stored at or before `upto`.
pub fn timeline(conn: &Connection, user: u64, upto: u64, limit: usize) -> Result<Vec<Post>> {
    let mut stmt = conn.prepare_cached(
        "SELECT p.author, p.post_id, p.text, p.ts_ms, p.seq, p.author_name FROM posts p
         JOIN follows f ON f.followee = p.author AND f.follower = ?1 AND f.following = 1
         WHERE p.hlc >= f.since_hlc AND p.seq <= ?2 AND p.author != ?1
         ORDER BY p.hlc DESC, p.seq DESC LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![user as i64, bound(upto), limit as i64], post_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Up to `limit` posts of `user`'s timeline stored after log position `after` and at or
/// before `upto`, oldest first: what a timeline resumed at `after` missed, read from the posts
/// table where the log itself was compacted.
pub fn timeline_between(conn: &Connection, user: u64, after: u64, upto: u64, limit: usize) -> Result<Vec<Post>> {
    let mut stmt = conn.prepare_cached(
        "SELECT p.author, p.post_id, p.text, p.ts_ms, p.seq, p.author_name FROM posts p
         JOIN follows f ON f.followee = p.author AND f.follower = ?1 AND f.following = 1
         WHERE p.hlc >= f.since_hlc AND p.seq > ?2 AND p.seq <= ?3 AND p.author != ?1
         ORDER BY p.seq LIMIT ?4",
    )?;
    let rows = stmt.query_map(params![user as i64, bound(after), bound(upto), limit as i64], post_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

fn post_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Post> {
    Ok(Post {
        author: r.get::<_, i64>(0)? as u64,
        post_id: r.get::<_, i64>(1)? as u64,
        text: r.get(2)?,
        timestamp_ms: r.get(3)?,
        seq: r.get::<_, i64>(4)? as u64,
        author_name: r.get(5)?,
        number: 0,
        likes: 0,
        liked: false,
        reply_to: None,
        replies: 0,
    })
}

pub fn sync_cursor(conn: &Connection) -> Result<u64> {
    Ok(conn
        .query_row("SELECT value FROM meta WHERE key = 'sync_cursor'", [], |r| {
            r.get::<_, i64>(0)
        })
        .optional()?
        .unwrap_or(0) as u64)
}

/// Every stored post as `(author, post_id, number, clock stamp)`, by author and id: what the fault
/// suite's checker compares across replicas and clusters.
pub fn all_posts(conn: &Connection) -> Result<Vec<(u64, u64, u64, u64)>> {
    let mut stmt = conn.prepare("SELECT author, post_id, number, hlc FROM posts ORDER BY author, post_id")?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, i64>(0)? as u64,
            r.get::<_, i64>(1)? as u64,
            r.get::<_, i64>(2)? as u64,
            r.get::<_, i64>(3)? as u64,
        ))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Every relation in force as `(follower, followee)`, in order.
pub fn all_follows(conn: &Connection) -> Result<Vec<(u64, u64)>> {
    let mut stmt =
        conn.prepare("SELECT follower, followee FROM follows WHERE following = 1 ORDER BY follower, followee")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Every like in force as `(liker, author, number)`, in order (for the fault suite's checker).
pub fn all_likes(conn: &Connection) -> Result<Vec<(u64, u64, u64)>> {
    let mut stmt =
        conn.prepare("SELECT liker, author, number FROM likes WHERE liked = 1 ORDER BY liker, author, number")?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, i64>(0)? as u64,
            r.get::<_, i64>(1)? as u64,
            r.get::<_, i64>(2)? as u64,
        ))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The profile of `user` as stored: (display name, bio, version = its origin position).
pub fn profile_fields(conn: &Connection, user: u64) -> Result<Option<(String, String, u64)>> {
    Ok(conn
        .prepare_cached("SELECT display_name, bio, version FROM profiles WHERE user_id = ?1")?
        .query_row([user as i64], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)? as u64,
            ))
        })
        .optional()?)
}

/// A user's profile with its counts as this replica knows them; None for an unknown user.
pub fn profile(conn: &Connection, user: u64) -> Result<Option<Profile>> {
    if !user_exists(conn, user)? {
        return Ok(None);
    }
    let (display_name, bio) = profile_fields(conn, user)?
        .map(|(name, bio, _)| (name, bio))
        .unwrap_or_default();
    let count = |sql: &str| -> Result<u64> {
        Ok(conn
            .prepare_cached(sql)?
            .query_row([user as i64], |r| r.get::<_, i64>(0))? as u64)
    };
    Ok(Some(Profile {
        user_id: user,
        username: username_of(conn, user)?.unwrap_or_default(),
        display_name,
        bio,
        followers: count("SELECT COUNT(*) FROM follows WHERE followee = ?1 AND following = 1")?,
        following: count("SELECT COUNT(*) FROM follows WHERE follower = ?1 AND following = 1")?,
        posts: count("SELECT COUNT(*) FROM posts WHERE author = ?1")?,
    }))
}

/// A digest of the derived state, to compare replicas in tests and tools.
pub fn state_digest(conn: &Connection) -> Result<String> {
    let users = all_users(conn)?;
    let mut stmt = conn.prepare("SELECT follower, followee, following FROM follows ORDER BY follower, followee")?;
    let follows: Vec<(i64, i64, bool)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut stmt = conn.prepare(
        "SELECT author, post_id, seq, number, reply_author, reply_number FROM posts ORDER BY author, post_id",
    )?;
    let posts: Vec<(i64, i64, i64, i64, i64, i64)> = stmt
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut stmt = conn.prepare("SELECT user_id, phc FROM credentials ORDER BY user_id")?;
    let credentials: Vec<(i64, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut stmt = conn.prepare("SELECT user_id, hex(token_hash) FROM sessions ORDER BY token_hash")?;
    let sessions: Vec<(i64, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut stmt = conn.prepare("SELECT user_id, display_name, bio, version FROM profiles ORDER BY user_id")?;
    let profiles: Vec<(i64, String, String, i64)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut stmt =
        conn.prepare("SELECT author, number, liker, liked, version FROM likes ORDER BY author, number, liker")?;
    let likes: Vec<(i64, i64, i64, bool, i64)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut stmt = conn.prepare(
        "SELECT parent_author, parent_number, author, number FROM replies ORDER BY parent_author, parent_number, hlc, author, number",
    )?;
    let replies: Vec<(i64, i64, i64, i64)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut stmt = conn.prepare("SELECT author, number FROM post_tombstones ORDER BY author, number")?;
    let tombstones: Vec<(i64, i64)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(format!(
        "users={users:?} follows={follows:?} posts={posts:?} credentials={credentials:?} sessions={sessions:?} profiles={profiles:?} likes={likes:?} replies={replies:?} tombstones={tombstones:?}"
    ))
}
