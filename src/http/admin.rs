//! Operator endpoints under `/admin/v1`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::buyer::SaleView;
use super::error::ApiError;
use super::extract::{Admin, ApiJson, SalePath};
use super::state::AppState;
use crate::domain::{AuditAction, AuditEntry, OrderId};
use crate::domain::{SaleDefinition, SaleId, SaleSpec};
use crate::persist::dead_letters::{self, DeadLetter, DeadLetterError, DeadLetterId, DropOutcome};
use crate::persist::reconcile::{Reconciliation, reconcile};
use crate::sales::{ChangeError, ChangeReport, DeleteError, PutOutcome, PutSaleError, SaleReport};

/// Operator routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/admin/v1/sales/{sale_id}",
            put(put_sale).get(sale_status).delete(delete_sale),
        )
        .route("/admin/v1/sales/{sale_id}/reshard", post(reshard_sale))
        .route("/admin/v1/sales/{sale_id}/stock", post(change_stock))
        .route("/admin/v1/sales/{sale_id}/reconcile", post(reconcile_sale))
        .route("/admin/v1/dead-letters", get(list_dead_letters))
        .route("/admin/v1/dead-letters/{id}", delete(drop_dead_letter))
        .route("/admin/v1/dead-letters/{id}/retry", post(retry_dead_letter))
}

/// Creates or replaces a sale (a live sale cannot be replaced).
#[utoipa::path(
    put,
    path = "/admin/v1/sales/{sale_id}",
    tag = "operator",
    params(("sale_id" = SaleId, Path, description = "The sale")),
    request_body = SaleDefinition,
    responses(
        (status = 201, description = "Created", body = SaleView),
        (status = 200, description = "Replaced, or unchanged", body = SaleView),
    ),
    security(("admin_token" = [])),
)]
pub(super) async fn put_sale(
    State(state): State<AppState>,
    Admin(actor): Admin,
    SalePath(id): SalePath,
    ApiJson(definition): ApiJson<SaleDefinition>,
) -> Result<(StatusCode, Json<SaleView>), ApiError> {
    let spec = SaleSpec::try_from(definition).map_err(|e| ApiError::Validation(e.to_string()))?;
    let now = state.clock.now();
    let before = state.sales.audited_definition(&id).await;
    let outcome = state
        .sales
        .put(&id, spec.clone(), now)
        .await
        .map_err(put_error)?;
    let (status, action) = match outcome {
        PutOutcome::Created => (StatusCode::CREATED, AuditAction::Created),
        PutOutcome::Replaced => (StatusCode::OK, AuditAction::Replaced),
        PutOutcome::Unchanged => (StatusCode::OK, AuditAction::Unchanged),
    };
    let after = json!(spec.definition());
    let entry = AuditEntry::new(now, actor, action, before, after);
    state.sales.audit(&id, entry).await;
    let rt = state
        .sales
        .get(&id)
        .await?
        .ok_or(ApiError::NotFound("no such sale"))?;
    Ok((status, Json(SaleView::of(&rt, now))))
}

fn put_error(e: PutSaleError) -> ApiError {
    match e {
        PutSaleError::Live(_) => ApiError::SaleLive(e.to_string()),
        PutSaleError::HasOrders(_) | PutSaleError::Exhausted(_) => {
            ApiError::SaleHasOrders(e.to_string())
        }
        PutSaleError::Concurrent(_) | PutSaleError::Busy(..) => {
            ApiError::ChangeInProgress(e.to_string())
        }
        PutSaleError::Store(store) => ApiError::Store(store),
    }
}

/// `POST /admin/v1/sales/{id}/reshard`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct Reshard {
    /// The number of shards to sell from.
    shards: u32,
}

/// `POST /admin/v1/sales/{id}/stock`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct StockChange {
    /// Units to add (negative: to remove), spread over the shards.
    add: i64,
}

/// The answer to an operator's change: the sale as it is now, and where the change stands.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Changed {
    #[serde(flatten)]
    sale: SaleView,
    change: ChangeReport,
}

