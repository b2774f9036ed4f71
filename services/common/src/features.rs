//! Feature levels: which kinds of change a release can store and carry.
//!
//! During a rolling upgrade old and new releases run side by side. An old replica cannot
//! decode a kind of change it has never heard of: it would store the entry without its
//! content, and an old synchronizer would pass it on empty. So every member reports its
//! [`FEATURE_LEVEL`] in its heartbeats, the coordinator answers with the lowest level among
//! the live members of every cluster (the system's level), and a master accepts a write of
//! a newer kind only once the system's level has reached that kind's [`Feature::level`].
//! Until then the call fails with `FAILURE_UPGRADING` and changes nothing.
//!
//! Adding a kind of change: add a variant with the next level and raise [`FEATURE_LEVEL`].
//! Levels are never reused or lowered. Downgrading a member below the system's level once
//! newer kinds were written is not supported (its log would lose their content).

/// The level of this release.
pub const FEATURE_LEVEL: u32 = 9;

/// A capability that writes a kind of change older releases cannot carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feature {
    /// Display names and bios (`ProfileSet`).
    Profiles,
    /// Likes of posts (`LikeSet`), and post numbers.
    Likes,
    /// Replies (`PostCreated` answering a post) and deleting posts (`PostDeleted`).
    RepliesAndDeletion,
    /// Direct messages, what a user has read (`DirectMessage`, `ConversationRead`) and
    /// blocks (`BlockSet`).
    DirectMessages,
    /// Topics: posts that carry them, their per-topic sequence (`TopicSequenced`) and
    /// subscriptions (`TopicSubscription`).
    Topics,
    /// Deleting accounts (`AccountDeletionPrepared`, `AccountDeletionReady`, `AccountDeleted`).
    AccountDeletion,
    /// Posts kept only where they are needed (`ChangeFeedItem.destinations`, topic numbers
    /// without the post's text, reads answered by the home cluster, progress markers on the
    /// change feed). Until every member has it, every change goes everywhere.
    SelectiveReplication,
    /// Rooms (`RoomChange`).
    Rooms,
}

impl Feature {
    /// The first feature level whose releases can store and carry this feature's changes.
    pub const fn level(self) -> u32 {
        match self {
            Feature::Profiles => 2,
            Feature::Likes => 3,
            Feature::RepliesAndDeletion => 4,
            Feature::DirectMessages => 5,
            Feature::Topics => 6,
            Feature::AccountDeletion => 7,
            Feature::SelectiveReplication => 8,
            Feature::Rooms => 9,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Feature::Profiles => "profiles",
            Feature::Likes => "likes",
            Feature::RepliesAndDeletion => "replies and deleting posts",
            Feature::DirectMessages => "direct messages and blocks",
            Feature::Topics => "topics",
            Feature::AccountDeletion => "deleting accounts",
            Feature::SelectiveReplication => "keeping posts only where they are needed",
            Feature::Rooms => "rooms",
        }
    }

    /// Whether a system at `system_level` may write this feature's changes.
    pub const fn enabled_at(self, system_level: u32) -> bool {
        system_level >= self.level()
    }

    /// What a client is told while the feature waits for an upgrade to finish.
    pub fn upgrading_message(self, system_level: u32) -> String {
        format!(
            "{} need every member at feature level {} (the system is at {system_level}): an upgrade is under way, try again once it has finished",
            self.name(),
            self.level()
        )
    }
}

/// The system's level: the lowest among `members` (0 when there are none).
pub fn system_level(members: impl IntoIterator<Item = u32>) -> u32 {
    members.into_iter().min().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_is_as_new_as_its_oldest_member() {
        assert_eq!(system_level([2, 2, 2]), 2);
        assert_eq!(system_level([2, 0, 2]), 0);
        assert_eq!(system_level([3, 2]), 2);
        assert_eq!(system_level([]), 0);
    }

    #[test]
    fn a_feature_waits_for_its_level() {
        assert!(!Feature::Profiles.enabled_at(0));
        assert!(!Feature::Profiles.enabled_at(1));
        assert!(Feature::Profiles.enabled_at(2));
        assert!(Feature::Profiles.enabled_at(7));
        assert!(
            Feature::Profiles.level() <= FEATURE_LEVEL,
            "this release writes what it offers"
        );
        let message = Feature::Profiles.upgrading_message(1);
        assert!(message.contains("level 2") && message.contains("at 1"), "{message}");
    }
}
