//! Failures of the Redis store: infrastructure errors, never business outcomes.

use std::sync::Arc;

/// Redis could not do what was asked. Cloned when one failed call answers several waiting
/// purchases (a batch).
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// Redis is unreachable, timed out, or refused the command.
    #[error("redis call failed")]
    Redis(#[from] redis::RedisError),
    /// A script or command answered in a shape this version does not understand.
    #[error("unexpected reply from redis for {what}: {reply}")]
    UnexpectedReply {
        /// The call that was answered.
        what: &'static str,
        /// The reply, rendered for the log.
        reply: String,
    },
    /// The cluster's slot map leaves slots without a master: shards cannot be placed.
    #[error("the redis cluster's slot map cannot place shards")]
    SlotMap(#[from] crate::domain::placement::SlotMapError),
    /// Stored data failed to decode (e.g. a sale definition written by another version).
    #[error("stored {what} is corrupt")]
    Corrupt {
        /// What was being decoded.
        what: &'static str,
        /// Why decoding failed.
        #[source]
        source: Arc<serde_json::Error>,
    },
}

impl StoreError {
    /// An `UnexpectedReply` for `what`, rendering `reply` for the log.
    pub fn unexpected(what: &'static str, reply: &impl std::fmt::Debug) -> Self {
        Self::UnexpectedReply {
            what,
            reply: format!("{reply:?}"),
        }
    }
}
