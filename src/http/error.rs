//! The one error type of the HTTP edge, and the one table of what it answers: every
//! non-2xx answer is RFC 9457 problem+json of a [`ProblemKind`], whose status, slug and title
//! are each a single exhaustive match, and every [`ApiError`] maps to its kind in one more.
//!
//! A server-side failure is never described to the client. Its response carries the error
//! as a [`Failure`] extension, and [`log_failure`], at the outer edge, logs it once with its
//! cause chain: answering stays free of side effects, and 2xx/4xx answers pay nothing.

use std::borrow::Cow;
use std::sync::{Arc, LazyLock};

use axum::body::{Body, Bytes};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::db::DbError;
use crate::domain::OrderStatus;
use crate::lifecycle::LifecycleError;
use crate::limits::Limited;
use crate::orders::OrderLookupError;
use crate::persist::PersistError;
use crate::persist::reconcile::ReconcileError;
use crate::sales::report::error_chain;
use crate::store::StoreError;
use crate::tokens::InvalidToken;

/// Seconds a client should wait before retrying after a 503.
const RETRY_AFTER_SECS: u32 = 1;

/// Every kind of problem the gateway answers with, one per `/problems/<slug>`: the slugs of
/// the HTTP contract plus the gateway's own (`insufficient-stock`, `request-timeout`,
/// `method-not-allowed`, `sale-live`, `sale-has-orders`, `change-in-progress`,
/// `orders-pending`, `dead-letter-refused`, `internal`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    Unauthorized,
    Validation,
    PayloadTooLarge,
    RequestTimeout,
    NotFound,
    MethodNotAllowed,
    SaleNotStarted,
    SaleEnded,
    SalePaused,
    SoldOut,
    OrderState,
    InsufficientStock,
    LimitReached,
    IdempotencyConflict,
    InvalidToken,
    TokenUsed,
    SaleLive,
    SaleHasOrders,
    ChangeInProgress,
    OrdersPending,
    DeadLetterRefused,
    RateLimited,
    Overloaded,
    Internal,
}

impl ProblemKind {
    /// Every kind.
    pub const ALL: [Self; 24] = [
        Self::Unauthorized,
        Self::Validation,
        Self::PayloadTooLarge,
        Self::RequestTimeout,
        Self::NotFound,
        Self::MethodNotAllowed,
        Self::SaleNotStarted,
        Self::SaleEnded,
        Self::SalePaused,
        Self::SoldOut,
        Self::OrderState,
        Self::InsufficientStock,
        Self::LimitReached,
        Self::IdempotencyConflict,
        Self::InvalidToken,
        Self::TokenUsed,
        Self::SaleLive,
        Self::SaleHasOrders,
        Self::ChangeInProgress,
        Self::OrdersPending,
        Self::DeadLetterRefused,
        Self::RateLimited,
        Self::Overloaded,
        Self::Internal,
    ];

    /// The HTTP status of this kind of answer.
    pub fn status(self) -> StatusCode {
        match self {
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Validation | Self::IdempotencyConflict => StatusCode::UNPROCESSABLE_ENTITY,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::InvalidToken => StatusCode::FORBIDDEN,
            Self::SaleEnded => StatusCode::GONE,
            Self::SaleNotStarted
            | Self::SalePaused
            | Self::SoldOut
            | Self::OrderState
            | Self::InsufficientStock
            | Self::LimitReached
            | Self::TokenUsed
            | Self::SaleLive
            | Self::SaleHasOrders
            | Self::ChangeInProgress
            | Self::OrdersPending
            | Self::DeadLetterRefused => StatusCode::CONFLICT,
            Self::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Self::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The problem type slug (`/problems/<slug>`).
    pub fn slug(self) -> &'static str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::Validation => "validation",
            Self::PayloadTooLarge => "payload-too-large",
            Self::RequestTimeout => "request-timeout",
            Self::NotFound => "not-found",
            Self::MethodNotAllowed => "method-not-allowed",
            Self::SaleNotStarted => "sale-not-started",
            Self::SaleEnded => "sale-ended",
            Self::SalePaused => "sale-paused",
            Self::SoldOut => "sold-out",
            Self::OrderState => "order-state",
            Self::InsufficientStock => "insufficient-stock",
            Self::LimitReached => "limit-reached",
            Self::IdempotencyConflict => "idempotency-conflict",
            Self::InvalidToken => "invalid-token",
            Self::TokenUsed => "token-used",
            Self::SaleLive => "sale-live",
            Self::SaleHasOrders => "sale-has-orders",
            Self::ChangeInProgress => "change-in-progress",
            Self::OrdersPending => "orders-pending",
            Self::DeadLetterRefused => "dead-letter-refused",
            Self::RateLimited => "rate-limited",
            Self::Overloaded => "overloaded",
            Self::Internal => "internal",
        }
    }

