//! Edge middleware and fallbacks, each answering in problem+json.

use std::any::Any;
use std::convert::Infallible;
use std::future::Future;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use futures_util::FutureExt;
use futures_util::future::{Either, Map, Ready, ready};
use pin_project_lite::pin_project;
use tokio::time::Timeout;
use tokio::time::error::Elapsed;
use tower::{Layer, Service};

use super::error::{ApiError, Problem, ProblemKind};
use super::gate::Answered;

/// Answers 503 `overloaded` when a request takes longer than `http.request_timeout_ms`
/// (503 rather than 408: the client did nothing wrong and should retry).
///
/// A plain tower layer rather than `axum::middleware::from_fn`: every request passes it,
/// and this form neither boxes the inner future nor clones the inner service per request.
#[derive(Debug, Clone, Copy)]
pub struct RequestTimeoutLayer {
    limit: Duration,
}

impl RequestTimeoutLayer {
    /// Requests get at most `limit` each.
    pub fn new(limit: Duration) -> Self {
        Self { limit }
    }
}

impl<S> Layer<S> for RequestTimeoutLayer {
    type Service = RequestTimeout<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestTimeout {
            inner,
            limit: self.limit,
        }
    }
}

/// The service made by [`RequestTimeoutLayer`].
#[derive(Debug, Clone)]
pub struct RequestTimeout<S> {
    inner: S,
    limit: Duration,
}

impl<S> Service<Request> for RequestTimeout<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Map<Timeout<S::Future>, fn(Result<Answered, Elapsed>) -> Answered>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        tokio::time::timeout(self.limit, self.inner.call(req)).map(timed_out_as_overloaded)
    }
}

fn timed_out_as_overloaded(outcome: Result<Answered, Elapsed>) -> Answered {
    outcome.unwrap_or_else(|_| Ok(ApiError::Overloaded("the request timed out").into_response()))
}

/// Unknown paths.
pub async fn not_found() -> ApiError {
    ApiError::NotFound("no such resource")
}

/// Known paths with the wrong method.
pub async fn method_not_allowed() -> Response {
    Problem {
        kind: ProblemKind::MethodNotAllowed,
        detail: "this resource does not support that method".into(),
        extras: Vec::new(),
    }
    .into_response()
}

/// Answers 500 `internal` ([`panic_response`]) when the service it wraps panics, in `call`
/// or while its future runs; the process stays up. Unlike tower-http's catcher, the answer
/// keeps its body type: no body is boxed again on its way out.
#[derive(Debug, Clone, Copy, Default)]
pub struct CatchPanicLayer;

impl<S> Layer<S> for CatchPanicLayer {
    type Service = CatchPanic<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CatchPanic { inner }
    }
}

/// The service made by [`CatchPanicLayer`].
#[derive(Debug, Clone)]
pub struct CatchPanic<S> {
    inner: S,
}

impl<S> Service<Request> for CatchPanic<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<Ready<Answered>, Caught<S::Future>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        match panic::catch_unwind(AssertUnwindSafe(|| self.inner.call(req))) {
            Ok(future) => Either::Right(Caught { inner: future }),
            Err(panic) => Either::Left(ready(Ok(panic_response(panic)))),
        }
    }
}

pin_project! {
    /// A future whose panic is answered (once it has panicked it is done: never polled again).
    pub struct Caught<F> {
        #[pin]
        inner: F,
    }
}

impl<F: Future<Output = Answered>> Future for Caught<F> {
    type Output = Answered;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Answered> {
        let inner = self.project().inner;
        panic::catch_unwind(AssertUnwindSafe(|| inner.poll(cx)))
            .unwrap_or_else(|panic| Poll::Ready(Ok(panic_response(panic))))
    }
}

/// A panicking handler answers 500 (logged, details withheld); the process stays up.
pub fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    tracing::error!(panic = crate::panics::message(&*panic), "handler panicked");
    Problem {
        kind: ProblemKind::Internal,
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
    use axum::http::{StatusCode, header};
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
            .layer(RequestTimeoutLayer::new(Duration::from_millis(50)))
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
    async fn a_panicking_handler_answers_500_and_the_next_request_is_served() {
        let app = Router::new()
            .route(
                "/boom",
                get(|| async {
                    if true {
                        panic!("boom");
                    }
                    "unreachable"
                }),
            )
            .route("/fast", get(|| async { "ok" }))
            .layer(CatchPanicLayer);
        let get = |path: &str| axum::http::Request::get(path).body(Body::empty()).unwrap();
        let response = app.clone().oneshot(get("/boom")).await.unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["type"], "/problems/internal");
        assert_eq!(body["detail"], "internal error");
        let response = app.oneshot(get("/fast")).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }

    #[test]
    fn a_service_panicking_in_call_answers_500() {
        let mut caught =
            CatchPanicLayer.layer(tower::service_fn(|_: Request| -> Ready<Answered> {
                panic!("in call")
            }));
        let future = caught.call(axum::http::Request::new(Body::empty()));
        let response = futures_util::FutureExt::now_or_never(future)
            .expect("answered at once")
            .unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
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
