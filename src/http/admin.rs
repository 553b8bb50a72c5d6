//! Operator endpoints under `/admin/v1`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{post, put};
use axum::{Json, Router};

use super::buyer::SaleView;
use super::error::ApiError;
use super::extract::{Admin, ApiJson, SalePath};
use super::state::AppState;
use crate::domain::{SaleDefinition, SaleSpec};
use crate::persist::reconcile::{Reconciliation, reconcile};
use crate::sales::{PutOutcome, PutSaleError, SaleReport};

/// Operator routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/v1/sales/{sale_id}", put(put_sale).get(sale_status))
        .route("/admin/v1/sales/{sale_id}/reconcile", post(reconcile_sale))
}

async fn put_sale(
    State(state): State<AppState>,
    _: Admin,
    SalePath(id): SalePath,
    ApiJson(definition): ApiJson<SaleDefinition>,
) -> Result<(StatusCode, Json<SaleView>), ApiError> {
    let spec = SaleSpec::try_from(definition).map_err(|e| ApiError::Validation(e.to_string()))?;
    let now = state.clock.now();
    let outcome = state.sales.put(&id, spec, now).await.map_err(|e| match e {
        PutSaleError::Live(_) => ApiError::SaleLive(e.to_string()),
        PutSaleError::HasOrders(_) => ApiError::SaleHasOrders(e.to_string()),
        PutSaleError::Store(store) => ApiError::Store(store),
    })?;
    let status = match outcome {
        PutOutcome::Created => StatusCode::CREATED,
        PutOutcome::Replaced | PutOutcome::Unchanged => StatusCode::OK,
    };
    let rt = state
        .sales
        .get(&id)
        .await?
        .ok_or(ApiError::NotFound("no such sale"))?;
    Ok((status, Json(SaleView::of(&rt, now))))
}

/// The sale's figures; a sale whose stored record cannot be read answers 200 with
/// `{sale_id, state: "unreadable", error}` instead, so an operator sees which and why.
async fn sale_status(
    State(state): State<AppState>,
    _: Admin,
    SalePath(id): SalePath,
) -> Result<Json<SaleReport>, ApiError> {
    let report = state.sales.report(&id, state.clock.now()).await?;
    report.map(Json).ok_or(ApiError::NotFound("no such sale"))
}

async fn reconcile_sale(
    State(state): State<AppState>,
    _: Admin,
    SalePath(id): SalePath,
) -> Result<Json<Reconciliation>, ApiError> {
    let rt = state
        .sales
        .get(&id)
        .await?
        .ok_or(ApiError::NotFound("no such sale"))?;
    Ok(Json(reconcile(&state.persister, &rt).await?))
}
