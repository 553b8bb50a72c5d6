//! Anti-bot purchase tokens. A buyer asks for a *challenge* (optionally a proof-of-work
//! puzzle), answers it to get a *purchase token*, and spends the token on one purchase.
//!
//! Both are stateless signed strings ([`signed`]): HMAC-SHA256 over a fixed-size payload
//! and the buyer and sale they were issued to, verified in constant time without a Redis
//! call. Single use is enforced in Redis: a challenge is spent when its token is issued
//! (`issue_token.lua`), a token when its purchase is accepted (`purchase.lua`, in the same
//! atomic step that takes the stock, so it costs no extra round trip).

pub mod pow;
pub mod signed;

pub use signed::{Audience, TokenError, TokenSigner};

/// Why a request's challenge answer or purchase token is refused: 403 invalid-token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidToken {
    #[error("this sale requires a purchase token (POST /api/v1/sales/{{sale_id}}/tokens)")]
    Missing,
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error(transparent)]
    Pow(#[from] pow::PowError),
}

/// How long past its expiry a spent challenge stays recorded in Redis: instances whose
/// clocks run behind must still find the record while they think it unexpired. (Spent
/// tokens are recorded next to the idempotency records and do not expire.)
pub const CLOCK_SKEW_MARGIN_MS: u64 = 60_000;
