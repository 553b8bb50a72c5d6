//! Buyer endpoints: sale information, purchase, and order status.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::error::ApiError;
use super::extract::{AdmittedBuyer, ApiJson, Buyer, IdemKey, OrderPath, SalePath};
use super::gate::GateLayer;
use super::guards;
use super::in_flight::{InFlight, InFlightLayer};
use super::rate_limit::{IpGate, IpLimit, Limited};
use super::state::AppState;
use super::tokens;
use crate::clock::unix_ms;
use crate::domain::{OrderId, Quantity, SaleId, SaleState};
use crate::orders::{self, NewOrder, OrderStatus};
use crate::persist::queue::Admission;
use crate::sales::{Rejection, SaleRuntime};
use crate::stock::{PurchaseOutcome, PurchaseRequest, Refusal};

/// Buyer routes. Purchases pass, in order: the per-IP rate limit, the in-flight cap
/// `in_flight`, then (in the handler) the buyer's JWT, rate limit and in-flight slots before
/// the body is read ([`AdmittedBuyer`]), the per-sale limit and the purchase token.
/// Challenges and tokens pass the per-IP limit too, and the per-buyer issuance limit.
pub fn router(in_flight: Arc<InFlight>, ip_limit: Arc<IpLimit>) -> Router<AppState> {
    let capped = InFlightLayer::new(in_flight);
    let mut purchase_route = post(purchase).route_layer(capped);
    let mut challenge_route = post(tokens::challenge);
    let mut token_route = post(tokens::issue_token);
    // No per-IP limit configured: no layer, rather than a no-op on every request.
    if ip_limit.limits.limits_ip() {
        let by_ip = GateLayer::new(IpGate(ip_limit));
        purchase_route = purchase_route.route_layer(by_ip.clone());
        challenge_route = challenge_route.route_layer(by_ip.clone());
        token_route = token_route.route_layer(by_ip);
    }
    Router::new()
        .route("/api/v1/sales/{sale_id}", get(get_sale))
        .route("/api/v1/sales/{sale_id}/challenge", challenge_route)
        .route("/api/v1/sales/{sale_id}/tokens", token_route)
        .route("/api/v1/sales/{sale_id}/purchase", purchase_route)
        .route("/api/v1/orders/{order_id}", get(get_order))
}

/// A sale as buyers see it.
#[derive(Debug, Serialize)]
pub struct SaleView {
    sale_id: SaleId,
    name: String,
    state: SaleState,
    #[serde(with = "time::serde::rfc3339")]
    starts_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    ends_at: OffsetDateTime,
    stock_total: u64,
    remaining: u64,
    per_user_limit: u32,
    max_per_order: u32,
    pow_difficulty: u8,
    #[serde(with = "time::serde::rfc3339")]
    server_time: OffsetDateTime,
}

impl SaleView {
    /// The view of `rt` at `now`.
    pub fn of(rt: &SaleRuntime, now: OffsetDateTime) -> Self {
        let spec = &rt.sale.spec;
        let remaining = rt.remaining();
        Self {
            sale_id: rt.sale.id.clone(),
            name: spec.name().to_owned(),
            state: SaleState::of(spec.window(now), rt.paused, remaining),
            starts_at: spec.starts_at(),
            ends_at: spec.ends_at(),
            stock_total: spec.stock(),
            remaining,
            per_user_limit: spec.per_user_limit(),
            max_per_order: spec.max_per_order(),
            pow_difficulty: spec.pow_difficulty(),
            server_time: now,
        }
    }
}

async fn get_sale(
    State(state): State<AppState>,
    SalePath(id): SalePath,
) -> Result<Json<SaleView>, ApiError> {
    let rt = state
        .sales
        .get(&id)
        .await?
        .ok_or(ApiError::NotFound("no such sale"))?;
    Ok(Json(SaleView::of(&rt, state.clock.now())))
}

/// The purchase body.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurchaseBody {
    quantity: u32,
    #[serde(default)]
    purchase_token: Option<String>,
}

impl PurchaseBody {
    /// A digest of the body's meaning (not its bytes): a retry that re-serialises the same
    /// request matches; a different quantity or token does not.
    fn fingerprint(&self) -> String {
        let mut hash = Sha256::new();
        hash.update(self.quantity.to_be_bytes());
        hash.update(self.purchase_token.as_deref().unwrap_or("").as_bytes());
        const HEX: &[u8; 16] = b"0123456789abcdef";
        hash.finalize()[..12]
            .iter()
            .flat_map(|b| [HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]])
            .map(char::from)
            .collect()
    }
}

/// The answer to an accepted purchase.
#[derive(Debug, Serialize)]
pub struct Accepted {
    order_id: OrderId,
    sale_id: SaleId,
    quantity: Quantity,
    status: OrderStatus,
}

