//! Liveness and readiness probes.
//!
//! Ready means: Redis answers, the order database answers (within its call deadline), and
//! the batch writer is not stalled (it holds orders and nothing has committed for
//! `queue.stall_after_ms`, [`crate::persist::health`]). Not ready is 503 `overloaded` with
//! one reason per failed check in `reasons`, so a load balancer sheds this instance and an
//! operator reads why.

use std::borrow::Cow;
use std::time::Duration;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::error::{Problem, ProblemKind};
use super::state::AppState;
use crate::store;

/// Health routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
}

/// Liveness: the process answers.
#[utoipa::path(
    get,
    path = "/health/live",
    tag = "service",
    responses((status = 200, description = "`{\"status\": \"ok\"}`", body = Object)),
)]
pub(super) async fn live() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// 200 when every check passes; otherwise 503 with the reasons.
#[utoipa::path(
    get,
    path = "/health/ready",
    tag = "service",
    summary = "Readiness: Redis and the database answer, the order writer is not stalled",
    responses((status = 200, description = "Every check passed", body = Object)),
)]
pub(super) async fn ready(State(state): State<AppState>) -> Response {
    let (redis, database) = tokio::join!(redis_reason(&state), database_reason(&state));
    let reasons: Vec<String> = [writer_reason(&state), redis, database]
        .into_iter()
        .flatten()
        .collect();
    if reasons.is_empty() {
        let body = json!({ "status": "ok", "redis": "ok", "database": "ok", "writer": "ok" });
        return Json(body).into_response();
    }
    Problem {
        kind: ProblemKind::Overloaded,
        detail: Cow::Owned(reasons.join("; ")),
        extras: vec![("reasons", json!(reasons))],
    }
    .into_response()
}

fn writer_reason(state: &AppState) -> Option<String> {
    let after = Duration::from_millis(state.settings.queue.stall_after_ms);
    let stall = state.persister.health().stall(after)?;
    Some(format!(
        "the order writer is stalled: it holds {} orders and nothing has committed for {} ms",
        stall.orders, stall.for_ms
    ))
}

async fn redis_reason(state: &AppState) -> Option<String> {
    let ping = store::ping(&state.redis).await;
    ping.is_err().then(|| "redis is not reachable".to_owned())
}

async fn database_reason(state: &AppState) -> Option<String> {
    let ping = state.persister.db().ping().await;
    ping.is_err()
        .then(|| "the order database is not reachable".to_owned())
}
