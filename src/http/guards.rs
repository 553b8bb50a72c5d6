//! Admission checks a request passes before it may touch stock. Each guard is cheap and
//! local (no Redis call); they run in order, and the first refusal answers.

use time::OffsetDateTime;

use super::error::ApiError;
use crate::domain::{Quantity, UserId, Window};
use crate::sales::{Rejection, SaleRuntime};
use crate::stock::SpendToken;
use crate::tokens::{Audience, InvalidToken, TokenSigner};

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

/// The sale must be open and not paused (a purchase refusal, counted).
pub fn sale_is_open(rt: &SaleRuntime, now: OffsetDateTime) -> Result<(), ApiError> {
    sale_window(rt, now).map_err(|(reason, error)| {
        rt.stats.record(reason);
        error
    })
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
) -> Result<Option<SpendToken>, ApiError> {
    let verified = match token {
        Some(text) => {
            let to = Audience {
                sale: &rt.sale.id,
                user,
            };
            signer
                .verify_token(text, to, rt.epoch, now_ms)
                .map_err(InvalidToken::from)
        }
        None if required => Err(InvalidToken::Missing),
        None => return Ok(None),
    };
    match verified {
        Ok(token) => Ok(Some(SpendToken(token.id))),
        Err(invalid) => {
            rt.stats.record(Rejection::InvalidToken);
            Err(ApiError::InvalidToken(invalid))
        }
    }
}
