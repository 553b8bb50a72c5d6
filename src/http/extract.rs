//! Extractors that turn raw requests into domain values, failing with `ApiError` (never
//! axum's plain-text rejections): JSON bodies, buyer and operator credentials, the
//! idempotency key and path identifiers.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use serde::de::DeserializeOwned;

use super::error::ApiError;
use super::state::AppState;
use crate::auth::{JwtError, admin_token_matches};
use crate::domain::{IdempotencyKey, OrderId, SaleId, UserId};

/// A JSON body; bad JSON is a 422 `validation`, an oversized body a 413.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_rejection(
                rejection,
                state.settings.http.body_limit_bytes,
            )),
        }
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
        state.jwt.verify(token, now).map(Buyer).map_err(|e| {
            ApiError::Unauthorized(match e {
                JwtError::Expired => "the token has expired",
                _ => "the token is not valid",
            })
        })
    }
}

/// An authenticated operator.
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer(&parts.headers)
            .ok_or(ApiError::Unauthorized("an admin Bearer token is required"))?;
        if admin_token_matches(token, &state.settings.admin.token) {
            Ok(Admin)
        } else {
            Err(ApiError::Unauthorized("the admin token is not valid"))
        }
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
