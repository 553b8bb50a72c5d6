//! Building and running the gateway: bind first (so tests can use port 0), connect to
//! Redis (starting the embedded one if none is configured), apply configured sales, start
//! background workers, then serve until a shutdown signal.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::extract::ConnectInfo;
use tokio::net::TcpListener;
use tokio::sync::mpsc::Receiver;
use tower::Layer;

use crate::auth::{JwksError, buyer_auth};
use crate::clock::Clock;
use crate::config::Settings;
use crate::db::{DbError, OrderDb};
use crate::domain::NewOrder;
use crate::domain::{Operator, SaleId, SaleSpec};
use crate::http::gate::IpLimit;
use crate::http::in_flight::InFlight;
use crate::http::server::{self, Connections};
use crate::http::state::Shared;
use crate::http::{self, AppState};
use crate::lifecycle::Lifecycle;
use crate::limits::RateLimits;
use crate::limits::SharedSaleLimit;
use crate::metrics::{CallTimer, Metrics, PersistMetrics, ReturnMetrics};
use crate::persist::Persister;
use crate::persist::queue::OrderQueue;
use crate::persist::writer::{FlushRequests, Flusher, Writer};
use crate::purchase::Purchases;
use crate::sales::SaleRegistry;
use crate::stock::StockEngine;
use crate::store::embedded::{EmbeddedRedis, EmbeddedRedisError};
use crate::store::{Keys, Redis, RedisTarget, StoreError};
use crate::tokens::TokenSigner;
use crate::workers::{Recovery, Workers};

