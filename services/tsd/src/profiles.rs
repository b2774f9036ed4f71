//! Profiles: a display name and a bio each user sets at its home cluster, replicated to
//! every cluster like its follows, and shown with follower, following and post counts.

use crate::command::Command;
use crate::social::{Caller, Social, answer};
use crate::store;
use tinysns_common::features::Feature;
use tinysns_common::limits::validate_profile;
use tinysns_common::proto::social::{ProfileReply, ProfileRequest, Reply, SetProfileRequest, Status as Code};
use tonic::Status;

fn refused(status: Code, message: impl Into<String>) -> ProfileReply {
    ProfileReply {
        status: status as i32,
        message: message.into(),
        profile: None,
    }
}

impl Social {
    /// Anyone's profile (the caller's when `user` is empty), with its count of posts from the
    /// user's home.
    pub(crate) async fn get_profile_of(&self, caller: Caller, request: ProfileRequest) -> Result<ProfileReply, Status> {
        let user = if request.user.trim().is_empty() {
            caller.user
        } else {
            match self.resolve_target(&request.user).await? {
                Ok(user) => user,
                Err((status, message)) => return Ok(refused(status, message)),
            }
        };
        let mut reply = self.profile_here(user).await?;
        // Follows are kept everywhere (here with the caller's own latest); the posts only
        // at the user's home, which counts them.
        if let (Some(home), Some(profile)) = (self.home_of(user), reply.profile.as_mut()) {
            let at_home = self.peers.profile(home, caller.user, user).await?;
            profile.posts = at_home.profile.map_or(profile.posts, |p| p.posts);
        }
        Ok(reply)
    }

    /// [`Self::get_profile_of`] `user` from this cluster's store.
    pub(crate) async fn profile_here(&self, user: u64) -> Result<ProfileReply, Status> {
        Ok(match self.read(move |c| store::profile(c, user)).await? {
            Some(profile) => ProfileReply {
                status: Code::Success as i32,
                message: String::new(),
                profile: Some(profile),
            },
            None => refused(Code::FailureNotExists, format!("user {user} does not exist")),
        })
    }

    /// Sets the caller's profile. Its home cluster is the one serving the caller.
    pub(crate) async fn set_own_profile(&self, caller: Caller, request: SetProfileRequest) -> Result<Reply, Status> {
        let trimmed = |field: Option<String>| field.map(|text| text.trim().to_owned());
        let (display_name, bio) = (trimmed(request.display_name), trimmed(request.bio));
        let check = validate_profile(
            display_name.as_deref().unwrap_or_default(),
            bio.as_deref().unwrap_or_default(),
        );
        let command = match check {
            Ok(()) => Command::SetProfile {
                user: caller.user,
                display_name,
                bio,
            },
            // Through the writer, so that a deposed master cannot answer it.
            Err(e) => Command::Refuse {
                status: Code::FailureInvalid,
                message: e.to_string(),
            },
        };
        Ok(answer(self.submit(self.gated(Feature::Profiles, command)).await?))
    }
}
