//! HTTP answers counted by route template and status, published as
//! `flashgate_http_requests_total{route,status}` at scrape time.
//!
//! The label is the route's template (`/api/v1/sales/{sale_id}/purchase`), never the raw
//! path, so the number of series is bounded by the routes the gateway serves; requests that
//! match no route share the label `unmatched`. Each route has one array of atomic counts,
//! indexed by status: counting an answer is one relaxed atomic add, with no lock and no
//! allocation, once the route's tally is found (the HTTP layer keeps it at hand).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

/// The route label of requests that matched no route.
pub const UNMATCHED: &str = "unmatched";

/// Statuses run from 100 to 999.
const FIRST_STATUS: u16 = 100;
const STATUSES: usize = 900;

/// Answers of one route, by status.
#[derive(Debug)]
pub struct RouteTally {
    route: Box<str>,
    counts: Box<[AtomicU64]>,
}

impl RouteTally {
    fn new(route: &str) -> Self {
        Self {
            route: route.into(),
            counts: (0..STATUSES).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// The route's template.
    pub fn route(&self) -> &str {
        &self.route
    }

    /// Counts one answer with `status`.
    pub fn count(&self, status: u16) {
        if let Some(slot) = status
            .checked_sub(FIRST_STATUS)
            .and_then(|i| self.counts.get(usize::from(i)))
        {
            slot.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// `(status, count)` for every status answered at least once.
    pub fn snapshot(&self) -> impl Iterator<Item = (u16, u64)> + '_ {
        (FIRST_STATUS..)
            .zip(self.counts.iter())
            .map(|(status, n)| (status, n.load(Ordering::Relaxed)))
            .filter(|&(_, n)| n > 0)
    }
}

/// Every route's tally, created on a route's first answer.
#[derive(Debug, Default)]
pub struct RouteTallies {
    routes: RwLock<HashMap<Box<str>, Arc<RouteTally>>>,
}

impl RouteTallies {
    /// The tally of `route` (a template, or [`UNMATCHED`]), created if new. Takes a lock:
    /// callers keep the tally rather than asking per request.
    pub fn tally(&self, route: &str) -> Arc<RouteTally> {
        if let Some(tally) = self
            .routes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(route)
        {
            return tally.clone();
        }
        let mut routes = self.routes.write().unwrap_or_else(PoisonError::into_inner);
        routes
            .entry(route.into())
            .or_insert_with(|| Arc::new(RouteTally::new(route)))
            .clone()
    }

    /// Every tally so far.
    pub fn all(&self) -> Vec<Arc<RouteTally>> {
        let routes = self.routes.read().unwrap_or_else(PoisonError::into_inner);
        routes.values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_route_counts_each_status_apart() {
        let tallies = RouteTallies::default();
        let purchase = tallies.tally("/api/v1/sales/{sale_id}/purchase");
        purchase.count(202);
        purchase.count(202);
        purchase.count(409);
        tallies.tally("/api/v1/sales/{sale_id}/purchase").count(409);
        let seen: Vec<_> = purchase.snapshot().collect();
        assert_eq!(seen, [(202, 2), (409, 2)]);
        assert_eq!(tallies.all().len(), 1);
    }

    #[test]
    fn every_valid_status_has_a_slot_and_nothing_else_counts() {
        let tally = RouteTally::new(UNMATCHED);
        for status in [100, 599, 999, 99, 1000, 0] {
            tally.count(status);
        }
        let seen: Vec<_> = tally.snapshot().map(|(s, _)| s).collect();
        assert_eq!(seen, [100, 599, 999]);
    }
}
