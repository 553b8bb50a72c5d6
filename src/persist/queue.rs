//! The bounded in-memory queue between accepting requests and the batch writer, and the
//! policy applied when it is full. A request reserves its slot *before* taking stock, so
//! `reject` refuses without having taken anything.

use serde::Deserialize;
use tokio::sync::mpsc::{self, OwnedPermit, Receiver, Sender};

use crate::domain::NewOrder;

/// What to do with a purchase when the queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum QueuePolicy {
    /// Refuse before any stock is taken: 503 overloaded with Retry-After.
    #[default]
    Reject,
    /// Take the stock and write the order row synchronously in the request.
    CallerRuns,
    /// Take the stock; the order waits in its stream until the recovery worker persists it.
    Spill,
}

/// How an admitted purchase's order will reach the database.
#[derive(Debug)]
pub enum Admission {
    /// A queue slot is reserved for it.
    Queued(OwnedPermit<NewOrder>),
    /// The queue was full: the request writes the row itself.
    CallerRuns,
    /// The queue was full: the order stays in its stream for the recovery worker.
    Spill,
}

/// The queue was full and the policy is `reject`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the order queue is full")]
pub struct QueueFull;

/// The sending side, shared by request handlers. Cheap to clone.
#[derive(Debug, Clone)]
pub struct OrderQueue {
    tx: Sender<NewOrder>,
    policy: QueuePolicy,
}

impl OrderQueue {
    /// A queue of `capacity` orders (at least 1) and its receiving end.
    pub fn new(capacity: usize, policy: QueuePolicy) -> (Self, Receiver<NewOrder>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (Self { tx, policy }, rx)
    }

    /// Reserves a slot, or applies the policy when the queue is full (or closed, during
    /// shutdown: then nothing more may be queued, and the policy decides as if full).
    pub fn admit(&self) -> Result<Admission, QueueFull> {
        match self.tx.clone().try_reserve_owned() {
            Ok(permit) => Ok(Admission::Queued(permit)),
            Err(_) => match self.policy {
                QueuePolicy::Reject => Err(QueueFull),
                QueuePolicy::CallerRuns => Ok(Admission::CallerRuns),
                QueuePolicy::Spill => Ok(Admission::Spill),
            },
        }
    }

    /// Orders waiting in the queue.
    pub fn len(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// Whether no order waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The policy applied when full.
    pub fn policy(&self) -> QueuePolicy {
        self.policy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_applies_the_policy() {
        for (policy, expect_err) in [
            (QueuePolicy::Reject, true),
            (QueuePolicy::CallerRuns, false),
            (QueuePolicy::Spill, false),
        ] {
            let (queue, _rx) = OrderQueue::new(1, policy);
            let first = queue.admit();
            assert!(matches!(first, Ok(Admission::Queued(_))));
            let second = queue.admit();
            assert_eq!(second.is_err(), expect_err, "{policy:?}");
            if let Ok(admission) = second {
                assert!(!matches!(admission, Admission::Queued(_)));
            }
            drop(first);
            assert!(
                matches!(queue.admit(), Ok(Admission::Queued(_))),
                "a dropped reservation frees its slot"
            );
        }
    }

    #[test]
    fn policy_names_parse_from_config() {
        let p: QueuePolicy = serde_json::from_str("\"caller-runs\"").unwrap();
        assert_eq!(p, QueuePolicy::CallerRuns);
        assert!(serde_json::from_str::<QueuePolicy>("\"drop\"").is_err());
    }
}
