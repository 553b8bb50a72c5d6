//! `GET /admin/dashboard`: the operator dashboard, one page served from the binary. The page
//! itself is public (it holds no data); it asks for the admin token and calls the admin API
//! with it from the browser, every second.

use axum::Router;
use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, X_FRAME_OPTIONS};
use axum::response::IntoResponse;
use axum::routing::get;

use super::state::AppState;

/// The page: HTML with its style and script inline (no CDN, nothing else to fetch).
const PAGE: &str = include_str!("dashboard.html");

/// Scripts and styles of the page itself only, data from this gateway only; never framed by
/// another site (its buttons pause sales).
const POLICY: &str = "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; frame-ancestors 'none'";

/// The dashboard's route.
pub fn router() -> Router<AppState> {
    Router::new().route("/admin/dashboard", get(page))
}

/// The operator dashboard: an HTML page that asks for the admin token.
#[utoipa::path(
    get,
    path = "/admin/dashboard",
    tag = "operator",
    operation_id = "dashboard",
    responses((status = 200, description = "The page", content_type = "text/html")),
)]
pub(super) async fn page() -> impl IntoResponse {
    (
        [
            (CONTENT_TYPE, "text/html; charset=utf-8"),
            (CACHE_CONTROL, "no-store"),
            (CONTENT_SECURITY_POLICY, POLICY),
            (X_FRAME_OPTIONS, "DENY"),
        ],
        PAGE,
    )
}