    /// A short, fixed summary of the kind.
    pub fn title(self) -> &'static str {
        match self {
            Self::Unauthorized => "Unauthorized",
            Self::Validation => "Invalid request",
            Self::PayloadTooLarge => "Payload too large",
            Self::RequestTimeout => "Request timeout",
            Self::NotFound => "Not found",
            Self::MethodNotAllowed => "Method not allowed",
            Self::SaleNotStarted => "Sale not started",
            Self::SaleEnded => "Sale ended",
            Self::SalePaused => "Sale paused",
            Self::SoldOut => "Sold out",
            Self::OrderState => "Order state forbids this",
            Self::InsufficientStock => "Not enough stock",
            Self::LimitReached => "Per-buyer limit reached",
            Self::IdempotencyConflict => "Idempotency key conflict",
            Self::InvalidToken => "Invalid purchase token",
            Self::TokenUsed => "Purchase token already used",
            Self::SaleLive => "Sale is live",
            Self::SaleHasOrders => "Sale has orders",
            Self::ChangeInProgress => "Another change of this sale is in progress",
            Self::OrdersPending => "Orders not yet in the database",
            Self::DeadLetterRefused => "Dead letter not persisted",
            Self::RateLimited => "Rate limited",
            Self::Overloaded => "Service overloaded",
            Self::Internal => "Internal error",
        }
    }
}

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
    #[error("the order is {}: it cannot become {}", .current.as_str(), .wanted.as_str())]
    OrderState {
        current: OrderStatus,
        wanted: OrderStatus,
    },
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
    ChangeInProgress(String),
    #[error("{0}")]
    OrdersPending(String),
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

