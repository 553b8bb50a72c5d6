//! An operator's change to a live sale that takes several steps (a reshard, a change of
//! stock): recorded in the sale's record before its first step, so that whichever instance
//! finds it unfinished (its driver crashed) can take it over and finish it.

use serde::{Deserialize, Serialize};

use super::layout::ShardSet;

/// A change in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    /// Unique id: names the change's marks on the shards, so each step runs once.
    pub id: String,
    /// What it does.
    pub change: Change,
    /// The operator who asked for it.
    pub actor: String,
    /// When it was recorded (unix ms, gateway clock).
    pub started_ms: i64,
}

/// The kinds of change that take several steps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    /// Moves buyers and units from `from` to `to` (the layout's `draining` and `current`).
    Reshard { from: ShardSet, to: ShardSet },
    /// Adds units (`add > 0`) spread over `over`, or removes up to `-add` unsold units.
    Stock { add: i64, over: ShardSet },
}

impl Change {
    /// What the change is called in messages.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Reshard { .. } => "a reshard",
            Self::Stock { .. } => "a stock change",
        }
    }
}

impl Operation {
    /// A new change by `actor`, recorded at `now_ms`.
    pub fn new(change: Change, actor: &str, now_ms: i64) -> Self {
        Self {
            id: uuid::Uuid::now_v7().simple().to_string(),
            change,
            actor: actor.to_owned(),
            started_ms: now_ms,
        }
    }
}
