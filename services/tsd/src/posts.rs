//! Posts by name (`alice/17`): storing one (from a timeline stream or Publish, possibly a
//! reply), a user's posts newest first with their counts, a post's thread of replies, and
//! deleting one's own post (a tombstone in every cluster).

use crate::command::{Command, Outcome};
use crate::social::{Caller, Social, answer};
use crate::store;
use tinysns_common::features::Feature;
use tinysns_common::limits::{page_size, parse_post_name, validate_post_text};
use tinysns_common::proto::social::{
    LikesRequest, PostRef, PostsReply, PostsRequest, PublishReply, PublishRequest, Reply, Status as Code, ThreadReply,
    ThreadRequest,
};
use tinysns_common::topics::topics_of;
use tonic::Status;

pub(crate) type Refusal = (Code, String);

impl Social {
    /// The author and number a post name (`alice/17`) names, or why it names no post.
    pub(crate) async fn resolve_post(&self, name: &str) -> Result<Result<(u64, u64), Refusal>, Status> {
        let name = match parse_post_name(name) {
            Ok(name) => name,
            Err(e) => return Ok(Err((Code::FailureInvalid, e.to_string()))),
        };
        Ok(self
            .resolve_target(&name.author)
            .await?
            .map(|author| (author, name.number)))
    }

    /// Whether the post `author/number` is kept only at its author's cluster, which says it
    /// exists (Ok(true)); Ok(false) when this cluster keeps it or would (its author is ours),
    /// so the writer checks it here; or why there is no such post.
    pub(crate) async fn vouched(
        &self,
        viewer: u64,
        (author, number): (u64, u64),
    ) -> Result<Result<bool, Refusal>, Status> {
        let Some(home) = self.home_of(author) else {
            return Ok(Ok(false));
        };
        if self
            .read(move |c| store::post_by_number(c, author, number))
            .await?
            .is_some()
        {
            return Ok(Ok(false));
        }
        let probe = LikesRequest {
            post: format!("{author}/{number}"),
            page_size: 1,
            users_after: 0,
        };
        let answer = self.peers.likes(home, viewer, (author, number), probe).await?;
        Ok(match Code::try_from(answer.status) {
            Ok(Code::Success) => Ok(true),
            Ok(code) => Err((code, answer.message)),
            Err(_) => Err((Code::FailureUnknown, answer.message)),
        })
    }

    /// Stores the caller's post (once per `post_id`: a re-sent post succeeds again) and says
    /// what became of it. Only a failing writer is an error.
    pub(crate) async fn store_post(
        &self,
        caller: &Caller,
        post_id: u64,
        text: String,
        reply_to: Option<(u64, u64)>,
        explicit_topics: &[String],
    ) -> Result<Refusal, Status> {
        if let Err(problem) = validate_post_text(&text) {
            return Ok((Code::FailureInvalid, problem.to_string()));
        }
        let mut topics = match topics_of(&text, explicit_topics) {
            Ok(topics) => topics,
            Err(problem) => return Ok((Code::FailureInvalid, problem.to_string())),
        };
        // While an upgrade is under way a post is never refused for the #tags in its text:
        // it is stored without topics (explicit topics are refused below).
        let topics_enabled = Feature::Topics.enabled_at(self.role.current().assignment.system_feature_level);
        if !topics_enabled && explicit_topics.is_empty() {
            topics.clear();
        }
        let parent_vouched = match reply_to {
            Some(parent) => match self.vouched(caller.user, parent).await? {
                Ok(vouched) => vouched,
                Err(refusal) => return Ok(refusal),
            },
            None => false,
        };
        let command = Command::Post {
            author: caller.user,
            author_name: caller.username.clone(),
            post_id,
            text,
            reply_to,
            parent_vouched,
            topics,
        };
        let command = match reply_to {
            Some(_) => self.gated(Feature::RepliesAndDeletion, command),
            None => command,
        };
        let command = match explicit_topics.is_empty() {
            true => command,
            false => self.gated(Feature::Topics, command),
        };
        Ok(match self.submit(command).await? {
            Outcome::Rejected(status, message) => (status, message),
            outcome => {
                // Unchanged: a retried post, stored and counted the first time.
                if matches!(outcome, Outcome::Written(_)) {
                    self.metrics.post_accepted();
                }
                (Code::Success, String::new())
            }
        })
    }

    /// A post (or a reply) without a timeline stream.
    pub(crate) async fn publish(&self, caller: Caller, request: PublishRequest) -> Result<PublishReply, Status> {
        let post_id = match request.post_id {
            0 => rand::random::<u64>() >> 1,
            id => id,
        };
        let reply_to = if request.reply_to.trim().is_empty() {
            Ok(None)
        } else {
            self.resolve_post(&request.reply_to).await?.map(Some)
        };
        let (status, message) = match reply_to {
            Ok(reply_to) => {
                self.store_post(&caller, post_id, request.text, reply_to, &request.topics)
                    .await?
            }
            // Through the writer, so that a deposed master cannot answer it.
            Err((status, message)) => match self.submit(Command::Refuse { status, message }).await? {
                Outcome::Rejected(status, message) => (status, message),
                _ => (Code::FailureUnknown, String::new()),
            },
        };
        let number = if status == Code::Success {
            let author = caller.user;
            self.read(move |c| store::post_number(c, author, post_id))
                .await?
                .unwrap_or_default()
        } else {
            0
        };
        Ok(PublishReply {
            status: status as i32,
            message,
            number,
        })
    }