async fn purchase(
    State(state): State<AppState>,
    AdmittedBuyer(user, _slot): AdmittedBuyer,
    SalePath(sale_id): SalePath,
    IdemKey(key): IdemKey,
    ApiJson(body): ApiJson<PurchaseBody>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let quantity = Quantity::new(body.quantity).map_err(|e| ApiError::Validation(e.to_string()))?;
    let rt = state
        .sales
        .get(&sale_id)
        .await?
        .ok_or(ApiError::NotFound("no such sale"))?;
    state
        .rate_limits
        .check_sale(&sale_id)
        .map_err(|limited| rate_limited(&rt, limited))?;
    guards::quantity_is_allowed(&rt, quantity)?;
    let now = state.clock.now();
    let now_ms = unix_ms(now);
    guards::sale_is_open(&rt, now)?;
    let token = guards::purchase_token(
        &state.tokens,
        &rt,
        &user,
        body.purchase_token.as_deref(),
        state.settings.tokens.require_purchase_token,
        now_ms,
    )?;
    // A sale known to be sold out answers from memory, before any queue or Redis work.
    if rt.sold_out_for(&user) {
        return Err(refusal(&rt, Refusal::SoldOut));
    }
    if let Some(shared) = &state.shared_sale_limit {
        shared
            .check(&sale_id)
            .await?
            .map_err(|limited| rate_limited(&rt, limited))?;
    }
    let admission = state.queue.admit().map_err(|_| {
        rt.stats.record(Rejection::QueueFull);
        ApiError::Overloaded("the order queue is full")
    })?;
    let fingerprint = body.fingerprint();
    let request = PurchaseRequest {
        user: &user,
        quantity,
        key: &key,
        fingerprint: &fingerprint,
        now_ms,
        token,
    };
    let outcome = state.stock.purchase(&rt, &request).await.inspect_err(|_| {
        rt.stats.record(Rejection::Unavailable);
    })?;
    let answer = match outcome {
        PurchaseOutcome::Accepted(order) => Accepted {
            order_id: order.order_id.clone(),
            sale_id,
            quantity: order.quantity,
            status: hand_off(&state, admission, order).await,
        },
        PurchaseOutcome::Replayed { order_id, quantity } => Accepted {
            status: orders::status_of(&state.stock, &order_id).await?,
            order_id,
            sale_id,
            quantity,
        },
        PurchaseOutcome::Refused(refused) => return Err(refusal(&rt, refused)),
    };
    Ok((StatusCode::ACCEPTED, Json(answer)))
}

/// Sends an accepted order on its way to the database, as its admission said. Returns
/// `Confirmed` only if the row is committed now (`caller-runs`). If that synchronous write
/// fails, the order is still safe in its stream and recovery persists it: `Pending`.
async fn hand_off(state: &AppState, admission: Admission, order: NewOrder) -> OrderStatus {
    match admission {
        Admission::Queued(permit) => {
            permit.send(order);
            OrderStatus::Pending
        }
        Admission::CallerRuns => {
            match state.persister.persist(std::slice::from_ref(&order)).await {
                Ok(_) => OrderStatus::Confirmed,
                Err(error) => {
                    tracing::warn!(%error, order = %order.order_id, "caller-runs write failed; recovery will persist it");
                    OrderStatus::Pending
                }
            }
        }
        Admission::Spill => OrderStatus::Pending,
    }
}

/// The answer to a purchase over a rate limit, counted.
fn rate_limited(rt: &SaleRuntime, limited: Limited) -> ApiError {
    rt.stats.record(Rejection::RateLimited);
    ApiError::RateLimited(limited)
}

/// The refusal for an outcome that took no stock, counted.
fn refusal(rt: &SaleRuntime, refused: Refusal) -> ApiError {
    let (reason, error) = match refused {
        Refusal::SoldOut => (Rejection::SoldOut, ApiError::SoldOut),
        Refusal::Insufficient { remaining } => (
            Rejection::Insufficient,
            ApiError::Insufficient { remaining },
        ),
        Refusal::LimitReached { held } => (
            Rejection::LimitReached,
            ApiError::LimitReached {
                held,
                limit: rt.sale.spec.per_user_limit(),
            },
        ),
        Refusal::IdempotencyConflict => (
            Rejection::IdempotencyConflict,
            ApiError::IdempotencyConflict,
        ),
        Refusal::TokenUsed => (
            Rejection::TokenUsed,
            ApiError::TokenUsed("this purchase token was already spent on a purchase"),
        ),
        Refusal::Contended => (
            Rejection::Contended,
            ApiError::Overloaded("stock is moving between shards; retry shortly"),
        ),
    };
    rt.stats.record(reason);
    error
}

/// An order as its buyer sees it.
#[derive(Debug, Serialize)]
pub struct OrderView {
    order_id: OrderId,
    sale_id: SaleId,
    quantity: Quantity,
    status: OrderStatus,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
}

async fn get_order(
    State(state): State<AppState>,
    Buyer(user): Buyer,
    OrderPath(order_id): OrderPath,
) -> Result<Json<OrderView>, ApiError> {
    let record = orders::find(&state.persister, &order_id)
        .await?
        .filter(|r| r.user == user)
        .ok_or(ApiError::NotFound("no such order"))?;
    let created_at =
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(record.created_ms) * 1_000_000)
            .map_err(|_| ApiError::NotFound("no such order"))?;
    Ok(Json(OrderView {
        sale_id: record.order_id.sale().clone(),
        order_id: record.order_id,
        quantity: record.quantity,
        status: record.status,
        created_at,
    }))
}
