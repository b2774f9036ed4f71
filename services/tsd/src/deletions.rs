//! Deleting accounts: the client's call (phase 1 at the user's home), and the master chore
//! that drives every deletion in phase 1 here: saying this cluster is ready (every change it
//! made about the user is in its log before that), and, at the user's home, completing the
//! deletion once every cluster is ready. The phases are in the replicated store, so a master
//! killed between them is replaced by one that carries on.

use crate::chores::Chore;
use crate::command::Command;
use crate::reader::Reader;
use crate::social::{Caller, Social, answer};
use crate::store;
use crate::writer::Writer;
use tinysns_common::features::Feature;
use tinysns_common::membership::RoleView;
use tinysns_common::proto::social::{DeleteAccountRequest, Reply, Status as Code};
use tinysns_common::topology::cluster_of_user;
use tonic::Status;

impl Social {
    /// Starts deleting the caller's account, confirmed by its name (its id in open mode).
    pub(crate) async fn delete_account(&self, caller: Caller, request: DeleteAccountRequest) -> Result<Reply, Status> {
        let me = if caller.username.is_empty() {
            caller.user.to_string()
        } else {
            caller.username.clone()
        };
        let command = if request.confirm.trim().to_ascii_lowercase() != me {
            Command::Refuse {
                status: Code::FailureInvalid,
                message: format!("to delete your account, confirm it with your name ({me})"),
            }
        } else {
            self.gated(
                Feature::AccountDeletion,
                Command::DeleteAccount {
                    user: caller.user,
                    username: caller.username.clone(),
                },
            )
        };
        let mut reply = answer(self.submit(command).await?);
        if reply.status == Code::Success as i32 {
            reply.message = "your account is being deleted in every cluster".into();
        }
        Ok(reply)
    }
}

/// Drives the deletions in phase 1 here.
pub struct Deletions {
    pub cluster: u32,
    pub writer: Writer,
    pub reader: Reader,
}

impl Chore for Deletions {
    const NAME: &'static str = "account deletions";
    const FEATURE: Feature = Feature::AccountDeletion;

    fn new_reign(&mut self) {}

    async fn round(&mut self, view: &RoleView) -> Result<(), store::StoreError> {
        let clusters = view.assignment.clusters;
        let prepared = self.reader.with(store::prepared_deletions).await?;
        for deletion in prepared {
            let command = if !deletion.ready.contains(&self.cluster) {
                Command::ReadyForDeletion {
                    user: deletion.user,
                    cluster: self.cluster,
                }
            } else if cluster_of_user(deletion.user, clusters).is_ok_and(|home| home == self.cluster)
                && (1..=clusters).all(|c| deletion.ready.contains(&c))
            {
                Command::CompleteDeletion {
                    user: deletion.user,
                    username: deletion.username,
                    clusters,
                }
            } else {
                continue;
            };
            crate::chores::write_step(&self.writer, command, "account deletion").await;
        }
        Ok(())
    }
}
