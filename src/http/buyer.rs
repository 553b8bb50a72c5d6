//! Buyer endpoints: sale information, purchase, and order status.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, post_service};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::error::ApiError;
use super::extract::{AdmittedBuyer, ApiJson, Buyer, IdemKey, OrderPath, SalePath};
use super::gate::{GateLayer, IpGate};
use super::outcome::AnswerOutcome;
use super::purchase_route::{self, PURCHASE_ROUTE};
use super::state::AppState;
use super::tokens;
use crate::domain::{OrderId, Quantity, SaleId, SaleState, UserId};
use crate::domain::{OrderRecord, OrderStatus};
use crate::orders;
use crate::purchase::{Accepted, Answer, Attempt, Purchased, Refusal};
use crate::stock::SaleRuntime;
use crate::store::StoreError;

/// Buyer routes. Purchases pass, in order: the per-IP rate limit, the in-flight cap
/// `in_flight`, then (in the handler) the buyer's JWT, rate limit and in-flight slots before
/// the body is read ([`AdmittedBuyer`]), the per-sale limit and the purchase token; the
/// server dispatches them in front of the router, to the same route service
/// ([`super::purchase_route`]). Challenges and tokens pass the per-IP limit too, and the
/// per-buyer issuance limit.
pub fn router(state: &AppState) -> Router<AppState> {
    let mut challenge_route = post(tokens::challenge);
    let mut token_route = post(tokens::issue_token);
    // No per-IP limit configured: no layer, rather than a no-op on every request.
    if state.ip_limit.limits.limits_ip() {
        let by_ip = GateLayer::new(IpGate(Arc::clone(&state.ip_limit)));
        challenge_route = challenge_route.route_layer(by_ip.clone());
        token_route = token_route.route_layer(by_ip);
    }
    Router::new()
        .route("/api/v1/sales/{sale_id}", get(get_sale))
        .route("/api/v1/sales/{sale_id}/challenge", challenge_route)
        .route("/api/v1/sales/{sale_id}/tokens", token_route)
        .route(
            PURCHASE_ROUTE,
            post_service(purchase_route::route_service(state)),
        )
        .route("/api/v1/sales/{sale_id}/orders/mine", get(my_orders))
        .route("/api/v1/orders/{order_id}", get(get_order))
}

/// A sale as buyers see it.
#[derive(Debug, Serialize, ToSchema)]
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

