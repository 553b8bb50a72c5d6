//! The sold-out shortcut, in front of the router: once a sale is known to be sold out, a
//! purchase by an authenticated buyer who holds none of it is answered 409 `sold-out`
//! straight from memory, before routing, the edge layers, the body and the per-buyer checks.
//! After sell-out such requests are nearly all the traffic a flash sale gets, and each now
//! costs little more than parsing its request.
//!
//! It only ever *answers early* what the full path would answer anyway for stock: every
//! request it is not sure about goes on unchanged to the router, which then does all its
//! checks as usual. That is a request with no valid JWT (the router answers 401), a buyer
//! who holds units (the router replays their order), or a sale outside its window or paused
//! (410 and friends). The per-IP limit still applies first when configured: a client over
//! it gets its 429 here. What it skips is what no longer matters once nothing can be bought:
//! the body (quantity, purchase token), the Idempotency-Key and the per-buyer and per-sale
//! rate limits; a malformed request for a sold-out sale is told "sold out".

use std::sync::Arc;

use axum::extract::Request;
use axum::http::Method;
use axum::response::{IntoResponse, Response};

use super::buyer::refusal_error;
use super::extract::bearer;
use super::gate::Gate;
use super::outcome::AnswerOutcome;
use super::purchase_route::{PURCHASE_ROUTE, purchase_sale};
use super::state::AppState;
use crate::domain::SaleId;
use crate::metrics::routes::RouteTally;
use crate::purchase::Refusal;

/// The shortcut, as a gate in front of the router.
#[derive(Clone)]
pub struct SoldOutGate {
    state: AppState,
    /// Where its answers are counted in `flashgate_http_requests_total` (under the purchase
    /// route, whose answers they are); `None` when metrics are off.
    route: Option<Arc<RouteTally>>,
}

impl SoldOutGate {
    /// The shortcut over `state`'s sales.
    pub fn new(state: AppState) -> Self {
        let route = state
            .metrics
            .is_enabled()
            .then(|| state.metrics.routes().tally(PURCHASE_ROUTE));
        Self { state, route }
    }
}

impl Gate for SoldOutGate {
    fn answer(&self, req: &Request) -> Option<Response> {
        let response = early_answer(&self.state, req)?;
        if let Some(route) = &self.route {
            route.count(response.status().as_u16());
        }
        Some(response)
    }
}

/// The answer for `req` if it is a purchase this shortcut may answer, else `None`.
fn early_answer(state: &AppState, req: &Request) -> Option<Response> {
    if req.method() != Method::POST {
        return None;
    }
    let sale = purchase_sale(req.uri().path())?;
    let rt = state.sales.cached(&SaleId::parse(sale).ok()?)?;
    // Only a sold-out sale can be settled from memory: anything else costs no JWT check.
    if !rt.is_sold_out() {
        return None;
    }
    let now = state.clock.now();
    let token = bearer(req.headers())?;
    let user = state.jwt.verify(token, now.unix_timestamp()).ok()?;
    let settled = state.purchases.settled_from_memory(&rt, &user, now)?;
    let refusal = match state.ip_limit.check_request(req) {
        Err(limited) => Refusal::RateLimited(limited),
        Ok(()) => settled,
    };
    let error = refusal_error(state.purchases.counted(&rt, refusal));
    if state.metrics.is_enabled() {
        AnswerOutcome::Refused(error.kind()).count_in(&rt.answers);
    }
    Some(error.into_response())
}
