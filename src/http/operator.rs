//! The operator's controls under `/admin/v1/sales`: the list of every sale, and the switches
//! (pause, resume, end now) that every instance obeys within a refresh interval.

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use utoipa::ToSchema;

use super::buyer::SaleView;
use super::error::ApiError;
use super::extract::{Admin, SalePath};
use super::state::AppState;
use crate::domain::SaleId;
use crate::sales::{SaleListing, Switch, SwitchError};

/// Operator control routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/v1/sales", get(list_sales))
        .route("/admin/v1/sales/{sale_id}/pause", post(pause_sale))
        .route("/admin/v1/sales/{sale_id}/resume", post(resume_sale))
        .route("/admin/v1/sales/{sale_id}/end", post(end_sale))
}

/// `GET /admin/v1/sales`.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct SaleList {
    sales: Vec<SaleListing>,
}

/// Every sale, sorted by id.
#[utoipa::path(
    get,
    path = "/admin/v1/sales",
    tag = "operator",
    responses((status = 200, description = "Every sale's summary", body = SaleList)),
    security(("admin_token" = [])),
)]
pub(super) async fn list_sales(
    State(state): State<AppState>,
    _: Admin,
) -> Result<Json<SaleList>, ApiError> {
    let sales = state.sales.list(state.clock.now()).await?;
    Ok(Json(SaleList { sales }))
}

/// Pauses the sale (kill switch): buyers are answered 409 `sale-paused` within a second.
#[utoipa::path(
    post,
    path = "/admin/v1/sales/{sale_id}/pause",
    tag = "operator",
    params(("sale_id" = SaleId, Path, description = "The sale")),
    responses((status = 200, description = "The sale as served now", body = SaleView)),
    security(("admin_token" = [])),
)]
pub(super) async fn pause_sale(
    State(state): State<AppState>,
    admin: Admin,
    sale: SalePath,
) -> Result<Json<SaleView>, ApiError> {
    switch(&state, admin, sale, Switch::Pause).await
}

/// Makes a paused sale live again.
#[utoipa::path(
    post,
    path = "/admin/v1/sales/{sale_id}/resume",
    tag = "operator",
    params(("sale_id" = SaleId, Path, description = "The sale")),
    responses((status = 200, description = "The sale as served now", body = SaleView)),
    security(("admin_token" = [])),
)]
pub(super) async fn resume_sale(
    State(state): State<AppState>,
    admin: Admin,
    sale: SalePath,
) -> Result<Json<SaleView>, ApiError> {
    switch(&state, admin, sale, Switch::Resume).await
}

/// Ends the sale now.
#[utoipa::path(
    post,
    path = "/admin/v1/sales/{sale_id}/end",
    tag = "operator",
    params(("sale_id" = SaleId, Path, description = "The sale")),
    responses((status = 200, description = "The sale as served now", body = SaleView)),
    security(("admin_token" = [])),
)]
pub(super) async fn end_sale(
    State(state): State<AppState>,
    admin: Admin,
    sale: SalePath,
) -> Result<Json<SaleView>, ApiError> {
    switch(&state, admin, sale, Switch::End).await
}

/// Applies `switch` and answers the sale as this instance now serves it (200 also when the
/// switch changed nothing).
async fn switch(
    state: &AppState,
    Admin(actor): Admin,
    SalePath(id): SalePath,
    switch: Switch,
) -> Result<Json<SaleView>, ApiError> {
    let now = state.clock.now();
    let rt = state
        .sales
        .switch(&id, switch, &actor, now)
        .await
        .map_err(|e| match e {
            SwitchError::NotFound(_) => ApiError::NotFound("no such sale"),
            SwitchError::Contended(_) => ApiError::ChangeInProgress(e.to_string()),
            SwitchError::Store(e) => ApiError::Store(e),
        })?;
    Ok(Json(SaleView::of(&rt, now)))
}
