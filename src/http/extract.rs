//! Extractors that turn raw requests into domain values, failing with `ApiError` (never
//! axum's plain-text rejections): JSON bodies, buyer and operator credentials, the
//! idempotency key and path identifiers.
//!
//! The per-buyer limits are extractors too ([`AdmittedBuyer`], [`IssuingBuyer`]): handlers
//! take them before their body, and axum runs extractors in order, so a buyer over a limit
//! is refused from the headers alone and nobody waits for their body.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;

use super::error::ApiError;
use super::in_flight::BuyerSlot;
use super::purchase_route::purchase_sale;
use super::state::AppState;
use crate::auth::{JwtError, admin_operator};
use crate::domain::Rejection;
use crate::domain::{IdempotencyKey, Operator, OrderId, SaleId, UserId};
use crate::limits::{Limited, Policy};

/// A JSON body; bad JSON is a 422 `validation`, an oversized body a 413, a body that takes
/// longer than `http.body_read_timeout_ms` to arrive a 408.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let http = &state.settings.http;
        let limit = Duration::from_millis(http.body_read_timeout_ms);
        // The timer is only armed if the body is not already there when first polled.
        match tokio::time::timeout(limit, read_json::<T>(req, state)).await {
            Ok(Ok(value)) => Ok(Self(value)),
            Ok(Err(rejection)) => Err(json_rejection(rejection, http.body_limit_bytes)),
            Err(_) => Err(ApiError::BodyTimeout {
                limit_ms: http.body_read_timeout_ms,
            }),
        }
    }
}

/// The body as `T`, with axum's `Json` rules and rejections. A request whose content type is
/// exactly `application/json` (what clients send) that parses takes a shorter way: no media
/// type parsing and no tracking of the path into the value, which is only needed to
/// describe a failure. Anything else, and every failure, goes through `Json` itself, so
/// what is accepted and what a refusal says are `Json`'s.
async fn read_json<T: DeserializeOwned>(
    req: Request,
    state: &AppState,
) -> Result<T, JsonRejection> {
    let plain_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == b"application/json");
    if !plain_json {
        return axum::Json::<T>::from_request(req, state)
            .await
            .map(|axum::Json(value)| value);
    }
    let bytes = Bytes::from_request(req, state).await?;
    match serde_json::from_slice(&bytes) {
        Ok(value) => Ok(value),
        Err(_) => axum::Json::<T>::from_bytes(&bytes).map(|axum::Json(value)| value),
    }
}

fn json_rejection(rejection: JsonRejection, limit: usize) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge { limit }
    } else {
        ApiError::Validation(rejection.body_text())
    }
}

/// The token of an `Authorization: Bearer <token>` header.
pub(super) fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

/// An authenticated buyer.
pub struct Buyer(pub UserId);

impl FromRequestParts<AppState> for Buyer {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token =
            bearer(&parts.headers).ok_or(ApiError::Unauthorized("a Bearer token is required"))?;
        let now = state.clock.now().unix_timestamp();
        let verdict = state.jwt.verify_refreshing(token, now).await;
        verdict.map(Buyer).map_err(|e| {
            ApiError::Unauthorized(match e {
                JwtError::Expired => "the token has expired",
                JwtError::NotYetValid => "the token is not valid yet",
                JwtError::Issuer | JwtError::Audience => {
                    "the token was issued by or for another party"
                }
                JwtError::UnknownKey => "the token's signing key is not known",
                _ => "the token is not valid",
            })
        })
    }
}

/// A buyer admitted to a purchase: authenticated, within the per-buyer rate limit, and
/// holding one of their `http.max_in_flight_per_buyer` slots until the handler returns (keep
/// the slot bound, e.g. `AdmittedBuyer(user, _slot)`). A refusal is a 429, counted for the
/// sale.
pub struct AdmittedBuyer(pub UserId, pub BuyerSlot);

impl FromRequestParts<AppState> for AdmittedBuyer {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Buyer(user) = Buyer::from_request_parts(parts, state).await?;
        let admitted = state.rate_limits.check_user(&user).and_then(|()| {
            state
                .in_flight
                .enter_buyer(&user)
                .ok_or_else(|| too_many_in_flight(state.in_flight.per_buyer_limit()))
        });
        match admitted {
            Ok(slot) => Ok(Self(user, slot)),
            Err(limited) => {
                record_rate_limited(parts, state);
                Err(ApiError::RateLimited(limited))
            }
        }
    }
}

/// The refusal of a buyer who has `limit` purchases in progress already: retry in a second.
fn too_many_in_flight(limit: usize) -> Limited {
    let limit = u32::try_from(limit).unwrap_or(u32::MAX);
    Limited {
        policy: Policy {
            scope: "user-in-flight",
            rate_per_sec: limit,
            burst: limit,
        },
        retry_after: Duration::from_secs(1),
    }
}

/// Counts a rate-limited purchase in its sale's figures, if the sale is known. (Read from
/// the path itself: the purchase route is served in front of the router too, where no path
/// parameters were matched.)
fn record_rate_limited(parts: &Parts, state: &AppState) {
    if let Some(sale) = purchase_sale(parts.uri.path()).and_then(|id| SaleId::parse(id).ok())
        && let Some(rt) = state.sales.cached(&sale)
    {
        rt.stats.record(Rejection::RateLimited);
    }
}

/// A buyer asking for a challenge or a purchase token: authenticated and within the
/// per-buyer issuance limit (`limits.issue`).
pub struct IssuingBuyer(pub UserId);

impl FromRequestParts<AppState> for IssuingBuyer {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Buyer(user) = Buyer::from_request_parts(parts, state).await?;
        state
            .rate_limits
            .check_issue(&user)
            .map_err(ApiError::RateLimited)?;
        Ok(Self(user))
    }
}

/// An authenticated operator, named by the credential they presented.
pub struct Admin(pub Operator);

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer(&parts.headers)
            .ok_or(ApiError::Unauthorized("an admin Bearer token is required"))?;
        admin_operator(token, state.settings.admin.credentials())
            .and_then(|name| Operator::parse(name).ok())
            .map(Admin)
            .ok_or(ApiError::Unauthorized("the admin token is not valid"))
    }
}

/// The required `Idempotency-Key` header.
pub struct IdemKey(pub IdempotencyKey);

impl<S: Send + Sync> FromRequestParts<S> for IdemKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let value = parts
            .headers
            .get("idempotency-key")
            .ok_or_else(|| ApiError::Validation("the Idempotency-Key header is required".into()))?;
        let text = value
            .to_str()
            .map_err(|_| ApiError::Validation("Idempotency-Key must be ASCII".into()))?;
        IdempotencyKey::parse(text)
            .map(IdemKey)
            .map_err(|e| ApiError::Validation(e.to_string()))
    }
}

/// The `{order_id}` path parameter. An id that cannot exist is simply not found.
pub struct OrderPath(pub OrderId);

impl<S: Send + Sync> FromRequestParts<S> for OrderPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::NotFound("no such order"))?;
        OrderId::parse(&raw)
            .map(OrderPath)
            .map_err(|_| ApiError::NotFound("no such order"))
    }
}

/// The `{sale_id}` path parameter. An id that cannot exist is simply not found.
pub struct SalePath(pub SaleId);

impl<S: Send + Sync> FromRequestParts<S> for SalePath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::NotFound("no such sale"))?;
        SaleId::parse(&raw)
            .map(SalePath)
            .map_err(|_| ApiError::NotFound("no such sale"))
    }
}
