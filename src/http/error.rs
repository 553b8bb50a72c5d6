//! The one error type of the HTTP edge: every non-2xx answer is RFC 9457 problem+json.
//! Server-side failures are logged once here and never described to the client.

use std::borrow::Cow;
use std::sync::LazyLock;

use axum::body::{Body, Bytes};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::rate_limit::Limited;
use crate::db::DbError;
use crate::orders::OrderLookupError;
use crate::persist::reconcile::ReconcileError;
use crate::store::StoreError;
use crate::tokens::InvalidToken;

/// Seconds a client should wait before retrying after a 503.
const RETRY_AFTER_SECS: u32 = 1;

/// Everything the API can answer besides success.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("{0}")]
    Validation(String),
    #[error("request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("the request body did not arrive within {limit_ms} ms")]
    BodyTimeout { limit_ms: u64 },
    #[error("{0}")]
    NotFound(&'static str),
    #[error("the sale opens at {starts_at}")]
    SaleNotStarted { starts_at: OffsetDateTime },
    #[error("the sale has ended")]
    SaleEnded,
    #[error("the sale is paused by an operator")]
    SalePaused,
    #[error("no stock left")]
    SoldOut,
    #[error("only {remaining} units left")]
    Insufficient { remaining: u64 },
    #[error("this buyer already holds {held} of at most {limit} units")]
    LimitReached { held: u32, limit: u32 },
    #[error("this Idempotency-Key was used with a different request body")]
    IdempotencyConflict,
    #[error(transparent)]
    InvalidToken(#[from] InvalidToken),
    #[error("{0}")]
    TokenUsed(&'static str),
    #[error("{0}")]
    SaleLive(String),
    #[error("{0}")]
    SaleHasOrders(String),
    #[error("{0}")]
    DeadLetterRefused(String),
    #[error("{0}")]
    Overloaded(&'static str),
    #[error("too many requests for this {}; retry later", .0.policy.scope)]
    RateLimited(Limited),
    #[error("stock store unavailable")]
    Store(#[from] StoreError),
    #[error("order database unavailable")]
    Db(#[from] DbError),
}

impl From<OrderLookupError> for ApiError {
    fn from(e: OrderLookupError) -> Self {
        match e {
            OrderLookupError::Store(e) => Self::Store(e),
            OrderLookupError::Db(e) => Self::Db(e),
        }
    }
}

impl From<ReconcileError> for ApiError {
    fn from(e: ReconcileError) -> Self {
        match e {
            ReconcileError::Store(e) => Self::Store(e),
            ReconcileError::Db(e) => Self::Db(e),
        }
    }
}

impl ApiError {
    /// The HTTP status of this answer.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::InvalidToken(_) => StatusCode::FORBIDDEN,
            Self::SaleEnded | Self::SalePaused => StatusCode::GONE,
            Self::SaleNotStarted { .. }
            | Self::SoldOut
            | Self::Insufficient { .. }
            | Self::LimitReached { .. }
            | Self::TokenUsed(_)
            | Self::SaleLive(_)
            | Self::SaleHasOrders(_)
            | Self::DeadLetterRefused(_) => StatusCode::CONFLICT,
            Self::IdempotencyConflict => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Overloaded(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Store(StoreError::Redis(_))
            | Self::Db(DbError::Query(_) | DbError::Timeout { .. }) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Store(_) | Self::Db(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The problem type slug (`/problems/<slug>`).
    pub fn slug(&self) -> &'static str {
        match self {
            Self::Unauthorized(_) => "unauthorized",
            Self::Validation(_) => "validation",
            Self::PayloadTooLarge { .. } => "payload-too-large",
            Self::BodyTimeout { .. } => "request-timeout",
            Self::NotFound(_) => "not-found",
            Self::SaleNotStarted { .. } => "sale-not-started",
            Self::SaleEnded | Self::SalePaused => "sale-ended",
            Self::SoldOut => "sold-out",
            Self::Insufficient { .. } => "insufficient-stock",
            Self::LimitReached { .. } => "limit-reached",
            Self::IdempotencyConflict => "idempotency-conflict",
            Self::InvalidToken(_) => "invalid-token",
            Self::TokenUsed(_) => "token-used",
            Self::SaleLive(_) => "sale-live",
            Self::SaleHasOrders(_) => "sale-has-orders",
            Self::DeadLetterRefused(_) => "dead-letter-refused",
            Self::RateLimited(_) => "rate-limited",
            Self::Overloaded(_)
            | Self::Store(StoreError::Redis(_))
            | Self::Db(DbError::Query(_) | DbError::Timeout { .. }) => "overloaded",
            Self::Store(_) | Self::Db(_) => "internal",
        }
    }

    fn title(&self) -> &'static str {
        match self.slug() {
            "unauthorized" => "Unauthorized",
            "validation" => "Invalid request",
            "payload-too-large" => "Payload too large",
            "request-timeout" => "Request timeout",
            "not-found" => "Not found",
            "sale-not-started" => "Sale not started",
            "sale-ended" => "Sale ended",
            "sold-out" => "Sold out",
            "insufficient-stock" => "Not enough stock",
            "limit-reached" => "Per-buyer limit reached",
            "idempotency-conflict" => "Idempotency key conflict",
            "invalid-token" => "Invalid purchase token",
            "token-used" => "Purchase token already used",
            "sale-live" => "Sale is live",
            "sale-has-orders" => "Sale has orders",
            "dead-letter-refused" => "Dead letter not persisted",
            "overloaded" => "Service overloaded",
            "rate-limited" => "Rate limited",
            _ => "Internal error",
        }
    }

    /// Members beyond the standard five.
    fn extras(&self) -> Vec<(&'static str, Value)> {
        match self {
            Self::SaleNotStarted { starts_at } => {
                let at = starts_at.format(&Rfc3339).unwrap_or_default();
                vec![("starts_at", json!(at))]
            }
            Self::Insufficient { remaining } => vec![("remaining", json!(remaining))],
            Self::LimitReached { held, limit } => {
                vec![("held", json!(held)), ("per_user_limit", json!(limit))]
            }
            Self::PayloadTooLarge { limit } => vec![("limit_bytes", json!(limit))],
            Self::RateLimited(l) => vec![
                ("scope", json!(l.policy.scope)),
                ("retry_after", json!(retry_after_secs(l))),
            ],
            _ => Vec::new(),
        }
    }

    /// Headers beyond the problem's own: `Retry-After` and the IETF `RateLimit` /
    /// `RateLimit-Policy` fields for a rate-limited request.
    fn headers(&self) -> Vec<(HeaderName, HeaderValue)> {
        let Self::RateLimited(limited) = self else {
            return Vec::new();
        };
        let (policy, wait) = (limited.policy, retry_after_secs(limited));
        let value = |s: String| HeaderValue::try_from(s).expect("ASCII header value");
        vec![
            (header::RETRY_AFTER, HeaderValue::from(wait)),
            (
                HeaderName::from_static("ratelimit"),
                value(format!("limit={}, remaining=0, reset={wait}", policy.burst)),
            ),
            (
                HeaderName::from_static("ratelimit-policy"),
                value(format!("{};w={}", policy.burst, policy.window_secs())),
            ),
        ]
    }

    /// The human-readable explanation; never describes a server-side failure.
    fn detail(&self) -> Cow<'static, str> {
        match self {
            Self::Unauthorized(m)
            | Self::NotFound(m)
            | Self::Overloaded(m)
            | Self::TokenUsed(m) => Cow::Borrowed(m),
            Self::SoldOut => Cow::Borrowed("no stock left"),
            Self::SaleEnded => Cow::Borrowed("the sale has ended"),
            Self::SalePaused => Cow::Borrowed("the sale is paused by an operator"),
            Self::IdempotencyConflict => {
                Cow::Borrowed("this Idempotency-Key was used with a different request body")
            }
            Self::Store(StoreError::Redis(_)) => {
                Cow::Borrowed("stock store unavailable, retry shortly")
            }
            Self::Db(DbError::Query(_) | DbError::Timeout { .. }) => {
                Cow::Borrowed("order database unavailable, retry shortly")
            }
            Self::Store(_) | Self::Db(_) => Cow::Borrowed("internal error"),
            other => Cow::Owned(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Self::SoldOut = self {
            return sold_out_response();
        }
        let status = self.status();
        // Shedding load is a deliberate answer, not a failure: logging every one of them would
        // spend the CPU an overloaded gateway lacks. Real failures are logged once, here.
        if status.is_server_error() && !matches!(self, Self::Overloaded(_)) {
            tracing::error!(error = ?self, "request failed");
        }
        let headers = self.headers();
        let mut response = Problem {
            slug: self.slug(),
            title: self.title(),
            status,
            detail: self.detail(),
            extras: self.extras(),
        }
        .into_response();
        response.headers_mut().extend(headers);
        response
    }
}

/// The answer after sell-out, the refusal a flash sale sends most: its body is serialised
/// once and shared by every response.
fn sold_out_response() -> Response {
    static BODY: LazyLock<Bytes> = LazyLock::new(|| {
        let error = ApiError::SoldOut;
        let problem = Problem {
            slug: error.slug(),
            title: error.title(),
            status: error.status(),
            detail: error.detail(),
            extras: error.extras(),
        };
        Bytes::from(serde_json::to_vec(&problem).expect("problems serialize"))
    });
    let mut response = Response::new(Body::from(BODY.clone()));
    *response.status_mut() = StatusCode::CONFLICT;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    response
}

/// Whole seconds to wait before retrying (rounded up, at least 1).
fn retry_after_secs(limited: &Limited) -> u64 {
    limited.retry_after.as_millis().div_ceil(1000).max(1) as u64
}

/// An RFC 9457 problem body, serialised straight to bytes (this is the hot path of every
/// refusal, e.g. after sell-out, so no intermediate JSON map is built).
pub struct Problem {
    /// The `/problems/<slug>` type.
    pub slug: &'static str,
    /// A short, fixed summary of the type.
    pub title: &'static str,
    /// The HTTP status.
    pub status: StatusCode,
    /// What happened.
    pub detail: Cow<'static, str>,
    /// Members beyond the standard ones.
    pub extras: Vec<(&'static str, Value)>,
}

impl Serialize for Problem {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(4 + self.extras.len()))?;
        map.serialize_entry("type", &format_args!("/problems/{}", self.slug))?;
        map.serialize_entry("title", self.title)?;
        map.serialize_entry("status", &self.status.as_u16())?;
        map.serialize_entry("detail", &self.detail)?;
        for (key, value) in &self.extras {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self).expect("problems serialize");
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_outage_is_503_with_retry_after_and_no_internals() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "secret detail");
        let err = ApiError::Store(StoreError::Redis(redis::RedisError::from(io)));
        assert_eq!(err.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(err.slug(), "overloaded");
        let response = err.into_response();
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
    }

    #[test]
    fn the_shared_sold_out_answer_is_the_problem_it_stands_for() {
        let response = ApiError::SoldOut.into_response();
        assert_eq!(response.status(), StatusCode::CONFLICT);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
        let body =
            futures_util::FutureExt::now_or_never(axum::body::to_bytes(response.into_body(), 4096))
                .expect("a shared body is ready")
                .unwrap();
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            body,
            json!({"type": "/problems/sold-out", "title": "Sold out", "status": 409,
                   "detail": "no stock left"})
        );
    }

    #[test]
    fn every_variant_has_a_title() {
        let errors = [
            ApiError::SoldOut,
            ApiError::SaleEnded,
            ApiError::IdempotencyConflict,
            ApiError::Validation("x".into()),
            ApiError::InvalidToken(InvalidToken::Missing),
            ApiError::TokenUsed("used"),
            ApiError::BodyTimeout { limit_ms: 1000 },
        ];
        for e in errors {
            assert_ne!(e.title(), "Internal error", "{e:?}");
        }
    }
}
