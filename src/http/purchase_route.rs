//! The purchase route's own path through the edge: purchases are nearly all of a flash
//! sale's traffic, so they are dispatched in front of the router ([`PurchaseFirst`]) to a
//! stack of their own ([`FastPurchase`]) with the very layers the router puts around the
//! route, in the same order: the answer count under the route's template, the panic catcher,
//! the request timeout, the per-IP limit, the in-flight cap, then the handler.
//!
//! Why: behind axum's router a purchase also paid for the route lookup and its URL
//! parameters, a clone of the boxed route and of the boxed handler service, a second boxed
//! future and the response mapping of each layer — about a tenth of the gateway's CPU per
//! purchase in a profile of the guarded path. Here the route is one string match and the
//! handler one boxed future.
//!
//! Every other request, and a purchase path with another method (answered 405 with `Allow`
//! by the router), goes to the router, which still serves the purchase route itself with
//! the same handler service: it lists it (the OpenAPI check reads it there) and it works
//! when used on its own. With `http.trace_requests` on, purchases take the router too, whose
//! trace layer spans every request.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::extract::Request;
use axum::http::Method;
use axum::response::Response;
use futures_util::future::Either;
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use super::buyer;
use super::gate::{Answered, GateLayer, Gated, IpGate};
use super::in_flight::{Capped, InFlightLayer};
use super::middleware::{CatchPanic, CatchPanicLayer, RequestTimeout, RequestTimeoutLayer};
use super::state::AppState;
use crate::metrics::routes::RouteTally;

/// The purchase route's template (also the `route` label of its answers in
/// `flashgate_http_requests_total`, those of the sold-out shortcut included).
pub(crate) const PURCHASE_ROUTE: &str = "/api/v1/sales/{sale_id}/purchase";

/// The sale id of a purchase path, `/api/v1/sales/{sale_id}/purchase` (not yet checked to be
/// a valid id).
pub(crate) fn purchase_sale(path: &str) -> Option<&str> {
    path.strip_prefix("/api/v1/sales/")?
        .strip_suffix("/purchase")
        .filter(|id| !id.contains('/'))
}

/// Whether `req` is a purchase: a POST to the purchase route.
fn is_purchase(req: &Request) -> bool {
    req.method() == Method::POST && purchase_sale(req.uri().path()).is_some()
}

/// The purchase handler as a tower service: one boxed future per request.
#[derive(Clone)]
pub struct PurchaseHandler {
    state: AppState,
}

impl Service<Request> for PurchaseHandler {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Answered> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let state = self.state.clone();
        Box::pin(async move { Ok(buyer::purchase(state, req).await) })
    }
}

/// The purchase route's own layers around the handler: the per-IP limit (when configured),
/// then the in-flight cap.
pub type RouteService = Gated<Capped<PurchaseHandler>, Option<IpGate>>;

/// The route's service, for the router and for [`FastPurchase`] alike.
pub fn route_service(state: &AppState) -> RouteService {
    let handler = PurchaseHandler {
        state: state.clone(),
    };
    let capped = InFlightLayer::new(Arc::clone(&state.in_flight)).layer(handler);
    let by_ip = state
        .ip_limit
        .limits
        .limits_ip()
        .then(|| IpGate(Arc::clone(&state.ip_limit)));
    GateLayer::new(by_ip).layer(capped)
}

/// The purchase route with the router's edge layers around it (module docs).
pub type FastPurchase = CountedAs<CatchPanic<RequestTimeout<RouteService>>>;

/// The fast path for `state`, or `None` when purchases must take the router (request
/// tracing on).
pub fn fast_path(state: &AppState) -> Option<FastPurchase> {
    if state.settings.http.trace_requests {
        return None;
    }
    let timeout = Duration::from_millis(state.settings.http.request_timeout_ms);
    let timed = RequestTimeoutLayer::new(timeout).layer(route_service(state));
    let caught = CatchPanicLayer.layer(timed);
    let tally = state
        .metrics
        .is_enabled()
        .then(|| state.metrics.routes().tally(PURCHASE_ROUTE));
    Some(CountedAs {
        inner: caught,
        tally,
    })
}

/// Counts each answer under one route's tally, as the router's `CountAnswers` does for the
/// route it matched (nothing when metrics are off).
#[derive(Clone)]
pub struct CountedAs<S> {
    inner: S,
    tally: Option<Arc<RouteTally>>,
}

impl<S> Service<Request> for CountedAs<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = CountedAsFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        CountedAsFuture {
            inner: self.inner.call(req),
            tally: self.tally.clone(),
        }
    }
}

pin_project! {
    /// The answer of [`CountedAs`], counted when it is ready.
    pub struct CountedAsFuture<F> {
        #[pin]
        inner: F,
        tally: Option<Arc<RouteTally>>,
    }
}

impl<F: Future<Output = Answered>> Future for CountedAsFuture<F> {
    type Output = Answered;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Answered> {
        let this = self.project();
        let Ok(response) = ready!(this.inner.poll(cx));
        if let Some(tally) = this.tally {
            tally.count(response.status().as_u16());
        }
        Poll::Ready(Ok(response))
    }
}

/// Purchases to `purchase` (when there is a fast path), everything else to `router`.
#[derive(Clone)]
pub struct PurchaseFirst<P, R> {
    purchase: Option<P>,
    router: R,
}

impl<P, R> PurchaseFirst<P, R> {
    /// Dispatches purchases to `purchase`, or everything to `router` if it is `None`.
    pub fn new(purchase: Option<P>, router: R) -> Self {
        Self { purchase, router }
    }
}

impl<P, R> Service<Request> for PurchaseFirst<P, R>
where
    P: Service<Request, Response = Response, Error = Infallible>,
    R: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<P::Future, R::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if let Some(purchase) = &mut self.purchase {
            ready!(purchase.poll_ready(cx))?;
        }
        self.router.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        match &mut self.purchase {
            Some(purchase) if is_purchase(&req) => Either::Left(purchase.call(req)),
            _ => Either::Right(self.router.call(req)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::SaleId;

    #[test]
    fn only_purchase_paths_name_a_sale() {
        assert_eq!(purchase_sale("/api/v1/sales/s1/purchase"), Some("s1"));
        for path in [
            "/api/v1/sales/s1",
            "/api/v1/sales/s1/tokens",
            "/api/v1/sales/a/b/purchase",
            "/api/v1/sales/s1/purchase/",
            "/admin/v1/sales/s1/purchase",
            "/api/v1/sales//purchase",
        ] {
            let named = purchase_sale(path);
            assert!(
                named.is_none_or(|id| SaleId::parse(id).is_err()),
                "{path}: {named:?}"
            );
        }
    }
}
