//! What one purchase answer was, as `flashgate_purchases_total{sale,outcome}` labels it:
//! the HTTP layer decides answers, so it names them; the per-sale counters
//! (`metrics::PurchaseAnswers`) know them by slot.

use super::error::ProblemKind;
use crate::metrics::{MAX_OUTCOMES, PurchaseAnswers};

const _: () = assert!(2 + ProblemKind::ALL.len() <= MAX_OUTCOMES);

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
    pub fn all() -> impl Iterator<Item = Self> {
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

    /// Counts this answer in `answers`.
    pub fn count_in(self, answers: &PurchaseAnswers) {
        answers.record(self.slot());
    }

    /// The outcome counted in `slot`.
    pub fn of_slot(slot: usize) -> Option<Self> {
        Self::all().nth(slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outcome_has_its_own_slot_and_label() {
        let outcomes: Vec<_> = AnswerOutcome::all().collect();
        for (i, o) in outcomes.iter().enumerate() {
            assert_eq!(o.slot(), i);
            assert_eq!(AnswerOutcome::of_slot(i), Some(*o));
        }
        let mut labels: Vec<_> = outcomes.iter().map(|o| o.label()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), outcomes.len());
    }

    #[test]
    fn counted_answers_come_back_under_their_labels() {
        let answers = PurchaseAnswers::default();
        AnswerOutcome::Accepted.count_in(&answers);
        AnswerOutcome::Accepted.count_in(&answers);
        AnswerOutcome::Refused(ProblemKind::SoldOut).count_in(&answers);
        let seen: Vec<_> = answers
            .snapshot()
            .filter_map(|(slot, n)| Some((AnswerOutcome::of_slot(slot)?.label(), n)))
            .collect();
        assert_eq!(seen, [("accepted", 2), ("sold-out", 1)]);
    }
}
