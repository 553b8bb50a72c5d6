//! Why a purchase took no stock, as the purchase chain decides it.

use time::OffsetDateTime;

use crate::domain::Rejection;
use crate::limits::Limited;
use crate::stock;
use crate::tokens::InvalidToken;

/// A purchase refused, and nothing taken.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// No such sale.
    NoSuchSale,
    /// A per-sale rate limit (local or shared) is exceeded.
    RateLimited(Limited),
    /// The quantity is not within `1..=max` for this sale.
    QuantityNotAllowed { max: u32 },
    /// Before `starts_at`.
    NotStarted { starts_at: OffsetDateTime },
    /// After `ends_at`.
    Ended,
    /// An operator paused the sale.
    Paused,
    /// The purchase token is missing (when required), forged, expired or stale.
    InvalidToken(InvalidToken),
    /// No slot in the order queue (policy `reject`).
    QueueFull,
    /// No unit is left anywhere.
    SoldOut,
    /// Fewer units than asked remain (`remaining`, at least 1).
    Insufficient { remaining: u64 },
    /// The buyer holds `held` units; this order would exceed the sale's `limit`.
    LimitReached { held: u32, limit: u32 },
    /// The idempotency key was used before with another body.
    IdempotencyConflict,
    /// The purchase token was spent on an earlier purchase.
    TokenUsed,
    /// Stock kept moving between shards under this request; retry shortly.
    Contended,
}

impl Refusal {
    /// The stock engine's refusal, for a sale whose per-buyer limit is `limit`.
    pub fn of_stock(refusal: stock::Refusal, limit: u32) -> Self {
        match refusal {
            stock::Refusal::SoldOut => Self::SoldOut,
            stock::Refusal::Insufficient { remaining } => Self::Insufficient { remaining },
            stock::Refusal::LimitReached { held } => Self::LimitReached { held, limit },
            stock::Refusal::IdempotencyConflict => Self::IdempotencyConflict,
            stock::Refusal::TokenUsed => Self::TokenUsed,
            stock::Refusal::Contended => Self::Contended,
        }
    }

    /// The reason counted in the sale's statistics (`None`: a malformed request or an
    /// unknown sale, which are not refusals of a sale).
    pub fn reason(&self) -> Option<Rejection> {
        Some(match self {
            Self::NoSuchSale | Self::QuantityNotAllowed { .. } => return None,
            Self::RateLimited(_) => Rejection::RateLimited,
            Self::NotStarted { .. } => Rejection::NotStarted,
            Self::Ended => Rejection::Ended,
            Self::Paused => Rejection::Paused,
            Self::InvalidToken(_) => Rejection::InvalidToken,
            Self::QueueFull => Rejection::QueueFull,
            Self::SoldOut => Rejection::SoldOut,
            Self::Insufficient { .. } => Rejection::Insufficient,
            Self::LimitReached { .. } => Rejection::LimitReached,
            Self::IdempotencyConflict => Rejection::IdempotencyConflict,
            Self::TokenUsed => Rejection::TokenUsed,
            Self::Contended => Rejection::Contended,
        })
    }
}
