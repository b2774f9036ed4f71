//! Chores a cluster's master does in the background, through its single writer: numbering
//! topic posts (`sequencer`) and driving account deletions (`deletions`). One loop serves
//! them all: a round every interval while this server is master with a lease and the system
//! can carry the chore's changes, and a fresh start whenever a new reign begins (the state
//! a chore keeps in memory may be stale then; what it acts on is in the replicated store).

use std::future::Future;
use std::time::Duration;
use tinysns_common::features::Feature;
use tinysns_common::membership::{RoleHandle, RoleView};
use tinysns_common::shutdown::Shutdown;

pub trait Chore: Send {
    /// What the chore does, for logs.
    const NAME: &'static str;
    /// The feature whose changes the chore writes.
    const FEATURE: Feature;
    /// This server has become master under a new term.
    fn new_reign(&mut self);
    /// One round of the chore.
    fn round(&mut self, view: &RoleView) -> impl Future<Output = Result<(), crate::store::StoreError>> + Send;
}

/// Writes one step of a chore: a refusal is logged (the step is wrong and will not become
/// right), a write that did not happen is retried by the next round.
pub async fn write_step(writer: &crate::writer::Writer, command: crate::command::Command, what: &str) {
    use crate::command::Outcome;
    match writer.submit(command).await {
        Ok(Outcome::Written(_) | Outcome::Unchanged(_)) => {}
        Ok(Outcome::Rejected(status, message)) => {
            tracing::warn!(?status, %message, step = what, "a chore's step was refused")
        }
        Err(error) => tracing::debug!(%error, step = what, "a chore's step was not written; retried"),
    }
}

/// Runs `chore` every `interval` while this server is master, until shutdown.
pub async fn run_while_master<C: Chore>(mut chore: C, role: RoleHandle, interval: Duration, shutdown: Shutdown) {
    let mut term = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.wait() => return,
        }
        let view = role.current();
        if !view.is_master() || !view.has_lease() {
            term = None;
            continue;
        }
        // A member of an older release could not carry the chore's changes.
        if !C::FEATURE.enabled_at(view.assignment.system_feature_level) {
            continue;
        }
        if term != Some(view.term) {
            term = Some(view.term);
            chore.new_reign();
        }
        if let Err(error) = chore.round(&view).await {
            tracing::warn!(%error, chore = C::NAME, "a background chore cannot go on yet");
        }
    }
}
