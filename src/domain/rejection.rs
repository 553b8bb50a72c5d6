//! Why purchases were refused, counted per sale on this instance.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// A reason a purchase took no stock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rejection {
    NotStarted,
    Ended,
    Paused,
    SoldOut,
    Insufficient,
    LimitReached,
    IdempotencyConflict,
    Contended,
    QueueFull,
    Unavailable,
    RateLimited,
    InvalidToken,
    TokenUsed,
}

impl Rejection {
    /// Every reason, in reporting order.
    pub const ALL: [Rejection; 13] = [
        Self::NotStarted,
        Self::Ended,
        Self::Paused,
        Self::SoldOut,
        Self::Insufficient,
        Self::LimitReached,
        Self::IdempotencyConflict,
        Self::Contended,
        Self::QueueFull,
        Self::Unavailable,
        Self::RateLimited,
        Self::InvalidToken,
        Self::TokenUsed,
    ];

    /// The reason's name in reports and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotStarted => "not_started",
            Self::Ended => "ended",
            Self::Paused => "paused",
            Self::SoldOut => "sold_out",
            Self::Insufficient => "insufficient",
            Self::LimitReached => "limit_reached",
            Self::IdempotencyConflict => "idempotency_conflict",
            Self::Contended => "contended",
            Self::QueueFull => "queue_full",
            Self::Unavailable => "unavailable",
            Self::RateLimited => "rate_limited",
            Self::InvalidToken => "invalid_token",
            Self::TokenUsed => "token_used",
        }
    }
}

/// Lock-free counters, one per reason.
#[derive(Debug, Default)]
pub struct RejectionStats {
    counts: [AtomicU64; Rejection::ALL.len()],
}

impl RejectionStats {
    /// Counts one refusal.
    pub fn record(&self, reason: Rejection) {
        self.counts[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// `(reason, count)` for every reason.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        Rejection::ALL
            .iter()
            .map(|&r| (r.as_str(), self.counts[r as usize].load(Ordering::Relaxed)))
            .collect()
    }
}
