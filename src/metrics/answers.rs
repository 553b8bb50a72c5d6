//! Purchase answers of one sale, counted where they are decided (the purchase handler and
//! the sold-out shortcut) with one relaxed atomic add each, and published as
//! `flashgate_purchases_total{sale,outcome}` at scrape time.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::http::error::ProblemKind;

/// What one purchase answer was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerOutcome {
    /// 202: stock taken for a new order.
    Accepted,
    /// 202: a retry answered with the order it was accepted with before (no stock taken).
    Replayed,
    /// A problem answer of this kind.
    Refused(ProblemKind),
}

impl AnswerOutcome {
    /// Every outcome, in the order of their slots.
    fn all() -> impl Iterator<Item = Self> {
        [Self::Accepted, Self::Replayed]
            .into_iter()
            .chain(ProblemKind::ALL.into_iter().map(Self::Refused))
    }

    /// The `outcome` label: `accepted`, `replayed`, or the problem's slug.
    pub fn label(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Replayed => "replayed",
            Self::Refused(kind) => kind.slug(),
        }
    }

    fn slot(self) -> usize {
        match self {
            Self::Accepted => 0,
            Self::Replayed => 1,
            Self::Refused(kind) => 2 + kind as usize,
        }
    }
}

/// Lock-free counts of one sale's purchase answers, one per outcome.
#[derive(Debug, Default)]
pub struct PurchaseAnswers {
    counts: [AtomicU64; 2 + ProblemKind::ALL.len()],
}

impl PurchaseAnswers {
    /// Counts one answer.
    pub fn record(&self, outcome: AnswerOutcome) {
        self.counts[outcome.slot()].fetch_add(1, Ordering::Relaxed);
    }

    /// `(outcome, count)` for every outcome that happened at least once.
    pub fn snapshot(&self) -> impl Iterator<Item = (AnswerOutcome, u64)> + '_ {
        AnswerOutcome::all()
            .map(|o| (o, self.counts[o.slot()].load(Ordering::Relaxed)))
            .filter(|&(_, n)| n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outcome_has_its_own_slot_and_label() {
        let outcomes: Vec<_> = AnswerOutcome::all().collect();
        let mut slots: Vec<_> = outcomes.iter().map(|o| o.slot()).collect();
        slots.dedup();
        assert_eq!(slots, (0..outcomes.len()).collect::<Vec<_>>());
        let mut labels: Vec<_> = outcomes.iter().map(|o| o.label()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), outcomes.len());
    }

    #[test]
    fn a_snapshot_shows_what_happened_and_nothing_else() {
        let answers = PurchaseAnswers::default();
        answers.record(AnswerOutcome::Accepted);
        answers.record(AnswerOutcome::Accepted);
        answers.record(AnswerOutcome::Refused(ProblemKind::SoldOut));
        let seen: Vec<_> = answers.snapshot().map(|(o, n)| (o.label(), n)).collect();
        assert_eq!(seen, [("accepted", 2), ("sold-out", 1)]);
    }
}