/// A sale: its window, state and stock, and the server's clock.
#[utoipa::path(
    get,
    path = "/api/v1/sales/{sale_id}",
    tag = "buyer",
    params(("sale_id" = SaleId, Path, description = "The sale")),
    responses((status = 200, description = "The sale", body = SaleView)),
)]
pub(super) async fn get_sale(
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
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PurchaseBody {
    /// Units to buy: 1..=`max_per_order`.
    #[schema(minimum = 1)]
    quantity: u32,
    /// The token `POST .../tokens` issued (required unless the gateway runs without
    /// purchase tokens).
    #[serde(default)]
    purchase_token: Option<String>,
}

/// The answer to an accepted purchase.
#[derive(Debug, Serialize, ToSchema)]
pub struct AcceptedView {
    order_id: OrderId,
    sale_id: SaleId,
    quantity: Quantity,
    status: OrderStatus,
}

impl AcceptedView {
    /// The view as JSON, written by hand: it answers every accepted purchase, and serde's
    /// field-by-field writer (escaping each string, growing its buffer) cost several times
    /// this. None of the fields can hold a character JSON escapes (sale ids are
    /// `[A-Za-z0-9_-]`, order ids add digits, `.` and `-`), and a test holds the bytes equal
    /// to serde's.
    fn json(&self) -> Vec<u8> {
        /// The fixed text and the longest order id, sale id, quantity and status.
        const MOST: usize = 64 + 117 + 64 + 10 + 9;
        let mut out = String::with_capacity(MOST);
        out.push_str(r#"{"order_id":""#);
        self.order_id.push_to(&mut out);
        out.push_str(r#"","sale_id":""#);
        out.push_str(self.sale_id.as_str());
        out.push_str(r#"","quantity":"#);
        out.push_str(itoa::Buffer::new().format(self.quantity.get()));
        out.push_str(r#","status":""#);
        out.push_str(self.status.as_str());
        out.push_str(r#""}"#);
        out.into_bytes()
    }
}

impl IntoResponse for AcceptedView {
    fn into_response(self) -> Response {
        let json = HeaderValue::from_static("application/json");
        ([(header::CONTENT_TYPE, json)], self.json()).into_response()
    }
}

/// A purchase: the buyer's JWT, rate limit and in-flight slot come first, from the headers
/// alone ([`AdmittedBuyer`]), then the sale in the path, the idempotency key and the body;
/// then the purchase chain, whose answer is mapped to HTTP (and counted for the sale).
#[utoipa::path(
    post,
    path = "/api/v1/sales/{sale_id}/purchase",
    tag = "buyer",
    summary = "Buy units: 202 once stock is taken and the order durably recorded",
    description = "A retry with the same Idempotency-Key and body returns the same order and \
        takes no more stock, whatever happened since.",
    params(
        ("sale_id" = SaleId, Path, description = "The sale"),
        ("Idempotency-Key" = String, Header, description = "1..=64 visible ASCII characters, \
            unique per purchase attempt; reuse it for retries"),
    ),
    request_body = PurchaseBody,
    responses((status = 202, description = "Accepted; the order is pending", body = AcceptedView)),
    security(("buyer_jwt" = [])),
)]
pub(super) async fn purchase(state: AppState, req: Request) -> Response {
    let (mut parts, body) = req.into_parts();
    let admitted = match AdmittedBuyer::from_request_parts(&mut parts, &state).await {
        Ok(admitted) => admitted,
        Err(error) => return error.into_response(),
    };
    let AdmittedBuyer(user, _slot) = admitted;
    match read_attempt(&state, user, parts, body).await {
        Ok(attempt) => purchase_answered(&state, &attempt).await.into_response(),
        Err(error) => error.into_response(),
    }
}

/// The rest of the attempt, in order: the sale in the path, the `Idempotency-Key`, the body
/// (no larger than `http.body_limit_bytes`).
async fn read_attempt(
    state: &AppState,
    user: UserId,
    mut parts: Parts,
    body: Body,
) -> Result<Attempt, ApiError> {
    let sale = purchase_route::purchase_sale(parts.uri.path())
        .and_then(|id| SaleId::parse(id).ok())
        .ok_or(ApiError::NotFound("no such sale"))?;
    let IdemKey(key) = IdemKey::from_request_parts(&mut parts, state).await?;
    let limit = state.settings.http.body_limit_bytes;
    let body = Body::new(http_body_util::Limited::new(body, limit));
    let ApiJson(body) =
        ApiJson::<PurchaseBody>::from_request(Request::from_parts(parts, body), state).await?;
    Ok(Attempt {
        user,
        sale,
        key,
        quantity: body.quantity,
        token: body.purchase_token,
    })
}

/// Runs the purchase chain for `attempt` and maps its answer, counted in the sale's
/// `flashgate_purchases_total`.
async fn purchase_answered(
    state: &AppState,
    attempt: &Attempt,
) -> Result<(StatusCode, AcceptedView), ApiError> {
    let Purchased { sale, answer } = state.purchases.purchase(attempt).await;
    let (outcome, answer) = purchase_answer(answer);
    if let Some(rt) = sale
        && state.metrics.is_enabled()
    {
        outcome.count_in(&rt.answers);
    }
    answer
}

/// The HTTP answer to what the purchase chain decided, and what it counts as in
/// `flashgate_purchases_total`.
fn purchase_answer(
    answer: Result<Answer, StoreError>,
) -> (AnswerOutcome, Result<(StatusCode, AcceptedView), ApiError>) {
    let accepted = |a: Accepted| {
        let view = AcceptedView {
            order_id: a.order_id,
            sale_id: a.sale_id,
            quantity: a.quantity,
            status: a.status,
        };
        Ok((StatusCode::ACCEPTED, view))
    };
    let refused = |error: ApiError| (AnswerOutcome::Refused(error.kind()), Err(error));
    match answer {
        Ok(Answer::Accepted(a)) => (AnswerOutcome::Accepted, accepted(a)),
        Ok(Answer::Replayed(a)) => (AnswerOutcome::Replayed, accepted(a)),
        Ok(Answer::Refused(refusal)) => refused(refusal_error(refusal)),
        Err(error) => refused(ApiError::from(error)),
    }
}

/// The HTTP answer to a purchase the chain refused.
pub(super) fn refusal_error(refusal: Refusal) -> ApiError {
    match refusal {
        Refusal::NoSuchSale => ApiError::NotFound("no such sale"),
        Refusal::RateLimited(limited) => ApiError::RateLimited(limited),
        Refusal::QuantityNotAllowed { max } => {
            ApiError::Validation(format!("quantity must be 1..={max} for this sale"))
        }
        Refusal::NotStarted { starts_at } => ApiError::SaleNotStarted { starts_at },
        Refusal::Ended => ApiError::SaleEnded,
        Refusal::Paused => ApiError::SalePaused,
        Refusal::InvalidToken(invalid) => ApiError::InvalidToken(invalid),
        Refusal::QueueFull => ApiError::Overloaded("the order queue is full"),
        Refusal::SoldOut => ApiError::SoldOut,
        Refusal::Insufficient { remaining } => ApiError::Insufficient { remaining },
        Refusal::LimitReached { held, limit } => ApiError::LimitReached { held, limit },
        Refusal::IdempotencyConflict => ApiError::IdempotencyConflict,
        Refusal::TokenUsed => {
            ApiError::TokenUsed("this purchase token was already spent on a purchase")
        }
        Refusal::Contended => ApiError::Overloaded("stock is moving between shards; retry shortly"),
    }
}

/// An order as its buyer sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrderView {
    order_id: OrderId,
    sale_id: SaleId,
    quantity: Quantity,
    status: OrderStatus,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    /// When the order must be paid by (`null`: the sale sets no payment window).
    #[serde(with = "time::serde::rfc3339::option")]
    pay_by: Option<OffsetDateTime>,
}

impl OrderView {
    /// The view of an order record due for payment by `pay_by_ms` (`None` if a time is out
    /// of range).
    fn of(record: OrderRecord, pay_by_ms: Option<i64>) -> Option<Self> {
        let at = |ms: i64| OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000);
        let created_at = at(record.created_ms).ok()?;
        let pay_by = pay_by_ms.map(at).transpose().ok()?;
        Some(Self {
            sale_id: record.order_id.sale().clone(),
            order_id: record.order_id,
            quantity: record.quantity,
            status: record.status,
            created_at,
            pay_by,
        })
    }

    /// The view of `record`, with the payment deadline of its sale.
    async fn of_sale(state: &AppState, record: OrderRecord) -> Result<Option<Self>, ApiError> {
        let pay_by_ms = state.lifecycle.pay_by_ms(&record).await?;
        Ok(Self::of(record, pay_by_ms))
    }
}

/// One of the buyer's orders.
#[utoipa::path(
    get,
    path = "/api/v1/orders/{order_id}",
    tag = "buyer",
    params(("order_id" = OrderId, Path, description = "The order, as the purchase answered it")),
    responses((status = 200, description = "The order", body = OrderView)),
    security(("buyer_jwt" = [])),
)]
pub(super) async fn get_order(
    State(state): State<AppState>,
    Buyer(user): Buyer,
    OrderPath(order_id): OrderPath,
) -> Result<Json<OrderView>, ApiError> {
    let record = orders::find(&state.persister, &order_id)
        .await?
        .filter(|r| r.user == user)
        .ok_or(ApiError::NotFound("no such order"))?;
    OrderView::of_sale(&state, record)
        .await?
        .map(Json)
        .ok_or(ApiError::NotFound("no such order"))
}

