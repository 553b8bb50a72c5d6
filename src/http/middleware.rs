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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::body::Body;
    use axum::http::header;
    use axum::routing::get;
    use tower::ServiceExt;

    fn app() -> Router {
        Router::new()
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    "too late"
                }),
            )
            .route("/fast", get(|| async { "ok" }))
            .layer(axum::middleware::from_fn_with_state(
                Duration::from_millis(50),
                request_timeout,
            ))
    }

    #[tokio::test]
    async fn a_handler_past_the_timeout_gets_503_with_retry_after() {
        let request = axum::http::Request::get("/slow")
            .body(Body::empty())
            .unwrap();
        let response = app().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["type"], "/problems/overloaded");
        assert_eq!(body["detail"], "the request timed out");
    }

    #[tokio::test]
    async fn a_handler_within_the_timeout_is_untouched() {
        let request = axum::http::Request::get("/fast")
            .body(Body::empty())
            .unwrap();
        let response = app().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
}
