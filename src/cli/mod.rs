//! The command line: `flashgate serve`, `flashgate token`, `flashgate reconcile`, and
//! `flashgate sale` (operator actions through a running gateway's admin API).

mod admin_client;
mod sale;

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

use crate::auth::JwtKeys;
use crate::auth::subject::buyer_id;
use crate::clock::Clock;
use crate::config::{ConfigError, Settings};
use crate::db::{DbError, OrderDb};
use crate::domain::{Operator, SaleId};
use crate::logging::{self, LogSettings};
use crate::persist::reconcile::ReconcileError;
use crate::persist::{self, Persister};
use crate::sales::SaleRegistry;
use crate::startup::{Application, StartupError, declared_sales};
use crate::stock::StockEngine;
use crate::store::embedded::EmbeddedRedis;
use crate::store::{Keys, Redis, RedisTarget};

/// flashgate: a flash-sale gateway.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway.
    Serve {
        /// TOML configuration file (environment variables FLASHGATE_<SECTION>__<KEY> override it).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Check that Redis and the database agree: for each sale, units deducted == units in
    /// order rows + units pending in streams + dead letters + units dropped by an operator,
    /// and nothing else is amiss (the `findings`, dead letters among them). Prints one JSON
    /// ledger per sale; exits non-zero on any difference or finding.
    Reconcile {
        /// Only this sale (default: every sale).
        #[arg(long)]
        sale: Option<String>,
        /// TOML configuration file.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Apply the config file's `[[sales]]` to the sales stored in Redis, as a running
    /// gateway does on SIGHUP: creates new sales, replaces those not live yet, reshards or
    /// tops up live ones; prints one JSON report per sale and exits non-zero if any change
    /// was refused.
    Apply {
        /// TOML configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Mint a buyer JWT (HS256, signed with auth.jwt_secret) for manual tests.
    Token {
        /// The token's subject (`sub`): any text up to 256 bytes, as login services name
        /// their users.
        #[arg(long)]
        user: String,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: i64,
        /// TOML configuration file.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Operate a running gateway's sales through its admin API: list, pause, resume, end,
    /// topup, reshard. The token comes from --admin-token, FLASHGATE_ADMIN_TOKEN, or the
    /// admin.token of --config.
    Sale(sale::SaleArgs),
    /// Exit 0 when the gateway answers ready (`GET /health/ready`), non-zero otherwise: the
    /// container image's HEALTHCHECK.
    Healthcheck {
        /// The gateway; default: this host, on the port of FLASHGATE_HTTP__ADDR (else 8080).
        #[arg(long)]
        gateway: Option<String>,
    },
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Startup(#[from] StartupError),
    #[error("invalid id")]
    Id(#[source] crate::domain::IdError),
    #[error("invalid subject")]
    Subject(#[source] crate::auth::subject::SubjectError),
    #[error("no auth.jwt_secret configured: this gateway takes no HS256 tokens to mint")]
    NoHs256Secret,
    #[error("no redis configured and no running embedded redis-server found in {0}")]
    NoRedis(PathBuf),
    #[error("cannot connect to redis")]
    Redis(#[source] redis::RedisError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Reconcile(#[from] ReconcileError),
    #[error("no sale {0}")]
    NoSale(SaleId),
    #[error("{0} sale(s) do not reconcile")]
    Unreconciled(usize),
    #[error("{0} sale(s) not applied in full")]
    NotApplied(usize),
    #[error("cannot apply the declared sales")]
    Apply(#[source] crate::store::StoreError),
    #[error(
        "no admin token: pass --admin-token, set FLASHGATE_ADMIN_TOKEN, or give --config a file with admin.token"
    )]
    NoAdminToken,
    #[error(transparent)]
    Admin(#[from] admin_client::AdminClientError),
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Serve { config } => {
            let settings = load(config.as_deref())?;
            Application::build(settings)
                .await?
                .reloading_from(config)
                .run_until_stopped()
                .await?;
        }
        Command::Token { user, ttl, config } => {
            let settings = load(config.as_deref())?;
            if settings.auth.jwt_secret.is_empty() {
                return Err(CliError::NoHs256Secret);
            }
            buyer_id(&user).map_err(CliError::Subject)?;
            let exp = Clock::default().now().unix_timestamp() + ttl;
            let keys = JwtKeys::new(settings.auth.jwt_secret.as_bytes());
            println!("{}", keys.mint_subject(&user, exp));
        }
        Command::Apply { config } => {
            let settings = load(Some(&config))?;
            apply(&settings).await?;
        }
        Command::Reconcile { sale, config } => {
            let settings = load(config.as_deref())?;
            let sale = sale
                .map(|s| SaleId::parse(&s))
                .transpose()
                .map_err(CliError::Id)?;
            reconcile(&settings, sale).await?;
        }
        Command::Sale(args) => {
            logging::init(&LogSettings::default());
            sale::run(args).await?
        }
        Command::Healthcheck { gateway } => {
            let gateway = gateway.unwrap_or_else(local_gateway);
            admin_client::AdminClient::new(&gateway, String::new())?
                .get("/health/ready")
                .await?;
        }
    }
    Ok(())
}

/// This host's gateway, on the port `FLASHGATE_HTTP__ADDR` names (the container sets it), or
/// the default 8080.
fn local_gateway() -> String {
    let port = std::env::var("FLASHGATE_HTTP__ADDR")
        .ok()
        .and_then(|addr| addr.parse::<std::net::SocketAddr>().ok())
        .map_or(8080, |addr| addr.port());
    format!("http://127.0.0.1:{port}")
}

/// The settings of `file` and the environment, with logging started as they say.
fn load(file: Option<&Path>) -> Result<Settings, CliError> {
    let settings = Settings::load(file)?;
    logging::init(&settings.log);
    Ok(settings)
}

/// Applies the declared sales, printing one JSON report per sale.
async fn apply(settings: &Settings) -> Result<(), CliError> {
    let redis = connect_redis(settings).await?;
    let registry = SaleRegistry::new(redis.clone(), StockEngine::new(redis));
    let declared = declared_sales(settings);
    let reports = registry
        .apply(&declared, &cli_actor(), Clock::default().now())
        .await
        .map_err(CliError::Apply)?;
    let mut refused = 0;
    for report in &reports {
        refused += usize::from(!report.refused.is_empty());
        println!(
            "{}",
            serde_json::to_string(report).expect("report serializes")
        );
    }
    if refused > 0 {
        return Err(CliError::NotApplied(refused));
    }
    Ok(())
}

/// The operator named in the audit trail for `flashgate apply`.
fn cli_actor() -> Operator {
    Operator::parse("flashgate-apply").expect("a valid operator name")
}

/// Connects to the configured Redis, or to the embedded one a gateway runs over this data
/// directory.
async fn connect_redis(settings: &Settings) -> Result<Redis, CliError> {
    let dir = &settings.redis.embedded_dir;
    let target = settings
        .redis
        .target()
        .or_else(|| EmbeddedRedis::running_url(dir).map(RedisTarget::Single))
        .ok_or_else(|| CliError::NoRedis(dir.clone()))?;
    Redis::connect(
        &target,
        settings.redis.timeouts(),
        settings.redis.bulk_pool_size,
        Keys::new(&settings.redis.key_prefix),
    )
    .await
    .map_err(CliError::Redis)
}

/// Reconciles `only` (or every sale), printing one JSON line per sale.
async fn reconcile(settings: &Settings, only: Option<SaleId>) -> Result<(), CliError> {
    let redis = connect_redis(settings).await?;
    let engine = StockEngine::new(redis.clone());
    let store = OrderDb::connect_with(&settings.database.url, settings.database.timeouts()).await?;
    let persister = Persister::new(store, redis.clone(), Clock::default());
    let registry = SaleRegistry::new(redis, engine);
    let ids = match only {
        Some(id) => vec![id],
        None => registry.ids().await.map_err(ReconcileError::from)?,
    };
    let mut unreconciled = 0;
    for id in ids {
        let rt = registry
            .get(&id)
            .await
            .map_err(ReconcileError::from)?
            .ok_or_else(|| CliError::NoSale(id.clone()))?;
        let ledger = persist::reconcile::reconcile(&persister, &rt).await?;
        unreconciled += usize::from(!ledger.is_exact());
        println!(
            "{}",
            serde_json::to_string(&ledger).expect("ledger serializes")
        );
    }
    if unreconciled > 0 {
        return Err(CliError::Unreconciled(unreconciled));
    }
    Ok(())
}