/// Why the gateway could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot listen on {addr}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the embedded redis-server")]
    EmbeddedRedis(#[from] EmbeddedRedisError),
    #[error("cannot connect to redis")]
    Redis(#[source] redis::RedisError),
    #[error("cannot load the buyer tokens' JWKS")]
    Jwks(#[from] JwksError),
    #[error("cannot open the order database")]
    Database(#[from] DbError),
    #[error("cannot apply the configured sales")]
    ConfiguredSale {
        #[source]
        source: StoreError,
    },
    #[error("server failed")]
    Serve(#[source] std::io::Error),
}

/// How often the histograms' recent samples are folded into their buckets, keeping their
/// memory bounded between scrapes.
const METRICS_UPKEEP_MS: u64 = 5000;

/// A bound, ready-to-run gateway.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    orders: Receiver<NewOrder>,
    flushes: FlushRequests,
    embedded: Option<EmbeddedRedis>,
    /// The config file SIGHUP re-reads (`None`: SIGHUP re-reads the environment only).
    config_file: Option<PathBuf>,
}

impl Application {
    /// Binds the listener, connects to Redis and applies the configured sales.
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        let addr = settings.http.addr;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartupError::Bind { addr, source })?;
        let (target, embedded) = match settings.redis.target() {
            Some(target) => (target, None),
            None => {
                let server = EmbeddedRedis::start(
                    &settings.redis.embedded_binary,
                    &settings.redis.embedded_dir,
                )
                .await?;
                (RedisTarget::Single(server.url()), Some(server))
            }
        };
        let redis = Redis::connect(
            &target,
            settings.redis.timeouts(),
            settings.redis.bulk_pool_size,
            Keys::new(&settings.redis.key_prefix),
        )
        .await
        .map_err(StartupError::Redis)?;
        let metrics = Arc::new(Metrics::new(&settings.metrics));
        let stock = StockEngine::new(redis.clone())
            .with_call_timer(CallTimer::new(&metrics, "purchase"))
            .with_purchase_batches(settings.stock.purchase_batch_max);
        let store =
            OrderDb::connect_with(&settings.database.url, settings.database.timeouts()).await?;
        let clock = Clock::default();
        let jwt = buyer_auth(&settings.auth, clock.now().unix_timestamp()).await?;
        let (queue, orders) = OrderQueue::new(settings.queue.capacity, settings.queue.policy);
        let rate_limits = Arc::new(RateLimits::new(&settings.limits));
        let tokens = if settings.tokens.secret.is_empty() {
            TokenSigner::derived_from(settings.auth.jwt_secret.as_bytes())
        } else {
            TokenSigner::new(settings.tokens.secret.as_bytes())
        };
        let shared_sale_limit = SharedSaleLimit::new(settings.limits.sale_shared, redis.clone());
        // An operator's change answers well within the request timeout (it goes on in the
        // background after that).
        let answer_within = Duration::from_millis(settings.http.request_timeout_ms * 3 / 4);
        let sales =
            SaleRegistry::new(redis.clone(), stock.clone()).answer_changes_within(answer_within);
        let persister = Persister::new(store, redis.clone(), clock.clone())
            .with_metrics(PersistMetrics::new(&metrics));
        let lifecycle = Lifecycle::new(
            persister.clone(),
            sales.clone(),
            clock.clone(),
            settings.lifecycle.clone(),
        )
        .with_metrics(ReturnMetrics::new(metrics.clone()));
        let purchases = Purchases {
            sales: sales.clone(),
            stock: stock.clone(),
            queue,
            persister: persister.clone(),
            clock: clock.clone(),
            rate_limits: rate_limits.clone(),
            shared_sale_limit,
            tokens: tokens.clone(),
            require_token: settings.tokens.require_purchase_token,
        };
        let state = AppState::new(Shared {
            sales,
            lifecycle,
            tokens,
            persister,
            stock,
            redis,
            purchases,
            jwt,
            clock,
            in_flight: Arc::new(InFlight::new(
                settings.http.max_in_flight,
                settings.http.max_in_flight_per_buyer,
            )),
            connections: Arc::new(Connections::new(settings.http.max_connections)),
            ip_limit: Arc::new(IpLimit {
                limits: rate_limits.clone(),
                trusted_proxies: settings.http.trusted_proxies.clone(),
            }),
            rate_limits,
            metrics,
            settings: Arc::new(settings),
        });
        apply_configured_sales(&state).await?;
        Ok(Self {
            listener,
            state,
            orders,
            flushes: FlushRequests::new(),
            embedded,
            config_file: None,
        })
    }

    /// The port actually bound (useful with port 0).
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// The shared state (for tests and tools).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// A handle that waits until the running gateway's writer has written every order
    /// queued so far (for tests and tools; usable before [`Self::run_until`] starts it).
    pub fn writer_flusher(&self) -> Flusher {
        self.flushes.flusher()
    }

    /// The gateway's recovery jobs, to run a pass on demand (for tests and tools).
    pub fn recovery(&self) -> Recovery {
        Recovery::new(
            self.state.sales.clone(),
            self.state.persister.clone(),
            self.state.clock.clone(),
            &self.state.settings.stock,
            &self.state.settings.queue,
        )
    }

    /// On SIGHUP, re-reads `file` (and the environment) and applies its `[[sales]]` to the
    /// stored sales, as `flashgate apply` does.
    pub fn reloading_from(mut self, file: Option<PathBuf>) -> Self {
        self.config_file = file;
        self
    }

    /// Serves until SIGINT or SIGTERM.
    pub async fn run_until_stopped(self) -> Result<(), StartupError> {
        self.run_until(shutdown_signal()).await
    }

    /// Serves until `shutdown` completes; then finishes in-flight requests, drains the order
    /// queue (within `queue.drain_timeout_ms`) and stops the workers.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartupError> {
        let settings = &self.state.settings;
        let recovery = self.recovery();
        let writer = Writer::start_with(
            self.state.persister.clone(),
            self.orders,
            self.flushes,
            settings.queue.writer(),
        );
        let mut workers = Workers::start(
            self.state.sales.clone(),
            recovery,
            &settings.stock,
            &settings.queue,
        );
        let lifecycle = self.state.lifecycle.clone();
        workers.spawn_every(lifecycle.sweep_interval_ms(), move || {
            let lifecycle = lifecycle.clone();
            async move {
                lifecycle.run_once().await;
            }
        });
        let limits = self.state.rate_limits.clone();
        workers.spawn_every(settings.limits.cleanup_interval_ms, move || {
            let limits = limits.clone();
            async move {
                let keys = limits.cleanup();
                tracing::debug!(keys, "rate limiter keys after cleanup");
            }
        });
        if let Some(jwks) = self.state.jwt.jwks().cloned() {
            let (clock, every_s) = (self.state.clock.clone(), settings.auth.jwks_refresh_s);
            let interval_s = i64::try_from(every_s).unwrap_or(i64::MAX);
            workers.spawn_every(every_s.saturating_mul(1000), move || {
                let (jwks, now) = (jwks.clone(), clock.now().unix_timestamp());
                async move { jwks.refresh_if_older_than(interval_s, now).await }
            });
        }
        if self.state.metrics.is_enabled() {
            let metrics = self.state.metrics.clone();
            workers.spawn_every(METRICS_UPKEEP_MS, move || {
                let metrics = metrics.clone();
                async move { metrics.run_upkeep() }
            });
        }
        let hangups = tokio::spawn(apply_on_hangup(
            self.state.clone(),
            self.config_file.clone(),
        ));
        let addr = self.listener.local_addr().map_err(StartupError::Serve)?;
        tracing::info!(%addr, "flashgate ready, listening on http://{addr}");
        let app = http::service(self.state.clone());
        let (http, connections) = (&settings.http, self.state.connections.clone());
        // The peer address is only read by the per-IP limit; without it, no request pays
        // for recording it.
        if self.state.ip_limit.limits.limits_ip() {
            let with_peer = |peer: SocketAddr| Extension(ConnectInfo(peer)).layer(app.clone());
            server::serve(self.listener, with_peer, http, connections, shutdown).await;
        } else {
            server::serve(self.listener, |_| app.clone(), http, connections, shutdown).await;
        }
        hangups.abort();
        writer.shutdown().await;
        workers.stop().await;
        if let Some(redis) = self.embedded {
            redis.stop().await;
        }
        tracing::info!("flashgate stopped");
        Ok(())
    }
}

