//! Whether the batch writer makes progress, for readiness: the writer is **stalled** while
//! it holds orders (received from the queue, not yet written nor given up) and no write of
//! its has committed for `queue.stall_after_ms`. A writer that holds nothing is never
//! stalled, however long ago it last wrote; one that has just picked up work after a quiet
//! spell counts from that moment.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use std::time::Instant;

/// The writer's progress, shared with the readiness probe. Cheap to clone.
#[derive(Debug, Clone)]
pub struct WriterHealth {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// When this record was made; times below are milliseconds since then.
    origin: Instant,
    /// Orders the writer holds.
    held: AtomicUsize,
    /// The last progress: a commit, or work picked up while holding nothing.
    progress_ms: AtomicU64,
}

/// The writer is stalled: it holds `orders`, and nothing committed for `for_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stall {
    pub orders: usize,
    pub for_ms: u64,
}

impl Default for WriterHealth {
    fn default() -> Self {
        Self {
            inner: Arc::new(Inner {
                origin: Instant::now(),
                held: AtomicUsize::new(0),
                progress_ms: AtomicU64::new(0),
            }),
        }
    }
}

impl WriterHealth {
    fn now_ms(&self) -> u64 {
        self.inner.origin.elapsed().as_millis() as u64
    }

    /// The writer took `orders` from the queue.
    pub fn picked_up(&self, orders: usize) {
        self.picked_up_at(orders, self.now_ms());
    }

    fn picked_up_at(&self, orders: usize, now_ms: u64) {
        if self.inner.held.fetch_add(orders, Ordering::AcqRel) == 0 {
            self.committed_at(now_ms);
        }
    }

    /// A write committed (a batch, or part of one).
    pub fn committed(&self) {
        self.committed_at(self.now_ms());
    }

    fn committed_at(&self, now_ms: u64) {
        self.inner.progress_ms.store(now_ms, Ordering::Release);
    }

    /// The writer is done with `orders`: written, or left in their streams at shutdown.
    pub fn let_go(&self, orders: usize) {
        self.inner.held.fetch_sub(orders, Ordering::AcqRel);
    }

    /// The stall, if the writer holds orders and has not committed for `after`.
    pub fn stall(&self, after: Duration) -> Option<Stall> {
        self.stall_at(after, self.now_ms())
    }

    fn stall_at(&self, after: Duration, now_ms: u64) -> Option<Stall> {
        let orders = self.inner.held.load(Ordering::Acquire);
        let since = self.inner.progress_ms.load(Ordering::Acquire);
        let for_ms = now_ms.saturating_sub(since);
        (orders > 0 && for_ms >= after.as_millis() as u64).then_some(Stall { orders, for_ms })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_writer_is_stalled_only_while_it_holds_orders_and_commits_nothing() {
        let health = WriterHealth::default();
        let after = Duration::from_secs(2);
        assert_eq!(health.stall_at(after, 60_000), None, "idle is not stalled");
        health.picked_up_at(5, 60_000);
        assert_eq!(
            health.stall_at(after, 61_000),
            None,
            "work picked up after a quiet spell counts from then"
        );
        let stall = Stall {
            orders: 5,
            for_ms: 3000,
        };
        assert_eq!(health.stall_at(after, 63_000), Some(stall));
        health.picked_up_at(1, 63_000);
        assert_eq!(
            health.stall_at(after, 63_000).map(|s| s.orders),
            Some(6),
            "more work is not progress"
        );
        health.committed_at(63_500);
        assert_eq!(health.stall_at(after, 64_000), None, "a commit is progress");
        health.let_go(6);
        assert_eq!(health.stall_at(after, 90_000), None);
    }
}