/// Moves the sale to a new number of shards while it sells; no unit is lost or duplicated.
#[utoipa::path(
    post,
    path = "/admin/v1/sales/{sale_id}/reshard",
    tag = "operator",
    params(("sale_id" = SaleId, Path, description = "The sale")),
    request_body = Reshard,
    responses((status = 200, description = "The sale, and where the reshard stands", body = Changed)),
    security(("admin_token" = [])),
)]
pub(super) async fn reshard_sale(
    State(state): State<AppState>,
    Admin(actor): Admin,
    SalePath(id): SalePath,
    ApiJson(body): ApiJson<Reshard>,
) -> Result<Json<Changed>, ApiError> {
    let now = state.clock.now();
    let report = state
        .sales
        .reshard(&id, body.shards, &actor, now)
        .await
        .map_err(change_error)?;
    changed(&state, &id, report).await
}

/// Tops up (or takes back) stock, spread over the shards.
#[utoipa::path(
    post,
    path = "/admin/v1/sales/{sale_id}/stock",
    tag = "operator",
    params(("sale_id" = SaleId, Path, description = "The sale")),
    request_body = StockChange,
    responses((status = 200, description = "The sale, and where the change stands", body = Changed)),
    security(("admin_token" = [])),
)]
pub(super) async fn change_stock(
    State(state): State<AppState>,
    Admin(actor): Admin,
    SalePath(id): SalePath,
    ApiJson(body): ApiJson<StockChange>,
) -> Result<Json<Changed>, ApiError> {
    let now = state.clock.now();
    let report = state
        .sales
        .change_stock(&id, body.add, &actor, now)
        .await
        .map_err(change_error)?;
    changed(&state, &id, report).await
}

async fn changed(
    state: &AppState,
    id: &SaleId,
    change: ChangeReport,
) -> Result<Json<Changed>, ApiError> {
    let rt = state
        .sales
        .get(id)
        .await?
        .ok_or(ApiError::NotFound("no such sale"))?;
    let sale = SaleView::of(&rt, state.clock.now());
    Ok(Json(Changed { sale, change }))
}

fn change_error(e: ChangeError) -> ApiError {
    match e {
        ChangeError::NotFound(_) => ApiError::NotFound("no such sale"),
        ChangeError::Busy(..) | ChangeError::Concurrent(_) => {
            ApiError::ChangeInProgress(e.to_string())
        }
        ChangeError::Ended(_) => ApiError::SaleEnded,
        ChangeError::Invalid(detail) => ApiError::Validation(detail),
        ChangeError::Store(store) => ApiError::Store(store),
    }
}

/// `DELETE /admin/v1/sales/{id}`: once the sale has ended and every order it accepted is a
/// database row, its Redis keys go (the orders stay in the database).
#[utoipa::path(
    delete,
    path = "/admin/v1/sales/{sale_id}",
    summary = "Deletes an ended sale whose orders are all in the database",
    tag = "operator",
    params(("sale_id" = SaleId, Path, description = "The sale")),
    responses((status = 204, description = "Deleted: its Redis keys are gone, its orders stay")),
    security(("admin_token" = [])),
)]
pub(super) async fn delete_sale(
    State(state): State<AppState>,
    Admin(actor): Admin,
    SalePath(id): SalePath,
) -> Result<StatusCode, ApiError> {
    let now = state.clock.now();
    state
        .sales
        .delete(&id, &actor, now)
        .await
        .map_err(|e| match e {
            DeleteError::NotFound(_) => ApiError::NotFound("no such sale"),
            DeleteError::NotEnded(_) => ApiError::SaleLive(e.to_string()),
            DeleteError::Busy(..) => ApiError::ChangeInProgress(e.to_string()),
            DeleteError::OrdersPending { .. } => ApiError::OrdersPending(e.to_string()),
            DeleteError::Store(store) => ApiError::Store(store),
        })?;
    Ok(StatusCode::NO_CONTENT)
}

/// The sale's figures; a sale whose stored record cannot be read answers 200 with
/// `{sale_id, state: "unreadable", error}` instead, so an operator sees which and why.
#[utoipa::path(
    get,
    path = "/admin/v1/sales/{sale_id}",
    summary = "A sale's figures per shard, its counters and its audit trail",
    tag = "operator",
    params(("sale_id" = SaleId, Path, description = "The sale")),
    responses((status = 200, description = "Figures per shard, counters and the audit trail", body = SaleReport)),
    security(("admin_token" = [])),
)]
pub(super) async fn sale_status(
    State(state): State<AppState>,
    _: Admin,
    SalePath(id): SalePath,
) -> Result<Json<SaleReport>, ApiError> {
    let report = state.sales.report(&id, state.clock.now()).await?;
    report.map(Json).ok_or(ApiError::NotFound("no such sale"))
}

