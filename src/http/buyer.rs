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
use crate::orders::{self, NewOrder, OrderRecord, OrderStatus};
use crate::persist::queue::Admission;
use crate::sales::{Rejection, SaleRuntime};
use crate::stock::{PurchaseOutcome, PurchaseRequest, Refusal, ReplayLookup};

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
        .route("/api/v1/sales/{sale_id}/orders/mine", get(my_orders))
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
    let fingerprint = body.fingerprint();
    let mut request = PurchaseRequest {
        user: &user,
        quantity,
        key: &key,
        fingerprint: &fingerprint,
        now_ms: unix_ms(now),
        token: None,
    };
    let token = body.purchase_token.as_deref();
    let admission = match admit(&state, &rt, now, &mut request, token).await {
        Ok(admission) => admission,
        Err(early) => return replay_or_refuse(&state, &rt, &request, early).await,
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
        PurchaseOutcome::Replayed { order_id, quantity } => {
            replayed(&state, order_id, quantity).await?
        }
        PurchaseOutcome::Refused(refused) => return Err(refusal(&rt, refused)),
    };
    Ok((StatusCode::ACCEPTED, Json(answer)))
}

/// A purchase refused before it reached Redis, and whether a retry of an accepted purchase
/// could meet that refusal (then the buyer's record is asked first: replay comes first).
struct EarlyRefusal {
    reason: Option<Rejection>,
    error: ApiError,
    may_hide_an_order: bool,
}

impl EarlyRefusal {
    fn new(reason: Rejection, error: ApiError, may_hide_an_order: bool) -> Self {
        Self {
            reason: Some(reason),
            error,
            may_hide_an_order,
        }
    }
}

/// The checks between the request and the Redis call, in order: the sale window and kill
/// switch, the purchase token, the sold-out mark, the shared per-sale limit, then a slot in
/// the order queue. On success, `req` carries the token to spend.
///
/// An idempotent retry of a purchase that Redis accepted may arrive after the token expired,
/// the sale ended or was paused, or while the queue is full: those refusals say so
/// (`may_hide_an_order`), and the caller looks the key up before answering them. The others
/// cannot hide an order: before `starts_at` nothing was sold, a forged token bought nothing,
/// the sold-out mark spares only buyers who hold nothing, and a rate limit answers a pace.
async fn admit(
    state: &AppState,
    rt: &SaleRuntime,
    now: OffsetDateTime,
    req: &mut PurchaseRequest<'_>,
    token: Option<&str>,
) -> Result<Admission, EarlyRefusal> {
    guards::sale_window(rt, now).map_err(|(reason, error)| {
        EarlyRefusal::new(reason, error, reason != Rejection::NotStarted)
    })?;
    let required = state.settings.tokens.require_purchase_token;
    req.token = guards::purchase_token(&state.tokens, rt, req.user, token, required, req.now_ms)
        .map_err(|invalid| {
            let may_hide_an_order = guards::token_may_have_bought(&invalid);
            EarlyRefusal::new(
                Rejection::InvalidToken,
                ApiError::InvalidToken(invalid),
                may_hide_an_order,
            )
        })?;
    // A sale known to be sold out answers from memory, before any queue or Redis work.
    if rt.sold_out_for(req.user) {
        return Err(EarlyRefusal::new(
            Rejection::SoldOut,
            ApiError::SoldOut,
            false,
        ));
    }
    if let Some(shared) = &state.shared_sale_limit {
        let verdict = shared.check(&rt.sale.id).await.map_err(|e| EarlyRefusal {
            reason: None,
            error: e.into(),
            may_hide_an_order: false,
        })?;
        verdict.map_err(|limited| {
            EarlyRefusal::new(
                Rejection::RateLimited,
                ApiError::RateLimited(limited),
                false,
            )
        })?;
    }
    state.queue.admit().map_err(|_| {
        EarlyRefusal::new(
            Rejection::QueueFull,
            ApiError::Overloaded("the order queue is full"),
            true,
        )
    })
}

/// Answers a purchase refused before Redis: with its earlier order if the buyer's record
/// holds the key with this body (a 202, as the first answer was), with a conflict if it holds
/// the key with another body, else with the refusal itself (counted).
async fn replay_or_refuse(
    state: &AppState,
    rt: &SaleRuntime,
    req: &PurchaseRequest<'_>,
    early: EarlyRefusal,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    if early.may_hide_an_order {
        match state.stock.replay_of(rt, req).await {
            Ok(ReplayLookup::Replayed { order_id, quantity }) => {
                let answer = replayed(state, order_id, quantity).await?;
                return Ok((StatusCode::ACCEPTED, Json(answer)));
            }
            Ok(ReplayLookup::Conflict) => {
                return Err(refusal(rt, Refusal::IdempotencyConflict));
            }
            Ok(ReplayLookup::NotRecorded) => {}
            // Whether an order exists is unknown: "unavailable, retry", not the refusal, which
            // could make a buyer with an order believe they have none.
            Err(error) => {
                rt.stats.record(Rejection::Unavailable);
                return Err(error.into());
            }
        }
    }
    if let Some(reason) = early.reason {
        rt.stats.record(reason);
    }
    Err(early.error)
}

/// The answer to a retry of an accepted purchase: its order, with where it stands now.
async fn replayed(
    state: &AppState,
    order_id: OrderId,
    quantity: Quantity,
) -> Result<Accepted, ApiError> {
    Ok(Accepted {
        status: orders::status_of(&state.redis, &order_id).await?,
        sale_id: order_id.sale().clone(),
        order_id,
        quantity,
    })
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

impl OrderView {
    /// The view of an order record (`None` if its creation time is out of range).
    fn of(record: OrderRecord) -> Option<Self> {
        let created_at =
            OffsetDateTime::from_unix_timestamp_nanos(i128::from(record.created_ms) * 1_000_000)
                .ok()?;
        Some(Self {
            sale_id: record.order_id.sale().clone(),
            order_id: record.order_id,
            quantity: record.quantity,
            status: record.status,
            created_at,
        })
    }
}

async fn get_order(
    State(state): State<AppState>,
    Buyer(user): Buyer,
    OrderPath(order_id): OrderPath,
) -> Result<Json<OrderView>, ApiError> {
    orders::find(&state.persister, &order_id)
        .await?
        .filter(|r| r.user == user)
        .and_then(OrderView::of)
        .map(Json)
        .ok_or(ApiError::NotFound("no such order"))
}

/// A buyer's orders in a sale.
#[derive(Debug, Serialize)]
pub struct MyOrders {
    orders: Vec<OrderView>,
}

/// The buyer's orders in a sale, oldest first: how a buyer whose answer was lost finds their
/// order without its id. The buyer's record on their home shard lists every order they were
/// accepted; each is then looked up where it stands now (its stream, or the database).
async fn my_orders(
    State(state): State<AppState>,
    Buyer(user): Buyer,
    SalePath(sale_id): SalePath,
) -> Result<Json<MyOrders>, ApiError> {
    let rt = state
        .sales
        .get(&sale_id)
        .await?
        .ok_or(ApiError::NotFound("no such sale"))?;
    let Some(record) = state.stock.buyer_record(&rt, &user).await? else {
        return Ok(Json(MyOrders { orders: Vec::new() }));
    };
    let lookups = record
        .orders
        .iter()
        .map(|order| orders::find(&state.persister, &order.order_id));
    let found = futures_util::future::try_join_all(lookups).await?;
    let orders = found
        .into_iter()
        .flatten()
        .filter(|r| r.user == user)
        .filter_map(OrderView::of)
        .collect();
    Ok(Json(MyOrders { orders }))
}
