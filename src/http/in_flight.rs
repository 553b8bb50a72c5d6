//! The global in-flight cap on the purchase path: at most `http.max_in_flight` purchase
//! handlers run at once; the excess is answered 503 `overloaded` at once, before any work.
//!
//! It is a route layer *around the handler*, so a slot is held for exactly as long as the
//! handler runs (a concurrency layer on the whole router would count connections or queue
//! requests instead of bounding handlers). The slot count is one atomic counter: a request
//! that finds the cap reached gives its increment back and is shed, so admitted handlers
//! never exceed the cap. A plain tower layer, not `from_fn`: no boxed future, no service
//! clone, one atomic add per request.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use futures_util::future::{Either, Ready, ready};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use super::error::ApiError;
use super::gate::Answered;

/// The cap and what it has seen.
#[derive(Debug)]
pub struct InFlight {
    limit: usize,
    running: AtomicUsize,
    peak: AtomicUsize,
    shed: AtomicUsize,
}

impl InFlight {
    /// A cap of `limit` concurrent handlers (at least 1).
    pub fn new(limit: usize) -> Self {
        Self {
            limit: limit.max(1),
            running: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            shed: AtomicUsize::new(0),
        }
    }

    /// Handlers running now.
    pub fn running(&self) -> usize {
        self.running.load(Ordering::Relaxed).min(self.limit)
    }

    /// Requests answered 503 because the cap was reached.
    pub fn shed(&self) -> usize {
        self.shed.load(Ordering::Relaxed)
    }

    /// Most handlers that ever ran at once.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    /// Takes a slot, or counts a shed request and returns `None`.
    fn enter(self: &Arc<Self>) -> Option<Slot> {
        let now = self.running.fetch_add(1, Ordering::AcqRel) + 1;
        if now > self.limit {
            self.running.fetch_sub(1, Ordering::AcqRel);
            self.shed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        if now > self.peak.load(Ordering::Relaxed) {
            self.peak.fetch_max(now, Ordering::Relaxed);
        }
        Some(Slot(Arc::clone(self)))
    }
}

/// A running handler's slot, given back on drop (also when the request is cancelled).
#[derive(Debug)]
struct Slot(Arc<InFlight>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Caps the handlers it wraps at `InFlight`'s limit.
#[derive(Debug, Clone)]
pub struct InFlightLayer {
    cap: Arc<InFlight>,
}

impl InFlightLayer {
    /// A layer counting against `cap`.
    pub fn new(cap: Arc<InFlight>) -> Self {
        Self { cap }
    }
}

impl<S> Layer<S> for InFlightLayer {
    type Service = Capped<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Capped {
            inner,
            cap: Arc::clone(&self.cap),
        }
    }
}

/// The service made by [`InFlightLayer`].
#[derive(Debug, Clone)]
pub struct Capped<S> {
    inner: S,
    cap: Arc<InFlight>,
}

impl<S> Service<Request> for Capped<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<Ready<Answered>, Running<S::Future>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        match self.cap.enter() {
            Some(slot) => Either::Right(Running {
                inner: self.inner.call(req),
                _slot: slot,
            }),
            None => Either::Left(ready(Ok(ApiError::Overloaded(
                "too many purchases in flight",
            )
            .into_response()))),
        }
    }
}

pin_project! {
    /// A handler running in its slot.
    pub struct Running<F> {
        #[pin]
        inner: F,
        _slot: Slot,
    }
}

impl<F: Future<Output = Answered>> Future for Running<F> {
    type Output = Answered;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().inner.poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_capped_and_given_back() {
        let cap = Arc::new(InFlight::new(2));
        let first = cap.enter().expect("first slot");
        let second = cap.enter().expect("second slot");
        assert!(cap.enter().is_none(), "a third handler is shed");
        assert_eq!((cap.running(), cap.peak(), cap.shed()), (2, 2, 1));
        drop(first);
        let third = cap.enter().expect("a freed slot is taken again");
        drop((second, third));
        assert_eq!((cap.running(), cap.peak(), cap.shed()), (0, 2, 1));
    }
}
