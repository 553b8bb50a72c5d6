//! Writing a batch in which an order may be poison: one the database refuses for what it
//! is (a constraint, a trigger), which would fail its whole batch every time.
//!
//! A rejected part of a batch is split in halves, each written on its own, so every order
//! that the database accepts commits, and a poison order ends up alone (a batch of n with
//! one poison order takes about 2·log2(n) more statements). An order refused on its own is
//! tried again, and after `queue.poison_attempts` such refusals it is moved to its shard's
//! dead letters. A failure that is not a rejection (connection, timeout, Redis) is handed
//! back to the caller unchanged and never counts: the writer retries it for as long as it
//! takes, as before.

use std::collections::HashMap;

use super::{PersistError, Persister, dead_letters};
use crate::domain::{NewOrder, OrderId};

/// What one [`BatchWrite::step`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// `orders` orders are rows (and acknowledged).
    Committed { orders: usize },
    /// The database rejected a part of several orders; it was split in halves.
    Split,
    /// The database refused `order` on its own, `attempts` times so far.
    Refused { order: OrderId, attempts: u32 },
    /// `order` was refused too often and is now a dead letter.
    DeadLettered { order: OrderId },
}

/// A batch on its way to the database: the parts still to write, and how often each order
/// was refused on its own.
#[derive(Debug)]
pub struct BatchWrite {
    parts: Vec<Vec<NewOrder>>,
    refusals: HashMap<OrderId, u32>,
    poison_attempts: u32,
}

impl BatchWrite {
    /// `orders`, to be dead-lettered one by one after `poison_attempts` refusals each.
    pub fn new(orders: Vec<NewOrder>, poison_attempts: u32) -> Self {
        Self {
            parts: if orders.is_empty() {
                Vec::new()
            } else {
                vec![orders]
            },
            refusals: HashMap::new(),
            poison_attempts: poison_attempts.max(1),
        }
    }

    /// Whether every order is a row or a dead letter.
    pub fn is_done(&self) -> bool {
        self.parts.is_empty()
    }

    /// Orders not yet written.
    pub fn remaining(&self) -> usize {
        self.parts.iter().map(Vec::len).sum()
    }

    /// Writes the next part. An error is a failure that passes (the part stays to write).
    pub async fn step(&mut self, persister: &Persister) -> Result<Step, PersistError> {
        let Some(part) = self.parts.last() else {
            return Ok(Step::Committed { orders: 0 });
        };
        match persister.persist(part).await {
            Ok(_) => {
                let orders = part.len();
                self.parts.pop();
                Ok(Step::Committed { orders })
            }
            Err(PersistError::Db(error)) => match error.rejection_reason() {
                Some(reason) => self.rejected(persister, reason).await,
                None => Err(PersistError::Db(error)),
            },
            Err(error) => Err(error),
        }
    }

    /// The database rejected the last part: split it, or count a refusal of its one order.
    async fn rejected(
        &mut self,
        persister: &Persister,
        reason: String,
    ) -> Result<Step, PersistError> {
        let mut part = self.parts.pop().expect("step found a part");
        if part.len() > 1 {
            let second = part.split_off(part.len() / 2);
            self.parts.push(second);
            self.parts.push(part);
            return Ok(Step::Split);
        }
        let order = part[0].order_id.clone();
        let attempts = self.refusals.entry(order.clone()).or_default();
        *attempts += 1;
        let attempts = *attempts;
        if attempts < self.poison_attempts {
            self.parts.push(part);
            return Ok(Step::Refused { order, attempts });
        }
        match dead_letters::bury(persister, &order, &reason, attempts).await {
            Ok(_) => Ok(Step::DeadLettered { order }),
            Err(error) => {
                self.parts.push(part);
                Err(PersistError::Bury(error))
            }
        }
    }
}
