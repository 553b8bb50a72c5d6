//! The HTTP edge: routes, extractors, errors and the middleware every request passes.

pub mod admin;
pub mod buyer;
pub mod client_ip;
pub mod dashboard;
pub mod error;
pub mod extract;
pub mod gate;
pub mod health;
pub mod in_flight;
pub mod middleware;
pub mod operator;
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
use tower::util::{MapResponse, MapResponseLayer};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

use gate::Gated;
use sold_out::SoldOutGate;

/// What the server runs: the application behind the sold-out shortcut, with every failed
/// request logged once on its way out ([`error::log_failure`]).
pub fn service(state: AppState) -> MapResponse<Gated<Router, SoldOutGate>, LogFailure> {
    let gated = Gated::new(app(state.clone()), SoldOutGate(state));
    MapResponseLayer::new(error::log_failure as LogFailure).layer(gated)
}

/// The function [`service`] passes every response through.
pub type LogFailure = fn(Response) -> Response;

/// The whole application: every resource router merged, wrapped in the edge middleware.
pub fn app(state: AppState) -> Router {
    let body_limit = state.settings.http.body_limit_bytes;
    let timeout = Duration::from_millis(state.settings.http.request_timeout_ms);
    let trace = state.settings.http.trace_requests;
    let router = Router::new()
        .merge(buyer::router(
            state.in_flight.clone(),
            state.ip_limit.clone(),
        ))
        .merge(admin::router())
        .merge(operator::router())
        .merge(health::router())
        .merge(dashboard::router())
        .fallback(middleware::not_found)
        .method_not_allowed_fallback(middleware::method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::RequestTimeoutLayer::new(timeout))
        .layer(CatchPanicLayer::custom(middleware::panic_response));
    // A span per request is worth its few per cent of throughput only when someone reads it.
    let router = if trace {
        router.layer(TraceLayer::new_for_http().on_failure(()))
    } else {
        router
    };
    router.with_state(state)
}
