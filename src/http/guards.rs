//! Admission checks a request passes before it may touch stock. Each guard is cheap and
//! local (no Redis call); they run in order, and the first refusal answers.

use time::OffsetDateTime;

use super::error::ApiError;
use crate::domain::{Quantity, UserId, Window};
use crate::sales::{Rejection, SaleRuntime};
use crate::stock::SpendToken;
use crate::tokens::{Audience, InvalidToken, TokenError, TokenSigner};

/// Why the sale takes no requests now, if it does not: before its start, after its end, or
/// paused. Counted by the caller when it refuses a purchase.
pub fn sale_window(rt: &SaleRuntime, now: OffsetDateTime) -> Result<(), (Rejection, ApiError)> {
    match rt.sale.spec.window(now) {
        Window::Before => Err((
            Rejection::NotStarted,
            ApiError::SaleNotStarted {
                starts_at: rt.sale.spec.starts_at(),
            },
        )),
        Window::After => Err((Rejection::Ended, ApiError::SaleEnded)),
        Window::Open if rt.paused => Err((Rejection::Paused, ApiError::SalePaused)),
        Window::Open => Ok(()),
    }
}

/// The order must fit the sale's `max_per_order`.
pub fn quantity_is_allowed(rt: &SaleRuntime, quantity: Quantity) -> Result<(), ApiError> {
    if rt.sale.spec.allows_order_of(quantity) {
        Ok(())
    } else {
        Err(ApiError::Validation(format!(
            "quantity must be 1..={} for this sale",
            rt.sale.spec.max_per_order()
        )))
    }
}

/// The purchase token, verified locally (signature, buyer, sale, epoch, expiry): what the
/// purchase script must spend. Without a token: refused when tokens are `required`,
/// otherwise nothing to spend. Whether the token was spent before is Redis's to say.
pub fn purchase_token(
    signer: &TokenSigner,
    rt: &SaleRuntime,
    user: &UserId,
    token: Option<&str>,
    required: bool,
    now_ms: i64,
) -> Result<Option<SpendToken>, InvalidToken> {
    let Some(text) = token else {
        return if required {
            Err(InvalidToken::Missing)
        } else {
            Ok(None)
        };
    };
    let to = Audience {
        sale: &rt.sale.id,
        user,
    };
    let token = signer.verify_token(text, to, rt.epoch, now_ms)?;
    Ok(Some(SpendToken(token.id)))
}

/// Whether a purchase refused for `invalid` may still have an accepted order under its
/// idempotency key: only a token this gateway really issued to this buyer for this sale can
/// have bought before, and it is refused now because time passed (expired) or the sale
/// changed since (stale). A forged, malformed or missing token never bought anything.
pub fn token_may_have_bought(invalid: &InvalidToken) -> bool {
    matches!(
        invalid,
        InvalidToken::Token(TokenError::Expired(_) | TokenError::Stale)
    )
}
