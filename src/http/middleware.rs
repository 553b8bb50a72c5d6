//! Edge middleware and fallbacks, each answering in problem+json.

use std::any::Any;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::{ApiError, Problem};

/// Answers 503 `overloaded` when a request takes longer than `http.request_timeout_ms`
/// (503 rather than 408: the client did nothing wrong and should retry).
pub async fn request_timeout(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::Overloaded("the request timed out").into_response(),
    }
}

/// Unknown paths.
pub async fn not_found() -> ApiError {
    ApiError::NotFound("no such resource")
}

/// Known paths with the wrong method.
pub async fn method_not_allowed() -> Response {
    Problem {
        slug: "method-not-allowed",
        title: "Method not allowed",
        status: StatusCode::METHOD_NOT_ALLOWED,
        detail: "this resource does not support that method".into(),
        extras: Vec::new(),
    }
    .into_response()
}

/// A panicking handler answers 500 (logged, details withheld); the process stays up.
pub fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    tracing::error!(panic = %message, "handler panicked");
    Problem {
        slug: "internal",
        title: "Internal error",
        status: StatusCode::INTERNAL_SERVER_ERROR,
        detail: "internal error".into(),
        extras: Vec::new(),
    }
    .into_response()
}