/// Checks Redis against the database for the sale.
#[utoipa::path(
    post,
    path = "/admin/v1/sales/{sale_id}/reconcile",
    tag = "operator",
    params(("sale_id" = SaleId, Path, description = "The sale")),
    responses((status = 200, description = "The ledger and its findings", body = Reconciliation)),
    security(("admin_token" = [])),
)]
pub(super) async fn reconcile_sale(
    State(state): State<AppState>,
    _: Admin,
    SalePath(id): SalePath,
) -> Result<Json<Reconciliation>, ApiError> {
    // Afresh from Redis: a change made through another instance may not be cached here yet.
    let rt = state
        .sales
        .reload(&id)
        .await?
        .ok_or(ApiError::NotFound("no such sale"))?;
    Ok(Json(reconcile(&state.persister, &rt).await?))
}

/// `GET /admin/v1/dead-letters`.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct DeadLetters {
    dead_letters: Vec<DeadLetter>,
}

/// Orders the database refused repeatedly, waiting for an operator.
#[utoipa::path(
    get,
    path = "/admin/v1/dead-letters",
    tag = "operator",
    responses((status = 200, description = "Every dead letter", body = DeadLetters)),
    security(("admin_token" = [])),
)]
pub(super) async fn list_dead_letters(
    State(state): State<AppState>,
    _: Admin,
) -> Result<Json<DeadLetters>, ApiError> {
    let dead_letters = dead_letters::list(&state.persister, &state.sales).await?;
    Ok(Json(DeadLetters { dead_letters }))
}

/// A dead letter that is now a row.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Retried {
    id: DeadLetterId,
    order_id: OrderId,
    status: &'static str,
}

/// Writes the dead letter's order to the database again.
#[utoipa::path(
    post,
    path = "/admin/v1/dead-letters/{id}/retry",
    tag = "operator",
    params(("id" = DeadLetterId, Path, description = "The dead letter")),
    responses((status = 200, description = "The order is now a row", body = Retried)),
    security(("admin_token" = [])),
)]
pub(super) async fn retry_dead_letter(
    State(state): State<AppState>,
    _: Admin,
    Path(raw): Path<String>,
) -> Result<Json<Retried>, ApiError> {
    let id = dead_letter_id(&raw)?;
    let order_id = dead_letters::retry(&state.persister, &id)
        .await
        .map_err(dead_letter_error)?;
    Ok(Json(Retried {
        id,
        order_id,
        status: "confirmed",
    }))
}

/// Drops the dead letter: an operator's decision that the order will never be a row.
#[utoipa::path(
    delete,
    path = "/admin/v1/dead-letters/{id}",
    summary = "Drops a dead letter: its order will never be a row",
    tag = "operator",
    params(("id" = DeadLetterId, Path, description = "The dead letter")),
    responses((status = 204, description = "Dropped (or it had become a row meanwhile)")),
    security(("admin_token" = [])),
)]
pub(super) async fn drop_dead_letter(
    State(state): State<AppState>,
    _: Admin,
    Path(raw): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = dead_letter_id(&raw)?;
    match dead_letters::drop_letter(&state.persister, &id)
        .await
        .map_err(dead_letter_error)?
    {
        DropOutcome::Dropped { .. } | DropOutcome::WasPersisted => Ok(StatusCode::NO_CONTENT),
    }
}

fn dead_letter_id(raw: &str) -> Result<DeadLetterId, ApiError> {
    DeadLetterId::parse(raw).map_err(|_| ApiError::NotFound("no such dead letter"))
}

fn dead_letter_error(e: DeadLetterError) -> ApiError {
    match e {
        DeadLetterError::NotFound(_) => ApiError::NotFound("no such dead letter"),
        DeadLetterError::Unreadable(_) | DeadLetterError::Refused(_) => {
            ApiError::DeadLetterRefused(e.to_string())
        }
        DeadLetterError::Store(e) => ApiError::Store(e),
        DeadLetterError::Db(e) => ApiError::Db(e),
    }
}