    /// A user's posts (the caller's when `user` is empty), newest first, with their counts.
    /// A user's posts, newest first: read at the author's home, which keeps them all.
    pub(crate) async fn posts_of(&self, caller: Caller, request: PostsRequest) -> Result<PostsReply, Status> {
        let refused = |(status, message): Refusal| PostsReply {
            status: status as i32,
            message,
            ..Default::default()
        };
        let author = if request.user.trim().is_empty() {
            caller.user
        } else {
            match self.resolve_target(&request.user).await? {
                Ok(user) => user,
                Err(refusal) => return Ok(refused(refusal)),
            }
        };
        match self.home_of(author) {
            Some(home) => self.peers.posts(home, caller.user, author, request).await,
            None => self.posts_here(caller.user, author, request).await,
        }
    }

    /// [`Self::posts_of`] `author` from this cluster's store, for `viewer` (of any cluster).
    pub(crate) async fn posts_here(
        &self,
        viewer: u64,
        author: u64,
        request: PostsRequest,
    ) -> Result<PostsReply, Status> {
        let refused = |(status, message): Refusal| PostsReply {
            status: status as i32,
            message,
            ..Default::default()
        };
        let (limit, before) = (page_size(request.limit), request.before_number);
        let found = self
            .read(move |c| {
                if !store::user_exists(c, author)? {
                    return Ok(None);
                }
                store::posts_of(c, author, before, limit + 1, viewer).map(Some)
            })
            .await?;
        let Some(mut posts) = found else {
            return Ok(refused((
                Code::FailureNotExists,
                format!("user {author} does not exist"),
            )));
        };
        let more = posts.len() > limit;
        posts.truncate(limit);
        Ok(PostsReply {
            status: Code::Success as i32,
            message: String::new(),
            next_before_number: if more { posts.last().map_or(0, |p| p.number) } else { 0 },
            posts,
        })
    }

    /// A post with a page of its direct replies, oldest first: read at the author's home,
    /// which keeps every reply.
    pub(crate) async fn thread(&self, caller: Caller, request: ThreadRequest) -> Result<ThreadReply, Status> {
        let refused = |(status, message): Refusal| ThreadReply {
            status: status as i32,
            message,
            ..Default::default()
        };
        let (author, number) = match self.resolve_post(&request.post).await? {
            Ok(post) => post,
            Err(refusal) => return Ok(refused(refusal)),
        };
        match self.home_of(author) {
            Some(home) => self.peers.thread(home, caller.user, (author, number), request).await,
            None => self.thread_here(caller.user, (author, number), request).await,
        }
    }

    /// [`Self::thread`] of the post `author/number` from this cluster's store, for `viewer`
    /// (of any cluster).
    pub(crate) async fn thread_here(
        &self,
        viewer: u64,
        (author, number): (u64, u64),
        request: ThreadRequest,
    ) -> Result<ThreadReply, Status> {
        let refused = |(status, message): Refusal| ThreadReply {
            status: status as i32,
            message,
            ..Default::default()
        };
        let Some(after) = store::ReplyCursor::parse(&request.page_token) else {
            return Ok(refused((
                Code::FailureInvalid,
                "the page token is not one this server gave".into(),
            )));
        };
        let limit = page_size(request.limit);
        let found = self
            .read(move |c| {
                let Some(post) = store::post_by_number(c, author, number)? else {
                    return Ok(Err(store::is_tombstoned(c, author, number)?));
                };
                let post = store::with_counts(c, post, viewer)?;
                Ok(Ok((
                    post,
                    store::replies_to(c, author, number, after, limit + 1, viewer)?,
                )))
            })
            .await?;
        let name = request.post.trim();
        let (post, mut replies) = match found {
            Ok(found) => found,
            Err(true) => return Ok(refused((Code::FailureNotExists, format!("{name} was deleted")))),
            Err(false) => return Ok(refused((Code::FailureNotExists, format!("there is no post {name}")))),
        };
        let more = replies.len() > limit;
        replies.truncate(limit);
        let next_page_token = match replies.last() {
            Some((_, cursor)) if more => cursor.token(),
            _ => String::new(),
        };
        Ok(ThreadReply {
            status: Code::Success as i32,
            message: String::new(),
            post: Some(post),
            next_page_token,
            replies: replies.into_iter().map(|(post, _)| post).collect(),
        })
    }

    /// Deletes one of the caller's own posts (deleting it again succeeds).
    pub(crate) async fn delete_own_post(&self, caller: Caller, request: PostRef) -> Result<Reply, Status> {
        let command = match self.resolve_post(&request.post).await? {
            Ok((author, number)) if author == caller.user => Command::DeletePost { author, number },
            Ok(_) => Command::Refuse {
                status: Code::FailureInvalid,
                message: "you can delete only your own posts".into(),
            },
            // Through the writer, so that a deposed master cannot answer it.
            Err((status, message)) => Command::Refuse { status, message },
        };
        Ok(answer(
            self.submit(self.gated(Feature::RepliesAndDeletion, command)).await?,
        ))
    }
}
