//! `GET /metrics` (Prometheus text exposition, `crate::metrics`) and the layer that counts
//! every routed answer by route template and status.
//!
//! The route has no authentication, as is usual for scrapes: it shows figures, never
//! buyers, orders or secrets. Keep it off the public internet at the load balancer.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, ready};

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use super::error::ApiError;
use super::gate::Answered;
use super::scrape;
use super::state::AppState;
use crate::metrics::routes::{RouteTallies, RouteTally, UNMATCHED};

/// The content type of the text exposition format.
const EXPOSITION: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The scrape route.
pub fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(render))
}

/// The gateway's metrics, for Prometheus to scrape (no authentication: keep it off the public
/// internet).
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "service",
    operation_id = "metrics",
    responses((status = 200, description = "Prometheus text exposition format", content_type = "text/plain")),
)]
pub(super) async fn render(State(state): State<AppState>) -> Response {
    match scrape::scrape(&state).await {
        Some(text) => {
            let mut response = text.into_response();
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(EXPOSITION));
            response
        }
        None => ApiError::NotFound("metrics are disabled").into_response(),
    }
}

/// Counts each answer of the routes it wraps under the route's template. Added with
/// `Router::layer`, it wraps each route on its own, and each wrapped route keeps its
/// tally at hand: finding it costs one string comparison per request, not a lock.
#[derive(Clone)]
pub struct CountAnswersLayer {
    tallies: Arc<RouteTallies>,
}

impl CountAnswersLayer {
    /// Counts into `tallies`.
    pub fn new(tallies: Arc<RouteTallies>) -> Self {
        Self { tallies }
    }
}

impl<S> Layer<S> for CountAnswersLayer {
    type Service = CountAnswers<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CountAnswers {
            inner,
            route: Arc::new(RouteCache {
                tallies: self.tallies.clone(),
                tally: OnceLock::new(),
            }),
        }
    }
}

/// One wrapped route's tally, found on its first request.
struct RouteCache {
    tallies: Arc<RouteTallies>,
    tally: OnceLock<Arc<RouteTally>>,
}

impl RouteCache {
    /// The tally of `route`: the cached one when it is this route's (always, as axum wraps
    /// each route on its own), else looked up.
    fn tally(&self, route: &str) -> Arc<RouteTally> {
        let cached = self.tally.get_or_init(|| self.tallies.tally(route)).clone();
        if cached.route() == route {
            cached
        } else {
            self.tallies.tally(route)
        }
    }
}

/// The service made by [`CountAnswersLayer`].
#[derive(Clone)]
pub struct CountAnswers<S> {
    inner: S,
    route: Arc<RouteCache>,
}

impl<S> Service<Request> for CountAnswers<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = CountedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let route = req
            .extensions()
            .get::<MatchedPath>()
            .map_or(UNMATCHED, MatchedPath::as_str);
        let tally = self.route.tally(route);
        CountedFuture {
            inner: self.inner.call(req),
            tally,
        }
    }
}

pin_project! {
    /// The answer of [`CountAnswers`], counted when it is ready.
    pub struct CountedFuture<F> {
        #[pin]
        inner: F,
        tally: Arc<RouteTally>,
    }
}

impl<F> Future for CountedFuture<F>
where
    F: Future<Output = Answered>,
{
    type Output = Answered;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Answered> {
        let this = self.project();
        let Ok(response) = ready!(this.inner.poll(cx));
        this.tally.count(response.status().as_u16());
        Poll::Ready(Ok(response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::StatusCode;
    use tower::ServiceExt;

    #[tokio::test]
    async fn answers_are_counted_under_the_route_template_never_the_raw_path() {
        let tallies = Arc::new(RouteTallies::default());
        let app = Router::new()
            .route("/sales/{id}", get(|| async { "a sale" }))
            .fallback(|| async { StatusCode::NOT_FOUND })
            .layer(CountAnswersLayer::new(tallies.clone()));
        for path in [
            "/sales/1",
            "/sales/2",
            "/sales/3",
            "/elsewhere",
            "/sales/1/x",
        ] {
            let request = axum::http::Request::get(path).body(Body::empty()).unwrap();
            app.clone().oneshot(request).await.unwrap();
        }
        let mut counted: Vec<(String, Vec<(u16, u64)>)> = tallies
            .all()
            .iter()
            .map(|t| (t.route().to_owned(), t.snapshot().collect()))
            .collect();
        counted.sort();
        assert_eq!(
            counted,
            [
                ("/sales/{id}".to_owned(), vec![(200, 3)]),
                (UNMATCHED.to_owned(), vec![(404, 2)]),
            ]
        );
    }
}
