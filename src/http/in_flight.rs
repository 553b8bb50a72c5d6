//! The in-flight bounds of the purchase path. Globally, at most `http.max_in_flight` purchase
//! handlers run at once; the excess is answered 503 `overloaded` at once, before any work.
//! Per buyer, at most `http.max_in_flight_per_buyer` of those handlers are one buyer's: taken
//! by the `AdmittedBuyer` extractor from the request's headers, before its body is read, so a
//! buyer who stalls their bodies holds that many global slots at most.
//!
//! It is a route layer *around the handler*, so a slot is held for exactly as long as the
//! handler runs (a concurrency layer on the whole router would count connections or queue
//! requests instead of bounding handlers). The slot count is one atomic counter: a request
//! that finds the cap reached gives its increment back and is shed, so admitted handlers
//! never exceed the cap. A plain tower layer, not `from_fn`: no boxed future, no service
//! clone, one atomic add per request.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use futures_util::future::{Either, Ready, ready};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use super::error::ApiError;
use super::gate::Answered;
use crate::domain::UserId;

/// The caps and what they have seen.
#[derive(Debug)]
pub struct InFlight {
    limit: usize,
    running: AtomicUsize,
    peak: AtomicUsize,
    shed: AtomicUsize,
    per_buyer: PerBuyer,
}

impl InFlight {
    /// A cap of `limit` concurrent handlers, `per_buyer` of them for any one buyer (each at
    /// least 1).
    pub fn new(limit: usize, per_buyer: usize) -> Self {
        Self {
            limit: limit.max(1),
            running: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            shed: AtomicUsize::new(0),
            per_buyer: PerBuyer::new(per_buyer),
        }
    }

    /// The most handlers one buyer may have running.
    pub fn per_buyer_limit(&self) -> usize {
        self.per_buyer.limit
    }

    /// Requests refused because their buyer had the most handlers running already.
    pub fn refused_per_buyer(&self) -> usize {
        self.per_buyer.refused.load(Ordering::Relaxed)
    }

    /// Takes one of `user`'s slots, or counts a refusal and returns `None`.
    pub fn enter_buyer(self: &Arc<Self>, user: &UserId) -> Option<BuyerSlot> {
        let key = self.per_buyer.enter(user)?;
        Some(BuyerSlot {
            caps: Arc::clone(self),
            key,
        })
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

/// Stripes of the per-buyer table: requests of different buyers rarely wait on one lock.
const STRIPES: usize = 64;

/// How many handlers each buyer has running, for the buyers who have any. A buyer is known
/// by a keyed hash of their id (the key is random per process, so nobody can pick an id that
/// collides with another buyer's): taking a slot costs one hash and one short lock, and
/// allocates nothing once the table has grown to the traffic.
#[derive(Debug)]
struct PerBuyer {
    limit: usize,
    hasher: RandomState,
    stripes: Box<[Mutex<HashMap<u64, usize>>]>,
    refused: AtomicUsize,
}

impl PerBuyer {
    fn new(limit: usize) -> Self {
        Self {
            limit: limit.max(1),
            hasher: RandomState::new(),
            stripes: (0..STRIPES).map(|_| Mutex::default()).collect(),
            refused: AtomicUsize::new(0),
        }
    }

    fn stripe(&self, key: u64) -> MutexGuard<'_, HashMap<u64, usize>> {
        // Nothing panics while a stripe is locked, so a poisoned one is still consistent.
        self.stripes[key as usize % STRIPES]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts one more handler of `user`; the buyer's key, or `None` at the limit.
    fn enter(&self, user: &UserId) -> Option<u64> {
        let key = self.hasher.hash_one(user.as_str());
        let mut running = self.stripe(key);
        let count = running.entry(key).or_insert(0);
        if *count >= self.limit {
            drop(running);
            self.refused.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        *count += 1;
        Some(key)
    }

    fn leave(&self, key: u64) {
        let mut running = self.stripe(key);
        if let Some(count) = running.get_mut(&key) {
            *count -= 1;
            if *count == 0 {
                running.remove(&key);
            }
        }
    }
}

/// One of a buyer's slots, given back on drop (also when the request is cancelled).
#[derive(Debug)]
pub struct BuyerSlot {
    caps: Arc<InFlight>,
    key: u64,
}

impl Drop for BuyerSlot {
    fn drop(&mut self) {
        self.caps.per_buyer.leave(self.key);
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
        let cap = Arc::new(InFlight::new(2, 1));
        let first = cap.enter().expect("first slot");
        let second = cap.enter().expect("second slot");
        assert!(cap.enter().is_none(), "a third handler is shed");
        assert_eq!((cap.running(), cap.peak(), cap.shed()), (2, 2, 1));
        drop(first);
        let third = cap.enter().expect("a freed slot is taken again");
        drop((second, third));
        assert_eq!((cap.running(), cap.peak(), cap.shed()), (0, 2, 1));
    }

    #[test]
    fn each_buyer_has_their_own_few_slots() {
        let caps = Arc::new(InFlight::new(100, 2));
        let (alice, bob) = (
            UserId::parse("alice").unwrap(),
            UserId::parse("bob").unwrap(),
        );
        let first = caps.enter_buyer(&alice).expect("first slot");
        let second = caps.enter_buyer(&alice).expect("second slot");
        assert!(caps.enter_buyer(&alice).is_none(), "a third is refused");
        let bobs = caps
            .enter_buyer(&bob)
            .expect("another buyer is not affected");
        assert_eq!(caps.refused_per_buyer(), 1);
        drop(first);
        let again = caps
            .enter_buyer(&alice)
            .expect("a freed slot is taken again");
        drop((second, again, bobs));
        let empty = caps
            .per_buyer
            .stripes
            .iter()
            .all(|s| s.lock().unwrap().is_empty());
        assert!(empty, "a buyer with nothing running is forgotten");
    }
}
