//! The order lifecycle's endpoints: a buyer cancels their unpaid order; the shop's payment
//! service reports an order paid. Both are idempotent (repeating one that happened answers
//! the same state) and answer 409 `order-state` when the order's state forbids them.

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde::Serialize;
use utoipa::ToSchema;

use super::error::ApiError;
use super::extract::{Admin, Buyer, OrderPath};
use super::state::AppState;
use crate::domain::{OrderStatus, Settlement};
use crate::lifecycle::{Actor, SettleOutcome};

/// The lifecycle routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/orders/{order_id}/cancel", post(cancel_order))
        .route("/admin/v1/orders/{order_id}/paid", post(mark_paid))
}

/// An order's state after a transition.
#[derive(Debug, Serialize, ToSchema)]
pub struct SettledView {
    status: OrderStatus,
}

/// Cancels the buyer's unpaid order: its units go back to the sale exactly once and the
/// buyer's held count drops by them (they may buy again within the limit).
#[utoipa::path(
    post,
    path = "/api/v1/orders/{order_id}/cancel",
    tag = "buyer",
    summary = "Cancel an unpaid order; its units go back to the sale",
    params(("order_id" = crate::domain::OrderId, Path, description = "The order, as the purchase answered it")),
    responses((status = 200, description = "The order is cancelled (now or earlier)", body = SettledView)),
    security(("buyer_jwt" = [])),
)]
pub(super) async fn cancel_order(
    State(state): State<AppState>,
    Buyer(user): Buyer,
    OrderPath(order_id): OrderPath,
) -> Result<Json<SettledView>, ApiError> {
    let outcome = state
        .lifecycle
        .settle(Actor::Buyer(&user), &order_id, Settlement::Cancelled)
        .await?;
    answer(outcome, Settlement::Cancelled)
}

/// Records an order's payment (the shop's payment service): its units are sold for good.
#[utoipa::path(
    post,
    path = "/admin/v1/orders/{order_id}/paid",
    tag = "operator",
    summary = "Report an order paid",
    params(("order_id" = crate::domain::OrderId, Path, description = "The order")),
    responses((status = 200, description = "The order is paid (now or earlier)", body = SettledView)),
    security(("admin_token" = [])),
)]
pub(super) async fn mark_paid(
    State(state): State<AppState>,
    _: Admin,
    OrderPath(order_id): OrderPath,
) -> Result<Json<SettledView>, ApiError> {
    let outcome = state
        .lifecycle
        .settle(Actor::Operator, &order_id, Settlement::Paid)
        .await?;
    answer(outcome, Settlement::Paid)
}

fn answer(outcome: SettleOutcome, wanted: Settlement) -> Result<Json<SettledView>, ApiError> {
    match outcome {
        SettleOutcome::Settled(status) => Ok(Json(SettledView { status })),
        SettleOutcome::NotFound => Err(ApiError::NotFound("no such order")),
        SettleOutcome::Forbidden { current } => Err(ApiError::OrderState {
            current,
            wanted: wanted.status(),
        }),
    }
}