impl From<LifecycleError> for ApiError {
    fn from(e: LifecycleError) -> Self {
        match e {
            LifecycleError::Store(e)
            | LifecycleError::Persist(PersistError::Ack(e) | PersistError::Bury(e)) => {
                Self::Store(e)
            }
            LifecycleError::Db(e) | LifecycleError::Persist(PersistError::Db(e)) => Self::Db(e),
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
    /// The kind of problem this answers with. An outage (Redis unreachable, a database call
    /// failed or timed out) is `overloaded`, to retry; a store or database that answered
    /// nonsense is `internal`.
    pub fn kind(&self) -> ProblemKind {
        match self {
            Self::Unauthorized(_) => ProblemKind::Unauthorized,
            Self::Validation(_) => ProblemKind::Validation,
            Self::PayloadTooLarge { .. } => ProblemKind::PayloadTooLarge,
            Self::BodyTimeout { .. } => ProblemKind::RequestTimeout,
            Self::NotFound(_) => ProblemKind::NotFound,
            Self::SaleNotStarted { .. } => ProblemKind::SaleNotStarted,
            Self::SaleEnded => ProblemKind::SaleEnded,
            Self::SalePaused => ProblemKind::SalePaused,
            Self::SoldOut => ProblemKind::SoldOut,
            Self::OrderState { .. } => ProblemKind::OrderState,
            Self::Insufficient { .. } => ProblemKind::InsufficientStock,
            Self::LimitReached { .. } => ProblemKind::LimitReached,
            Self::IdempotencyConflict => ProblemKind::IdempotencyConflict,
            Self::InvalidToken(_) => ProblemKind::InvalidToken,
            Self::TokenUsed(_) => ProblemKind::TokenUsed,
            Self::SaleLive(_) => ProblemKind::SaleLive,
            Self::SaleHasOrders(_) => ProblemKind::SaleHasOrders,
            Self::ChangeInProgress(_) => ProblemKind::ChangeInProgress,
            Self::OrdersPending(_) => ProblemKind::OrdersPending,
            Self::DeadLetterRefused(_) => ProblemKind::DeadLetterRefused,
            Self::RateLimited(_) => ProblemKind::RateLimited,
            Self::Overloaded(_)
            | Self::Store(StoreError::Redis(_) | StoreError::SlotMap(_))
            | Self::Db(DbError::Query(_) | DbError::Timeout { .. }) => ProblemKind::Overloaded,
            Self::Store(StoreError::UnexpectedReply { .. } | StoreError::Corrupt { .. })
            | Self::Db(
                DbError::UnsupportedUrl(_)
                | DbError::SqliteDir(..)
                | DbError::Migrate(_)
                | DbError::Encode(_)
                | DbError::BadRow(_),
            ) => ProblemKind::Internal,
        }
    }

    /// The HTTP status of this answer.
    pub fn status(&self) -> StatusCode {
        self.kind().status()
    }

    /// The problem type slug (`/problems/<slug>`).
    pub fn slug(&self) -> &'static str {
        self.kind().slug()
    }

    /// Whether this is a failure of the gateway's own infrastructure, to be logged. Shedding
    /// load (`Overloaded`) is a deliberate answer, not a failure: logging every one of them
    /// would spend the CPU an overloaded gateway lacks.
    fn is_failure(&self) -> bool {
        matches!(self, Self::Store(_) | Self::Db(_))
    }

    /// Members beyond the standard five.
    fn extras(&self) -> Vec<(&'static str, Value)> {
        match self {
            Self::SaleNotStarted { starts_at } => {
                let at = starts_at.format(&Rfc3339).unwrap_or_default();
                vec![("starts_at", json!(at))]
            }
            Self::Insufficient { remaining } => vec![("remaining", json!(remaining))],
            Self::OrderState { current, .. } => vec![("order_status", json!(current))],
            Self::LimitReached { held, limit } => {
                vec![("held", json!(held)), ("per_user_limit", json!(limit))]
            }
            Self::PayloadTooLarge { limit } => vec![("limit_bytes", json!(limit))],
            Self::RateLimited(l) => vec![
                ("scope", json!(l.policy.scope)),
                ("retry_after", json!(retry_after_secs(l))),
            ],
            Self::Unauthorized(_)
            | Self::Validation(_)
            | Self::BodyTimeout { .. }
            | Self::NotFound(_)
            | Self::SaleEnded
            | Self::SalePaused
            | Self::SoldOut
            | Self::IdempotencyConflict
            | Self::InvalidToken(_)
            | Self::TokenUsed(_)
            | Self::SaleLive(_)
            | Self::SaleHasOrders(_)
            | Self::ChangeInProgress(_)
            | Self::OrdersPending(_)
            | Self::DeadLetterRefused(_)
            | Self::Overloaded(_)
            | Self::Store(_)
            | Self::Db(_) => Vec::new(),
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
            Self::Validation(_)
            | Self::PayloadTooLarge { .. }
            | Self::BodyTimeout { .. }
            | Self::SaleNotStarted { .. }
            | Self::OrderState { .. }
            | Self::Insufficient { .. }
            | Self::LimitReached { .. }
            | Self::InvalidToken(_)
            | Self::SaleLive(_)
            | Self::SaleHasOrders(_)
            | Self::ChangeInProgress(_)
            | Self::OrdersPending(_)
            | Self::DeadLetterRefused(_)
            | Self::RateLimited(_) => Cow::Owned(self.to_string()),
            Self::Store(_) | Self::Db(_) if self.kind() == ProblemKind::Internal => {
                Cow::Borrowed("internal error")
            }
            Self::Store(_) => Cow::Borrowed("stock store unavailable, retry shortly"),
            Self::Db(_) => Cow::Borrowed("order database unavailable, retry shortly"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Self::SoldOut = self {
            return sold_out_response();
        }
        let mut response = Problem {
            kind: self.kind(),
            detail: self.detail(),
            extras: self.extras(),
        }
        .into_response();
        response.headers_mut().extend(self.headers());
        if self.is_failure() {
            response.extensions_mut().insert(Failure(Arc::new(self)));
        }
        response
    }
}

/// The cause of a failed request, carried on its response from [`ApiError`]'s
/// `into_response` to [`log_failure`].
#[derive(Debug, Clone)]
pub struct Failure(Arc<ApiError>);

/// Logs the failure a response carries, once, with its cause chain ("stock store
/// unavailable: redis call failed: ..."); a response without one passes untouched. Runs
/// around the whole service, so every answer passes it exactly once.
pub fn log_failure(mut response: Response) -> Response {
    if let Some(Failure(error)) = response.extensions_mut().remove::<Failure>() {
        let status = response.status().as_u16();
        tracing::error!(status, error = %error_chain(&*error), "request failed");
    }
    response
}

/// The JSON of a problem answer, carried on its response beside the body so that the edge
/// can add the request's id as `instance` without parsing the body again
/// (`super::request_id`).
#[derive(Debug, Clone)]
pub struct ProblemJson(pub Bytes);

/// The answer after sell-out, the refusal a flash sale sends most: its body is serialised
/// once and shared by every response.
fn sold_out_response() -> Response {
    static BODY: LazyLock<Bytes> = LazyLock::new(|| {
        let error = ApiError::SoldOut;
        let problem = Problem {
            kind: error.kind(),
            detail: error.detail(),
            extras: error.extras(),
        };
        Bytes::from(serde_json::to_vec(&problem).expect("problems serialize"))
    });
    let mut response = Response::new(Body::from(BODY.clone()));
    response.extensions_mut().insert(ProblemJson(BODY.clone()));
    *response.status_mut() = ProblemKind::SoldOut.status();
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
    /// The kind: type, title and status.
    pub kind: ProblemKind,
    /// What happened.
    pub detail: Cow<'static, str>,
    /// Members beyond the standard ones.
    pub extras: Vec<(&'static str, Value)>,
}

impl Serialize for Problem {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(4 + self.extras.len()))?;
        map.serialize_entry("type", &format_args!("/problems/{}", self.kind.slug()))?;
        map.serialize_entry("title", self.kind.title())?;
        map.serialize_entry("status", &self.kind.status().as_u16())?;
        map.serialize_entry("detail", &self.detail)?;
        for (key, value) in &self.extras {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = Bytes::from(serde_json::to_vec(&self).expect("problems serialize"));
        let status = self.kind.status();
        let mut response = (status, body.clone()).into_response();
        response.extensions_mut().insert(ProblemJson(body));
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redis_outage() -> ApiError {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "secret detail");
        ApiError::Store(StoreError::Redis(redis::RedisError::from(io)))
    }

    #[test]
    fn store_outage_is_503_with_retry_after_and_no_internals() {
        let err = redis_outage();
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
            assert_ne!(e.kind().title(), "Internal error", "{e:?}");
        }
    }

    #[test]
    fn every_problem_kind_has_its_own_slug() {
        let mut slugs: Vec<_> = ProblemKind::ALL.iter().map(|k| k.slug()).collect();
        slugs.sort_unstable();
        slugs.dedup();
        assert_eq!(slugs.len(), ProblemKind::ALL.len(), "a slug is shared");
    }

    #[test]
    fn the_contracts_slugs_answer_with_the_contracts_status() {
        // The HTTP contract's table of problems, slug and status. `order-state` belongs to
        // the order lifecycle, which the gateway does not serve yet.
        let contract = [
            ("unauthorized", 401),
            ("validation", 422),
            ("payload-too-large", 413),
            ("not-found", 404),
            ("sale-not-started", 409),
            ("sale-ended", 410),
            ("sold-out", 409),
            ("limit-reached", 409),
            ("invalid-token", 403),
            ("token-used", 409),
            ("idempotency-conflict", 422),
            ("rate-limited", 429),
            ("overloaded", 503),
            ("sale-paused", 409),
        ];
        for (slug, status) in contract {
            let kind = ProblemKind::ALL.into_iter().find(|k| k.slug() == slug);
            let kind = kind.unwrap_or_else(|| panic!("no problem kind answers {slug}"));
            assert_eq!(kind.status().as_u16(), status, "{slug}");
        }
    }

    #[test]
    fn a_paused_sale_is_a_conflict_not_the_end() {
        let err = ApiError::SalePaused;
        assert_eq!(
            (err.status(), err.slug()),
            (StatusCode::CONFLICT, "sale-paused")
        );
    }

    #[test]
    fn only_failures_carry_their_cause_to_the_log_and_it_is_taken_once() {
        let response = redis_outage().into_response();
        assert!(response.extensions().get::<Failure>().is_some());
        let logged = log_failure(response);
        assert!(logged.extensions().get::<Failure>().is_none());
        for refusal in [ApiError::Overloaded("queue full"), ApiError::SaleEnded] {
            let response = refusal.into_response();
            assert!(response.extensions().get::<Failure>().is_none());
        }
    }
}