/// A buyer's orders in a sale.
#[derive(Debug, Serialize, ToSchema)]
pub struct MyOrders {
    orders: Vec<OrderView>,
}

/// The buyer's orders in a sale, oldest first: how a buyer whose answer was lost finds their
/// order without its id. The buyer's record on their home shard lists every order they were
/// accepted; each is then looked up where it stands now (its stream, or the database).
#[utoipa::path(
    get,
    path = "/api/v1/sales/{sale_id}/orders/mine",
    tag = "buyer",
    summary = "The buyer's orders in the sale, oldest first",
    params(("sale_id" = SaleId, Path, description = "The sale")),
    responses((status = 200, description = "The buyer's orders, oldest first", body = MyOrders)),
    security(("buyer_jwt" = [])),
)]
pub(super) async fn my_orders(
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
    let pay_by_ms = |created_ms: i64| {
        rt.sale
            .spec
            .payment_window_ms()
            .map(|window| created_ms + window)
    };
    let orders = found
        .into_iter()
        .flatten()
        .filter(|r| r.user == user)
        .filter_map(|r| {
            let pay_by = pay_by_ms(r.created_ms);
            OrderView::of(r, pay_by)
        })
        .collect();
    Ok(Json(MyOrders { orders }))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::domain::EntryId;

    const STATUSES: [OrderStatus; 5] = [
        OrderStatus::Pending,
        OrderStatus::Confirmed,
        OrderStatus::Paid,
        OrderStatus::Cancelled,
        OrderStatus::Expired,
    ];

    proptest! {
        #[test]
        fn the_accepted_json_is_serdes(
            sale in "[A-Za-z0-9_-]{1,64}",
            shard in any::<u32>(),
            ms in 0..=i64::MAX as u64,
            seq in 0..=i64::MAX as u64,
            quantity in 1..=u32::MAX,
            status in 0..STATUSES.len(),
        ) {
            let sale = SaleId::parse(&sale).unwrap();
            let entry = EntryId::parse(&format!("{ms}-{seq}")).unwrap();
            let view = AcceptedView {
                order_id: OrderId::new(sale.clone(), shard, entry),
                sale_id: sale,
                quantity: Quantity::new(quantity).unwrap(),
                status: STATUSES[status],
            };
            prop_assert_eq!(view.json(), serde_json::to_vec(&view).unwrap());
        }
    }
}
