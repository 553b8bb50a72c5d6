//! The HTTP edge: routes, extractors, errors and the middleware every request passes.

pub mod admin;
pub mod buyer;
pub mod client_ip;
pub mod cors;
pub mod dashboard;
pub mod error;
pub mod extract;
pub mod gate;
pub mod health;
pub mod in_flight;
pub mod lifecycle;
pub mod metrics;
pub mod middleware;
pub mod openapi;
pub mod operator;
mod outcome;
pub mod purchase_route;
pub mod request_id;
mod scrape;
pub mod server;
pub mod sold_out;
pub mod state;
pub mod tokens;

pub use error::ApiError;
pub use state::AppState;

use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::response::Response;
use tower::Layer;
use tower::util::{Either, MapResponse, MapResponseLayer, option_layer};
use tower_http::cors::Cors;
use tower_http::trace::TraceLayer;

use gate::Gated;
use metrics::CountAnswersLayer;
use purchase_route::{FastPurchase, PurchaseFirst};
use request_id::{RequestIdLayer, RequestIds};
use sold_out::SoldOutGate;

/// What the server runs: purchases on their own path and everything else through the
/// router ([`purchase_route`]), behind the sold-out shortcut, behind CORS when origins are
/// configured (so sold-out answers carry its headers too), with every failed request logged
/// once on its way out ([`error::log_failure`]), all of it inside the request's id
/// ([`request_id`]).
pub fn service(state: AppState) -> RequestIds<MapResponse<Edge, LogFailure>> {
    let cors = cors::layer(&state.settings.http.cors_origins);
    let routed = PurchaseFirst::new(purchase_route::fast_path(&state), app(state.clone()));
    let gated = Gated::new(routed, SoldOutGate::new(state.clone()));
    let edge = option_layer(cors).layer(gated);
    let logged = MapResponseLayer::new(error::log_failure as LogFailure).layer(edge);
    let log = &state.settings.log;
    RequestIdLayer::new(log.request_ids, log.access).layer(logged)
}

/// Purchases on their own path, everything else through the router.
pub type Routed = PurchaseFirst<FastPurchase, Router>;

/// The application behind the sold-out shortcut, with or without CORS.
pub type Edge = Either<Cors<Gated<Routed, SoldOutGate>>, Gated<Routed, SoldOutGate>>;

/// The function [`service`] passes every response through.
pub type LogFailure = fn(Response) -> Response;

/// The whole application: every resource router merged, wrapped in the edge middleware.
pub fn app(state: AppState) -> Router {
    let body_limit = state.settings.http.body_limit_bytes;
    let timeout = Duration::from_millis(state.settings.http.request_timeout_ms);
    let trace = state.settings.http.trace_requests;
    let metered = state.metrics.is_enabled();
    let router = Router::new()
        .merge(buyer::router(&state))
        .merge(lifecycle::router())
        .merge(admin::router())
        .merge(operator::router())
        .merge(health::router())
        .merge(openapi::router())
        .merge(dashboard::router());
    let router = if metered {
        router.merge(metrics::router())
    } else {
        router
    };
    let router = router
        .fallback(middleware::not_found)
        .method_not_allowed_fallback(middleware::method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::RequestTimeoutLayer::new(timeout))
        .layer(middleware::CatchPanicLayer);
    // Outside the timeout and the panic catcher, so that their answers are counted too.
    let router = if metered {
        router.layer(CountAnswersLayer::new(state.metrics.routes().clone()))
    } else {
        router
    };
    // A span per request is worth its few per cent of throughput only when someone reads it.
    let router = if trace {
        router.layer(TraceLayer::new_for_http().on_failure(()))
    } else {
        router
    };
    router.with_state(state)
}
