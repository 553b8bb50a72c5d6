//! Gates: checks that may answer a request themselves, before the service behind them sees
//! it (the per-IP limit, here as [`IpGate`]; the sold-out shortcut in `sold_out.rs`). One
//! tower service for all of them, with no boxed future and no service clone per request.
//! The limits themselves (`rate_limit.rs`) know nothing of HTTP answers.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::{ConnectInfo, Request};
use axum::response::{IntoResponse, Response};
use futures_util::future::{Either, Ready, ready};
use tower::{Layer, Service};

use super::client_ip::client_ip;
use super::error::ApiError;
use crate::limits::{Limited, RateLimits};

/// What every edge service answers: a response, never an error.
pub type Answered = Result<Response, Infallible>;

/// A check in front of a service.
pub trait Gate {
    /// The answer to `req` if the gate gives it, or `None` to pass `req` on.
    fn answer(&self, req: &Request) -> Option<Response>;
}

/// An optional gate: with none configured, everything passes.
impl<G: Gate> Gate for Option<G> {
    fn answer(&self, req: &Request) -> Option<Response> {
        self.as_ref()?.answer(req)
    }
}

/// Puts a gate in front of each service it wraps.
#[derive(Clone)]
pub struct GateLayer<G> {
    gate: G,
}

impl<G> GateLayer<G> {
    /// A layer with `gate` in front.
    pub fn new(gate: G) -> Self {
        Self { gate }
    }
}

impl<S, G: Clone> Layer<S> for GateLayer<G> {
    type Service = Gated<S, G>;

    fn layer(&self, inner: S) -> Self::Service {
        Gated::new(inner, self.gate.clone())
    }
}

/// `inner` behind `gate`.
#[derive(Clone)]
pub struct Gated<S, G> {
    inner: S,
    gate: G,
}

impl<S, G> Gated<S, G> {
    /// `inner`, reached only by requests `gate` does not answer.
    pub fn new(inner: S, gate: G) -> Self {
        Self { inner, gate }
    }
}

impl<S, G> Service<Request> for Gated<S, G>
where
    S: Service<Request, Response = Response, Error = Infallible>,
    G: Gate,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<Ready<Answered>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        match self.gate.answer(&req) {
            Some(response) => Either::Left(ready(Ok(response))),
            None => Either::Right(self.inner.call(req)),
        }
    }
}

/// The per-IP limit as a route gate: a request whose client IP is over its limit is
/// refused before any other work.
#[derive(Clone)]
pub struct IpGate(pub Arc<IpLimit>);

impl Gate for IpGate {
    fn answer(&self, req: &Request) -> Option<Response> {
        let limited = self.0.check_request(req).err()?;
        Some(ApiError::RateLimited(limited).into_response())
    }
}

/// The per-IP limit with the proxies whose `X-Forwarded-For` it believes.
pub struct IpLimit {
    /// The limits (only the per-IP one is used here).
    pub limits: Arc<RateLimits>,
    /// Peers trusted to report the client address.
    pub trusted_proxies: Vec<IpAddr>,
}

impl IpLimit {
    /// Counts `req` against the limit of its client IP (the peer, or the address a trusted
    /// proxy reports). A request without a peer address (none is recorded when no per-IP
    /// limit is configured) passes.
    pub fn check_request(&self, req: &Request) -> Result<(), Limited> {
        let Some(ConnectInfo(peer)) = req.extensions().get::<ConnectInfo<SocketAddr>>() else {
            return Ok(());
        };
        let forwarded = req.headers().get_all("x-forwarded-for").iter();
        let ip = client_ip(peer.ip(), forwarded, &self.trusted_proxies);
        self.limits.check_ip(ip)
    }
}
