//! Background work every gateway instance runs: refreshing the sale cache from Redis,
//! finishing stock loans abandoned by a crashed instance, persisting orders whose
//! stream entries were left unacknowledged, and (on a cluster) keeping each sale's shards
//! evenly spread over the masters. [`Recovery::run_once`] runs one pass of both
//! recovery jobs on demand, so tests and tools await recovery instead of polling for it.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::config::{QueueSettings, StockSettings};
use crate::persist::recovery::RecoverySettings;
use crate::persist::{Persister, recovery};
use crate::sales::rebalance::Rebalanced;
use crate::sales::{SaleRegistry, SkippedSale, report};

/// The running background tasks; stopped together.
pub struct Workers {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// The two recovery jobs (abandoned stock loans, orders left pending in their streams),
/// as the workers run them on their timers. Cheap to clone.
#[derive(Clone)]
pub struct Recovery {
    registry: SaleRegistry,
    persister: Persister,
    clock: Clock,
    orders: RecoverySettings,
    loan_grace_ms: i64,
}

impl Recovery {
    /// Recovery over the sales of `registry`, with the configured ages and batch sizes.
    pub fn new(
        registry: SaleRegistry,
        persister: Persister,
        clock: Clock,
        settings: &StockSettings,
        queue: &QueueSettings,
    ) -> Self {
        Self {
            registry,
            persister,
            clock,
            orders: RecoverySettings {
                claim_idle: Duration::from_millis(queue.claim_idle_ms),
                batch: queue.batch_size,
                poison_attempts: queue.poison_attempts,
            },
            loan_grace_ms: settings.loan_grace_ms as i64,
        }
    }

    /// One pass of each job over every cached sale: loans older than the grace are
    /// finished, and stream entries older than `queue.claim_idle_ms` are persisted (a shard
    /// another pass holds the lock of is skipped). Failures are logged, as on the timers.
    pub async fn run_once(&self) {
        self.loans_once().await;
        self.orders_once().await;
    }

    /// One pass of loan recovery.
    pub async fn loans_once(&self) {
        recover_all_loans(&self.registry, &self.clock, self.loan_grace_ms).await;
    }

    /// One pass of order recovery.
    pub async fn orders_once(&self) {
        recover_all_orders(&self.registry, &self.persister, self.orders).await;
    }
}

impl Workers {
    /// Starts the sale refresher, the loan recovery worker and the order recovery worker.
    pub fn start(
        registry: SaleRegistry,
        recovery: Recovery,
        settings: &StockSettings,
        queue: &QueueSettings,
    ) -> Self {
        let (stop, stopped) = watch::channel(false);
        let orders = {
            let recovery = recovery.clone();
            every(queue.recovery_interval_ms, stopped.clone(), move || {
                let recovery = recovery.clone();
                async move { recovery.orders_once().await }
            })
        };
        let changes = {
            let registry = registry.clone();
            every(settings.recovery_interval_ms, stopped.clone(), move || {
                let registry = registry.clone();
                async move { resume_changes(&registry).await }
            })
        };
        let mut tasks = Vec::new();
        if settings.rebalance && registry.is_cluster() {
            let registry = registry.clone();
            tasks.push(tokio::spawn(every(
                settings.rebalance_interval_ms,
                stopped.clone(),
                move || {
                    let registry = registry.clone();
                    async move { rebalance_all_sales(&registry).await }
                },
            )));
        }
        let refresh = every(settings.refresh_interval_ms, stopped.clone(), move || {
            let registry = registry.clone();
            async move { refresh_all_sales(&registry).await }
        });
        let recover = every(settings.recovery_interval_ms, stopped, move || {
            let recovery = recovery.clone();
            async move { recovery.loans_once().await }
        });
        tasks.extend([
            tokio::spawn(refresh),
            tokio::spawn(recover),
            tokio::spawn(orders),
            tokio::spawn(changes),
        ]);
        Self { stop, tasks }
    }

    /// Runs `job` every `interval_ms` too, until the workers stop.
    pub fn spawn_every<F, Fut>(&mut self, interval_ms: u64, job: F)
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let stopped = self.stop.subscribe();
        self.tasks
            .push(tokio::spawn(every(interval_ms, stopped, job)));
    }

    /// Stops every task and waits for it.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Finishes the operators' changes whose driver died (a reshard or a change of stock
/// recorded in a sale's record with nobody holding its lock).
async fn resume_changes(registry: &SaleRegistry) {
    let now_ms = crate::clock::unix_ms(time::OffsetDateTime::now_utc());
    match registry.resume_changes(now_ms).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            changes = n,
            "finished changes left unfinished by a stopped instance"
        ),
        Err(error) => tracing::warn!(%error, "resuming unfinished sale changes failed; retrying"),
    }
}

/// One rebalancing pass: a sale whose shards no longer split evenly over the cluster's
/// masters gets a live reshard (`sales::rebalance`).
async fn rebalance_all_sales(registry: &SaleRegistry) {
    match registry
        .rebalance_all(time::OffsetDateTime::now_utc())
        .await
    {
        Ok(done) => {
            for Rebalanced { sale, outcome } in done {
                match outcome {
                    Ok(report) => {
                        tracing::info!(%sale, state = report.state, "resharded to spread the sale's shards evenly over the masters")
                    }
                    Err(error) => {
                        tracing::warn!(%sale, %error, "rebalancing the sale's shards failed; retrying on the next pass")
                    }
                }
            }
        }
        Err(error) => {
            tracing::warn!(%error, "reading the cluster's slot map to rebalance shards failed")
        }
    }
}

/// One refresh pass; a sale that cannot be read is logged and skipped, the others go on
/// (`GET /admin/v1/sales/{id}` reports it as `unreadable`).
async fn refresh_all_sales(registry: &SaleRegistry) {
    match registry.refresh().await {
        Ok(skipped) => {
            for SkippedSale { sale, error } in skipped {
                tracing::warn!(%sale, error = %report::error_chain(&error), "sale skipped by refresh");
            }
        }
        Err(error) => tracing::warn!(%error, "sale refresh failed: the sale list is unreadable"),
    }
}

async fn recover_all_loans(registry: &SaleRegistry, clock: &Clock, grace_ms: i64) {
    for rt in registry.all_cached() {
        match registry
            .engine()
            .recover_loans(&rt, clock.now_ms(), grace_ms)
            .await
        {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(sale = %rt.sale.id, loans = n, "finished abandoned stock loans")
            }
            Err(error) => tracing::warn!(sale = %rt.sale.id, %error, "loan recovery failed"),
        }
    }
}

async fn recover_all_orders(
    registry: &SaleRegistry,
    persister: &Persister,
    settings: RecoverySettings,
) {
    for rt in registry.all_cached() {
        match recovery::recover_sale(persister, &rt, settings).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(sale = %rt.sale.id, orders = n, "persisted orders left pending in streams")
            }
            Err(error) => tracing::warn!(sale = %rt.sale.id, %error, "order recovery failed"),
        }
    }
}

/// Runs `job` every `interval_ms` until `stopped` turns true.
async fn every<F, Fut>(interval_ms: u64, mut stopped: watch::Receiver<bool>, job: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut ticker = tokio::time::interval(Duration::from_millis(interval_ms.max(10)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => job().await,
            _ = stopped.changed() => return,
        }
    }
}
