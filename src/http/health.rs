//! Liveness and readiness probes.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::error::ApiError;
use super::state::AppState;

/// Health routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
}

async fn live() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Ready when Redis answers PING and the database answers a query.
async fn ready(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    redis::cmd("PING")
        .query_async::<String>(&mut state.stock.conn())
        .await
        .map_err(|_| ApiError::Overloaded("redis is not reachable"))?;
    state
        .persister
        .store()
        .ping()
        .await
        .map_err(|_| ApiError::Overloaded("the order database is not reachable"))?;
    Ok(Json(
        json!({ "status": "ok", "redis": "ok", "database": "ok" }),
    ))
}