async fn apply_configured_sales(state: &AppState) -> Result<(), StartupError> {
    let declared = declared_sales(&state.settings);
    state
        .sales
        .apply(&declared, &config_actor(), state.clock.now())
        .await
        .map_err(|source| StartupError::ConfiguredSale { source })?;
    Ok(())
}

/// The operator named in the audit trail for changes made from the config file (at start-up
/// and on SIGHUP).
pub fn config_actor() -> Operator {
    Operator::parse("config").expect("a valid operator name")
}

/// The `[[sales]]` of `settings`, validated.
pub fn declared_sales(settings: &Settings) -> Vec<(SaleId, SaleSpec)> {
    settings
        .sales
        .iter()
        .map(|sale| {
            let spec =
                SaleSpec::try_from(sale.definition.clone()).expect("validated with the settings");
            (sale.id.clone(), spec)
        })
        .collect()
}

/// Applies the config file's `[[sales]]` on every SIGHUP. A file that does not load is
/// logged and changes nothing.
async fn apply_on_hangup(state: AppState, file: Option<PathBuf>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; apply config changes with `flashgate apply`");
        return;
    };
    while hangups.recv().await.is_some() {
        let settings = match Settings::load(file.as_deref()) {
            Ok(settings) => settings,
            Err(error) => {
                tracing::error!(%error, "SIGHUP: the config does not load; nothing applied");
                continue;
            }
        };
        let declared = declared_sales(&settings);
        match state
            .sales
            .apply(&declared, &config_actor(), state.clock.now())
            .await
        {
            Ok(reports) => tracing::info!(sales = reports.len(), "SIGHUP: declared sales applied"),
            Err(error) => tracing::error!(%error, "SIGHUP: applying the declared sales failed"),
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown signal received");
}
