//! The login service's public keys (a JWKS), cached in memory and refreshed: on a schedule
//! (`auth.jwks_refresh_s`), and early when a token names a `kid` the cache lacks (the
//! service has just rotated its keys), at most once per `auth.jwks_min_refresh_s` however
//! many such tokens arrive, so a flood of made-up `kid`s costs the JWKS endpoint one fetch
//! per interval.
//!
//! Requests read the current keys through one `Arc` behind a read lock, held for a pointer
//! copy; refreshes are serialised by an async mutex that requests only take for an unknown
//! `kid`. A source that fails to load keeps its last good keys (the failure is logged).

mod keys;
mod source;

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

pub use keys::{KeySet, PublicKey, SigningAlg};
pub use source::{JwksError, JwksSource};

/// A cached, refreshed JWKS from one or more sources.
#[derive(Debug)]
pub struct Jwks {
    current: RwLock<Arc<KeySet>>,
    refresher: tokio::sync::Mutex<Refresher>,
    /// Bumped by every completed refresh: a request that waited for the mutex sees whether
    /// a refresh happened meanwhile.
    generation: AtomicU64,
    /// Unix seconds of the last completed refresh, whatever triggered it.
    refreshed_at: AtomicI64,
}

/// The sources, each one's last good keys, and the budget of early refreshes.
#[derive(Debug)]
struct Refresher {
    sources: Vec<(JwksSource, KeySet)>,
    early: EarlyRefreshes,
}

impl Jwks {
    /// Loads every source once (each must load: a misconfigured source stops the start).
    pub async fn load(
        sources: Vec<JwksSource>,
        min_early_refresh_s: i64,
        now_unix: i64,
    ) -> Result<Self, JwksError> {
        let mut loaded = Vec::with_capacity(sources.len());
        for source in sources {
            let keys = source.load().await?;
            loaded.push((source, keys));
        }
        let current = KeySet::union(loaded.iter().map(|(_, keys)| keys));
        Ok(Self {
            current: RwLock::new(Arc::new(current)),
            refresher: tokio::sync::Mutex::new(Refresher {
                sources: loaded,
                early: EarlyRefreshes::new(min_early_refresh_s),
            }),
            generation: AtomicU64::new(0),
            refreshed_at: AtomicI64::new(now_unix),
        })
    }

    /// A JWKS of `keys` that never changes (keys known when the gateway is built, tests,
    /// benchmarks): refreshing it keeps them.
    pub fn fixed(keys: KeySet) -> Self {
        Self {
            current: RwLock::new(Arc::new(keys)),
            refresher: tokio::sync::Mutex::new(Refresher {
                sources: Vec::new(),
                early: EarlyRefreshes::new(i64::MAX),
            }),
            generation: AtomicU64::new(0),
            refreshed_at: AtomicI64::new(0),
        }
    }

    /// The key named `kid`, in the keys at hand.
    pub fn key(&self, kid: &str) -> Option<Arc<PublicKey>> {
        self.keys().get(kid).cloned()
    }

    /// The keys at hand.
    pub fn keys(&self) -> Arc<KeySet> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Re-reads every source now.
    pub async fn refresh(&self, now_unix: i64) {
        let mut refresher = self.refresher.lock().await;
        self.refresh_locked(&mut refresher, now_unix).await;
    }

    /// Re-reads every source if the last refresh is `interval_s` old or older (the
    /// scheduled refresh: an early refresh postpones it).
    pub async fn refresh_if_older_than(&self, interval_s: i64, now_unix: i64) {
        if now_unix - self.refreshed_at.load(Ordering::Relaxed) >= interval_s {
            self.refresh(now_unix).await;
        }
    }

    /// For a token naming an unknown `kid`: refreshes now if the early-refresh budget
    /// allows, or waits for a refresh already under way (then the caller looks again).
    pub async fn refresh_early(&self, now_unix: i64) {
        let seen = self.generation.load(Ordering::Acquire);
        let mut refresher = self.refresher.lock().await;
        if self.generation.load(Ordering::Acquire) == seen && refresher.early.take(now_unix) {
            self.refresh_locked(&mut refresher, now_unix).await;
        }
    }

    async fn refresh_locked(&self, refresher: &mut Refresher, now_unix: i64) {
        if refresher.sources.is_empty() {
            return;
        }
        for (source, last_good) in &mut refresher.sources {
            match source.load().await {
                Ok(keys) => *last_good = keys,
                Err(error) => tracing::warn!(
                    error = %error,
                    cause = ?std::error::Error::source(&error).map(ToString::to_string),
                    "JWKS refresh failed; its last good keys stay in use"
                ),
            }
        }
        let keys = KeySet::union(refresher.sources.iter().map(|(_, keys)| keys));
        tracing::debug!(keys = keys.len(), "JWKS refreshed");
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(keys);
        self.refreshed_at.store(now_unix, Ordering::Relaxed);
        self.generation.fetch_add(1, Ordering::Release);
    }
}

/// The bound on refreshes triggered by unknown `kid`s: one per `min_interval_s`.
#[derive(Debug)]
struct EarlyRefreshes {
    min_interval_s: i64,
    last: Option<i64>,
}

impl EarlyRefreshes {
    fn new(min_interval_s: i64) -> Self {
        Self {
            min_interval_s,
            last: None,
        }
    }

    /// Whether an early refresh may run at `now` (and if so, counts it).
    fn take(&mut self, now_unix: i64) -> bool {
        if self
            .last
            .is_some_and(|last| now_unix < last.saturating_add(self.min_interval_s))
        {
            return false;
        }
        self.last = Some(now_unix);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::test_keys::{SigningKey, jwks_json};

    #[tokio::test]
    async fn a_refresh_picks_up_rotated_keys_and_keeps_the_last_good_ones_on_failure() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("jwks.json");
        let (old, new) = (
            SigningKey::rsa("old", "rsa-a.pem"),
            SigningKey::ec("new", "ec-a.pem"),
        );
        std::fs::write(&file, jwks_json(&[&old])).unwrap();
        let jwks = Jwks::load(vec![JwksSource::file(&file)], 30, 1000)
            .await
            .unwrap();
        assert!(jwks.key("old").is_some());

        std::fs::write(&file, "<html>maintenance</html>").unwrap();
        jwks.refresh(1010).await;
        assert!(jwks.key("old").is_some(), "a failed read keeps the keys");

        std::fs::write(&file, jwks_json(&[&new])).unwrap();
        jwks.refresh_if_older_than(300, 1100).await;
        assert!(jwks.key("new").is_none(), "not due yet");
        jwks.refresh_early(1100).await;
        assert!(jwks.key("new").is_some() && jwks.key("old").is_none());
    }

    #[tokio::test]
    async fn a_source_that_does_not_load_at_start_is_an_error() {
        let missing = JwksSource::file("/nonexistent/jwks.json");
        assert!(matches!(
            Jwks::load(vec![missing], 30, 0).await,
            Err(JwksError::Read { .. })
        ));
    }

    #[test]
    fn early_refreshes_are_at_most_one_per_interval() {
        let mut early = EarlyRefreshes::new(30);
        assert!(early.take(1000));
        assert!((0..1000).all(|_| !early.take(1000)));
        assert!(!early.take(1029));
        assert!(early.take(1030));
        assert!(!early.take(1031));
    }
}
