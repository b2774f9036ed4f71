//! Likes: liking and unliking a post (written at the liker's home cluster, replicated
//! everywhere, last writer wins), and who likes a post.

use crate::command::Command;
use crate::posts::Refusal;
use crate::social::{Caller, MAX_LIST_PAGE, Social, answer};
use crate::store;
use tinysns_common::features::Feature;
use tinysns_common::proto::social::{LikesReply, LikesRequest, PostRef, Reply, Status as Code};
use tonic::Status;

impl Social {
    /// The caller likes (`on`) or stops liking a post; idempotent.
    pub(crate) async fn like(&self, caller: Caller, request: PostRef, on: bool) -> Result<Reply, Status> {
        let post = match self.resolve_post(&request.post).await? {
            Ok(post) => match self.vouched(caller.user, post).await? {
                Ok(vouched) => Ok((post, vouched)),
                Err(refusal) => Err(refusal),
            },
            Err(refusal) => Err(refusal),
        };
        let command = match post {
            Ok(((author, number), vouched)) => Command::Like {
                liker: caller.user,
                liker_name: caller.username.clone(),
                author,
                number,
                on,
                vouched,
            },
            // Through the writer, so that a deposed master cannot answer it.
            Err((status, message)) => Command::Refuse { status, message },
        };
        Ok(answer(self.submit(self.gated(Feature::Likes, command)).await?))
    }

    /// Who likes a post (a page of them), how many, and whether the caller does.
    pub(crate) async fn likes_of(&self, caller: Caller, request: LikesRequest) -> Result<LikesReply, Status> {
        let refused = |(status, message): Refusal| LikesReply {
            status: status as i32,
            message,
            ..Default::default()
        };
        let (author, number) = match self.resolve_post(&request.post).await? {
            Ok(post) => post,
            Err(refusal) => return Ok(refused(refusal)),
        };
        // Likes are kept everywhere, so this cluster lists them, and the caller sees their
        // own latest like at once. Only whether the post exists may need its author's
        // cluster, when this one does not keep it.
        let vouched = match self.vouched(caller.user, (author, number)).await? {
            Ok(vouched) => vouched,
            Err(refusal) => return Ok(refused(refusal)),
        };
        self.likes_here(caller.user, (author, number), request, vouched).await
    }

    /// [`Self::likes_of`] the post `author/number` from this cluster's store, for `viewer`
    /// (of any cluster). A post this cluster does not keep is listed only when its author's
    /// cluster has `vouched` for it; a tombstone here still wins.
    pub(crate) async fn likes_here(
        &self,
        viewer: u64,
        (author, number): (u64, u64),
        request: LikesRequest,
        vouched: bool,
    ) -> Result<LikesReply, Status> {
        let refused = |(status, message): Refusal| LikesReply {
            status: status as i32,
            message,
            ..Default::default()
        };
        let size = match request.page_size as usize {
            0 => MAX_LIST_PAGE,
            n => n.min(MAX_LIST_PAGE),
        };
        let after = request.users_after;
        let found = self
            .read(move |c| {
                let kept = store::post_by_number(c, author, number)?.is_some();
                if !(kept || vouched && !store::is_tombstoned(c, author, number)?) {
                    return Ok(None);
                }
                let users = store::likers_page(c, author, number, after, size + 1)?;
                let count = store::like_count(c, author, number)?;
                let liked = store::like_state(c, author, number, viewer)?.is_some_and(|(liked, _)| liked);
                Ok(Some((users, count, liked)))
            })
            .await?;
        let Some((mut users, count, liked)) = found else {
            return Ok(refused((
                Code::FailureNotExists,
                format!("there is no post {}", request.post.trim()),
            )));
        };
        let more = users.len() > size;
        users.truncate(size);
        Ok(LikesReply {
            status: Code::Success as i32,
            message: String::new(),
            count,
            liked,
            next_users_after: if more { users.last().map_or(0, |u| u.id) } else { 0 },
            users,
        })
    }
}
