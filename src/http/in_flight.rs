//! The global in-flight cap on the purchase path: at most `http.max_in_flight` purchase
//! handlers run at once; the excess is answered 503 `overloaded` at once, before any work.
//!
//! It is a semaphore taken by a route layer *around the handler*, so the permit is held
//! for exactly as long as the handler runs (a concurrency layer on the whole router would
//! count connections or queue requests instead of bounding handlers).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use super::error::ApiError;

/// The cap and what it has seen.
#[derive(Debug)]
pub struct InFlight {
    permits: Arc<Semaphore>,
    running: AtomicUsize,
    peak: AtomicUsize,
    shed: AtomicUsize,
}

impl InFlight {
    /// A cap of `limit` concurrent handlers (at least 1).
    pub fn new(limit: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(limit.max(1))),
            running: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            shed: AtomicUsize::new(0),
        }
    }

    /// Handlers running now.
    pub fn running(&self) -> usize {
        self.running.load(Ordering::Relaxed)
    }

    /// Requests answered 503 because the cap was reached.
    pub fn shed(&self) -> usize {
        self.shed.load(Ordering::Relaxed)
    }

    /// Most handlers that ever ran at once.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }
}

/// Counts a running handler while alive.
struct Running<'a>(&'a InFlight);

impl<'a> Running<'a> {
    fn enter(cap: &'a InFlight) -> Self {
        let now = cap.running.fetch_add(1, Ordering::Relaxed) + 1;
        cap.peak.fetch_max(now, Ordering::Relaxed);
        Self(cap)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Runs the handler if a permit is free, else answers 503 at once.
pub async fn limit(State(cap): State<Arc<InFlight>>, req: Request, next: Next) -> Response {
    let Ok(_permit) = cap.permits.clone().try_acquire_owned() else {
        cap.shed.fetch_add(1, Ordering::Relaxed);
        return ApiError::Overloaded("too many purchases in flight").into_response();
    };
    let _running = Running::enter(&cap);
    next.run(req).await
}
