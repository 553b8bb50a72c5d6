//! Admission checks a purchase passes before it may touch stock. Each guard is cheap and
//! local; they run in order, and the first refusal answers. (Purchase tokens and rate
//! limits join this list.)

use time::OffsetDateTime;

use super::error::ApiError;
use crate::domain::{Quantity, Window};
use crate::sales::{Rejection, SaleRuntime};

/// The sale must be open and not paused.
pub fn sale_is_open(rt: &SaleRuntime, now: OffsetDateTime) -> Result<(), ApiError> {
    let refusal = match rt.sale.spec.window(now) {
        Window::Before => Some((
            Rejection::NotStarted,
            ApiError::SaleNotStarted {
                starts_at: rt.sale.spec.starts_at(),
            },
        )),
        Window::After => Some((Rejection::Ended, ApiError::SaleEnded)),
        Window::Open if rt.paused => Some((Rejection::Paused, ApiError::SalePaused)),
        Window::Open => None,
    };
    match refusal {
        Some((reason, error)) => {
            rt.stats.record(reason);
            Err(error)
        }
        None => Ok(()),
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
