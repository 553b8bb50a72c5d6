//! Purchase answers of one sale, counted where they are decided (the purchase handler and
//! the sold-out shortcut) with one relaxed atomic add each, and published as
//! `flashgate_purchases_total{sale,outcome}` at scrape time. The counters know outcomes only
//! by their slot; the HTTP layer, which decides answers, names them
//! (`http::outcome::AnswerOutcome`).

use std::sync::atomic::{AtomicU64, Ordering};

/// Most distinct outcomes counted per sale: accepted, replayed, and one per problem kind,
/// with room to spare.
pub const MAX_OUTCOMES: usize = 40;

/// Lock-free counts of one sale's purchase answers, one per outcome slot.
#[derive(Debug)]
pub struct PurchaseAnswers {
    counts: [AtomicU64; MAX_OUTCOMES],
}

impl Default for PurchaseAnswers {
    fn default() -> Self {
        Self {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl PurchaseAnswers {
    /// Counts one answer of outcome `slot` (below [`MAX_OUTCOMES`]).
    pub fn record(&self, slot: usize) {
        if let Some(count) = self.counts.get(slot) {
            count.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// `(slot, count)` for every outcome that happened at least once.
    pub fn snapshot(&self) -> impl Iterator<Item = (usize, u64)> + '_ {
        self.counts
            .iter()
            .enumerate()
            .map(|(slot, n)| (slot, n.load(Ordering::Relaxed)))
            .filter(|&(_, n)| n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_shows_what_happened_and_nothing_else() {
        let answers = PurchaseAnswers::default();
        answers.record(0);
        answers.record(0);
        answers.record(5);
        answers.record(MAX_OUTCOMES);
        assert_eq!(answers.snapshot().collect::<Vec<_>>(), [(0, 2), (5, 1)]);
    }
}
