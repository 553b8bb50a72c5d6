//! Configuration: typed settings from defaults, an optional TOML file and
//! `FLASHGATE_<SECTION>__<KEY>` environment variables (in that order of precedence),
//! validated once at start-up with every problem reported together.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::{Deserialize, Deserializer};

use crate::db::DbTimeouts;
use crate::domain::{Operator, Origin, SaleDefinition, SaleId, SaleSpec};
use crate::logging::LogSettings;
use crate::metrics::MetricsSettings;
use crate::persist::queue::QueuePolicy;
use crate::persist::writer::WriterSettings;
use crate::stock::batch::MAX_BATCH;
use crate::store::{RedisTarget, RedisTimeouts};

/// Everything the gateway can be told.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub http: HttpSettings,
    pub redis: RedisSettings,
    pub auth: AuthSettings,
    pub admin: AdminSettings,
    pub database: DatabaseSettings,
    pub stock: StockSettings,
    pub queue: QueueSettings,
    pub limits: LimitsSettings,
    pub tokens: TokenSettings,
    pub metrics: MetricsSettings,
    pub log: LogSettings,
    pub lifecycle: LifecycleSettings,
    /// Sales created (or updated, when not live) at start.
    pub sales: Vec<SaleConfig>,
    /// This is a demo: the demo secrets shipped in `config/flashgate.toml` may be used
    /// (`FLASHGATE_DEMO=true`). Without it the gateway refuses to start with them, so that a
    /// deployment never runs with secrets anyone can read in the repository.
    pub demo: bool,
}

/// The prefix of every secret in the shipped `config/flashgate.toml`.
const DEMO_SECRET: &str = "demo-only-";

/// The HTTP listener and request limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    pub addr: SocketAddr,
    pub body_limit_bytes: usize,
    pub request_timeout_ms: u64,
    /// Open a tracing span per request (logged at DEBUG by `tower_http`).
    pub trace_requests: bool,
    /// Most purchase handlers running at once; the excess is answered 503 at once.
    pub max_in_flight: usize,
    /// Most purchase handlers one buyer may have running at once; the excess is answered
    /// 429 before its body is read.
    pub max_in_flight_per_buyer: usize,
    /// Most connections open at once; further ones wait in the listen backlog, unaccepted.
    pub max_connections: usize,
    /// Longest a connection may take to send a request's headers, and longest it may sit
    /// idle between requests, in milliseconds.
    pub header_read_timeout_ms: u64,
    /// Largest request line plus headers, in bytes; a bigger head is answered 431.
    pub max_header_bytes: usize,
    /// Longest a JSON request body may take to arrive once its headers have, in
    /// milliseconds; a slower one is answered 408.
    pub body_read_timeout_ms: u64,
    /// Peers whose `X-Forwarded-For` names the client (load balancers, reverse proxies).
    #[serde(deserialize_with = "ips_list_or_csv")]
    pub trusted_proxies: Vec<IpAddr>,
    /// Origins of browser frontends allowed to call the API cross-origin (CORS); empty: none.
    #[serde(deserialize_with = "origins_list_or_csv")]
    pub cors_origins: Vec<Origin>,
}

/// Most connections `http.max_connections` may allow (the cap counts them in a `u32`).
pub const MAX_CONNECTIONS: usize = 1_000_000;

/// The largest `http.body_limit_bytes`: 1 MiB.
pub const MAX_BODY_LIMIT: usize = 1 << 20;

impl HttpSettings {
    /// What is wrong with the edge's bounds on hostile clients, if anything.
    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.max_in_flight_per_buyer == 0 {
            problems.push("http.max_in_flight_per_buyer must be positive".to_owned());
        }
        if !(1..=MAX_CONNECTIONS).contains(&self.max_connections) {
            problems.push(format!(
                "http.max_connections must be between 1 and {MAX_CONNECTIONS}"
            ));
        }
        if self.header_read_timeout_ms == 0 {
            problems.push("http.header_read_timeout_ms must be positive".to_owned());
        }
        if !(1024..=256 * 1024).contains(&self.max_header_bytes) {
            problems.push("http.max_header_bytes must be between 1024 and 262144".to_owned());
        }
        if self.body_read_timeout_ms == 0 || self.body_read_timeout_ms > self.request_timeout_ms {
            problems.push(
                "http.body_read_timeout_ms must be positive and at most http.request_timeout_ms"
                    .to_owned(),
            );
        }
        problems
    }
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            body_limit_bytes: 4096,
            request_timeout_ms: 2000,
            trace_requests: false,
            max_in_flight: 1024,
            max_in_flight_per_buyer: 2,
            max_connections: 10_000,
            header_read_timeout_ms: 10_000,
            max_header_bytes: 16 * 1024,
            body_read_timeout_ms: 1000,
            trusted_proxies: Vec::new(),
            cors_origins: Vec::new(),
        }
    }
}

/// Where Redis is. With neither `url` nor `cluster_urls`, the gateway starts its own
/// redis-server (`embedded_binary`) with data in `embedded_dir`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisSettings {
    pub url: Option<String>,
    #[serde(deserialize_with = "list_or_csv")]
    pub cluster_urls: Vec<String>,
    pub key_prefix: String,
    pub response_timeout_ms: u64,
    pub connect_timeout_ms: u64,
    /// Most connections of the pool for bulk and background work (scans, stream pages,
    /// operators' changes), beside the purchase path's multiplexed connection.
    pub bulk_pool_size: usize,
    pub embedded_binary: String,
    pub embedded_dir: PathBuf,
    /// When an accepted purchase is answered: on the master only, or also on a replica.
    pub durability: DurabilityMode,
    /// Most milliseconds a purchase waits for a replica under `durability = "replica"`.
    pub replica_wait_timeout_ms: u64,
}

/// When the gateway answers an accepted purchase (docs/DESIGN.md, "Durability of an accepted
/// purchase").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DurabilityMode {
    /// Once the master ran the purchase: a master crash may lose the last acknowledged
    /// records (asynchronous replication, fsync every second).
    #[default]
    Async,
    /// Once one replica acknowledged it too (`WAIT 1 replica_wait_timeout_ms`), or the wait
    /// timed out (counted in `flashgate_replica_wait_timeouts_total`).
    Replica,
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            url: None,
            cluster_urls: Vec::new(),
            key_prefix: "fg".into(),
            response_timeout_ms: 500,
            connect_timeout_ms: 500,
            bulk_pool_size: 4,
            embedded_binary: "redis-server".into(),
            embedded_dir: PathBuf::from("data/redis"),
            durability: DurabilityMode::Async,
            replica_wait_timeout_ms: 100,
        }
    }
}

impl RedisSettings {
    /// The configured Redis, or `None` for the embedded default.
    pub fn target(&self) -> Option<RedisTarget> {
        if !self.cluster_urls.is_empty() {
            return Some(RedisTarget::Cluster(self.cluster_urls.clone()));
        }
        self.url
            .as_ref()
            .filter(|u| !u.is_empty())
            .map(|u| RedisTarget::Single(u.clone()))
    }

    /// Call and connection time limits.
    pub fn timeouts(&self) -> RedisTimeouts {
        RedisTimeouts {
            response: Duration::from_millis(self.response_timeout_ms),
            connect: Duration::from_millis(self.connect_timeout_ms),
        }
    }
}

/// Buyer authentication: HS256 with a shared secret and/or RS256/ES256 with a JWKS.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// HS256 secret shared with the site's login service (empty: HS256 tokens refused).
    pub jwt_secret: String,
    /// A JWKS file with the login service's public keys (empty: none).
    pub jwks_file: String,
    /// An `http://` URL serving the login service's JWKS (empty: none).
    pub jwks_url: String,
    /// Seconds between two scheduled re-reads of the JWKS.
    pub jwks_refresh_s: u64,
    /// Least seconds between two re-reads triggered by tokens naming an unknown `kid`.
    pub jwks_min_refresh_s: u64,
    /// The `iss` every buyer token must carry (empty: not checked).
    pub issuer: String,
    /// A value every buyer token's `aud` must be or contain (empty: not checked).
    pub audience: String,
    /// Seconds a token is still accepted after its `exp` and before its `nbf`.
    pub leeway_s: u64,
}

/// Most seconds `auth.leeway_s` may allow.
pub const MAX_LEEWAY_S: u64 = 600;

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            jwt_secret: String::new(),
            jwks_file: String::new(),
            jwks_url: String::new(),
            jwks_refresh_s: 300,
            jwks_min_refresh_s: 30,
            issuer: String::new(),
            audience: String::new(),
            leeway_s: 30,
        }
    }
}

impl AuthSettings {
    /// Whether a JWKS (file or URL) is configured.
    pub fn has_jwks(&self) -> bool {
        !self.jwks_file.is_empty() || !self.jwks_url.is_empty()
    }

    /// What is wrong with buyer authentication, if anything.
    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.jwt_secret.is_empty() && !self.has_jwks() {
            problems.push(
                "auth.jwt_secret (HS256) or auth.jwks_file / auth.jwks_url (RS256, ES256) must be set"
                    .to_owned(),
            );
        }
        if !self.jwt_secret.is_empty() && self.jwt_secret.len() < 16 {
            problems.push("auth.jwt_secret must be empty or at least 16 bytes".to_owned());
        }
        if !self.jwks_url.is_empty() && !self.jwks_url.starts_with("http://") {
            problems.push(
                "auth.jwks_url must be an http:// URL (serve an https JWKS through a local mirror or auth.jwks_file)"
                    .to_owned(),
            );
        }
        if self.jwks_refresh_s == 0 || self.jwks_min_refresh_s == 0 {
            problems.push(
                "auth.jwks_refresh_s and auth.jwks_min_refresh_s must be positive".to_owned(),
            );
        }
        if self.leeway_s > MAX_LEEWAY_S {
            problems.push(format!("auth.leeway_s must be at most {MAX_LEEWAY_S}"));
        }
        problems
    }
}

/// Anti-bot purchase tokens: challenge (proof of work) -> token -> purchase.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokenSettings {
    /// Whether a purchase must carry a purchase token.
    pub require_purchase_token: bool,
    /// Key that challenges and tokens are signed with (at least 16 bytes); empty = derived
    /// from `auth.jwt_secret`. Every instance serving a sale must share it.
    pub secret: String,
    /// How long a challenge can be answered, in milliseconds.
    pub challenge_ttl_ms: u64,
    /// How long a purchase token can be spent, in milliseconds.
    pub token_ttl_ms: u64,
    /// Most unexpired tokens issued per unit the sale has left (0 = no cap).
    pub issue_cap_per_unit: f64,
}

impl Default for TokenSettings {
    fn default() -> Self {
        Self {
            require_purchase_token: true,
            secret: String::new(),
            challenge_ttl_ms: 60_000,
            token_ttl_ms: 60_000,
            issue_cap_per_unit: 0.0,
        }
    }
}

/// Operator authentication: each credential has a name, which the audit trail records.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminSettings {
    /// Bearer token for `/admin/*`, named `admin` (may be empty when `tokens` has one).
    pub token: String,
    /// Named bearer tokens for `/admin/*`: `name = "token"`.
    pub tokens: BTreeMap<String, String>,
}

impl AdminSettings {
    /// Every configured credential: (operator name, token).
    pub fn credentials(&self) -> impl Iterator<Item = (&str, &str)> {
        let default = (!self.token.is_empty()).then_some((Operator::DEFAULT_NAME, &*self.token));
        default.into_iter().chain(
            self.tokens
                .iter()
                .map(|(name, token)| (name.as_str(), token.as_str())),
        )
    }

    /// What is wrong with the credentials, if anything: none at all, a short token, a
    /// name that is not an operator name, a name or a token used twice.
    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.credentials().next().is_none() {
            problems.push("admin.token or admin.tokens must name a credential".to_owned());
        }
        if !self.token.is_empty() && self.token.len() < 16 {
            problems.push("admin.token must be at least 16 bytes".to_owned());
        }
        if !self.token.is_empty() && self.tokens.contains_key(Operator::DEFAULT_NAME) {
            problems.push("admin.tokens.admin is the name of admin.token: pick another".to_owned());
        }
        for (name, token) in &self.tokens {
            if let Err(e) = Operator::parse(name) {
                problems.push(format!("admin.tokens: {name:?}: {e}"));
            }
            if token.len() < 16 {
                problems.push(format!("admin.tokens.{name} must be at least 16 bytes"));
            }
        }
        let mut seen = BTreeSet::new();
        if self.credentials().any(|(_, token)| !seen.insert(token)) {
            problems.push("admin tokens must differ from each other".to_owned());
        }
        problems
    }
}

/// The order database.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSettings {
    /// `postgres://…` or `sqlite://…`.
    pub url: String,
    /// Longest wait for a pooled connection (a new one included: connecting counts).
    pub acquire_timeout_ms: u64,
    /// Longest one statement may run: PostgreSQL's `statement_timeout`, and, with the
    /// acquire timeout, the deadline of every database call the gateway makes.
    pub statement_timeout_ms: u64,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: "sqlite://data/flashgate.db".into(),
            acquire_timeout_ms: 3_000,
            statement_timeout_ms: 5_000,
        }
    }
}

impl DatabaseSettings {
    /// The time limits of database calls.
    pub fn timeouts(&self) -> DbTimeouts {
        DbTimeouts {
            acquire: Duration::from_millis(self.acquire_timeout_ms),
            statement: Duration::from_millis(self.statement_timeout_ms),
        }
    }
}

/// Stock engine housekeeping.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StockSettings {
    /// How often sale definitions and remaining-stock figures are re-read from Redis.
    pub refresh_interval_ms: u64,
    /// How often abandoned stock loans are looked for.
    pub recovery_interval_ms: u64,
    /// Age after which a loan counts as abandoned by its borrower.
    pub loan_grace_ms: u64,
    /// Most purchases one `purchase.lua` call carries on a single Redis node (1 ..=
    /// [`crate::stock::batch::MAX_BATCH`]; 1 sends each purchase on its own). A cluster
    /// always sends them one by one. 16 rather than more: Redis answers a call only when all
    /// of its purchases have run, and the gateway and the clients waiting on a large call
    /// leave CPU idle meanwhile (docs/BENCHMARKS.md §1).
    pub purchase_batch_max: usize,
    /// On a Redis Cluster, whether each instance checks that every sale's shards still split
    /// evenly over the masters and reshards a sale (live, to the same count) when they do
    /// not, e.g. after slots moved. Nothing to check on a single node.
    pub rebalance: bool,
    /// How often that check runs (one `CLUSTER SLOTS` per pass).
    pub rebalance_interval_ms: u64,
}

impl Default for StockSettings {
    fn default() -> Self {
        Self {
            refresh_interval_ms: 500,
            recovery_interval_ms: 2000,
            loan_grace_ms: 5000,
            purchase_batch_max: 16,
            rebalance: true,
            rebalance_interval_ms: 30_000,
        }
    }
}

/// The order lifecycle's background work: the expiry sweeper and the return outbox.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LifecycleSettings {
    /// How often each instance expires unpaid orders and re-drives returns left undone.
    pub sweep_interval_ms: u64,
    /// Most orders one database statement expires or claims.
    pub batch: u32,
    /// How long the instance that settles or claims an order holds its return before
    /// another instance may drive it (a crashed one's lease simply runs out).
    pub return_lease_ms: u64,
}

impl Default for LifecycleSettings {
    fn default() -> Self {
        Self {
            sweep_interval_ms: 1000,
            batch: 500,
            return_lease_ms: 10_000,
        }
    }
}

/// Rate limits on the purchase path (each off while its rate is 0).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsSettings {
    /// Per client IP (the socket peer).
    pub ip: LimitSettings,
    /// Per buyer (JWT subject).
    pub user: LimitSettings,
    /// Per sale, on this instance.
    pub sale: LimitSettings,
    /// Per sale, across every instance sharing the Redis (kept there; one more Redis call
    /// per purchase while on).
    pub sale_shared: LimitSettings,
    /// Per buyer, on challenge and purchase-token requests together.
    pub issue: LimitSettings,
    /// How often idle keys are forgotten.
    pub cleanup_interval_ms: u64,
}

/// One limit as configured: a sustained rate and a burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitSettings {
    /// Requests per second allowed on average (0 = no limit).
    pub rate_per_sec: u32,
    /// Requests allowed at once after a quiet period (at least 1 when the limit is on).
    pub burst: u32,
}

impl Default for LimitsSettings {
    fn default() -> Self {
        Self {
            ip: LimitSettings::default(),
            // A person does not need more than a few tries a second.
            user: LimitSettings {
                rate_per_sec: 5,
                burst: 10,
            },
            sale: LimitSettings::default(),
            sale_shared: LimitSettings::default(),
            // Solving a puzzle takes a while: a person asks for a few at most per second.
            issue: LimitSettings {
                rate_per_sec: 2,
                burst: 6,
            },
            cleanup_interval_ms: 60_000,
        }
    }
}

/// The order queue, the batch writer and the recovery worker.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueSettings {
    /// Orders the in-memory queue holds before the policy applies.
    pub capacity: usize,
    /// What a purchase meets when the queue is full: reject | caller-runs | spill.
    pub policy: QueuePolicy,
    /// Most orders per database transaction.
    pub batch_size: usize,
    /// Longest a partial batch waits for more orders.
    pub batch_wait_ms: u64,
    /// Batches written concurrently while there is a backlog (PostgreSQL; SQLite has one
    /// writer connection, so its batches take turns).
    pub writers: usize,
    /// Longest pause between database retries.
    pub max_backoff_ms: u64,
    /// At shutdown, how long the queue may keep draining.
    pub drain_timeout_ms: u64,
    /// Age after which an unacknowledged stream entry is claimed by recovery.
    pub claim_idle_ms: u64,
    /// How often recovery looks for such entries.
    pub recovery_interval_ms: u64,
    /// The writer counts as stalled (readiness fails) while it holds orders and no write
    /// has committed for this long.
    pub stall_after_ms: u64,
    /// Rejections of one order, alone, after which it goes to the dead letters.
    pub poison_attempts: u32,
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self {
            capacity: 10_000,
            policy: QueuePolicy::Reject,
            batch_size: 2_000,
            batch_wait_ms: 50,
            writers: 4,
            max_backoff_ms: 2_000,
            drain_timeout_ms: 10_000,
            claim_idle_ms: 5_000,
            recovery_interval_ms: 1_000,
            stall_after_ms: 10_000,
            poison_attempts: 3,
        }
    }
}

impl QueueSettings {
    /// The writer's part of these settings.
    pub fn writer(&self) -> WriterSettings {
        WriterSettings {
            batch_size: self.batch_size.max(1),
            batch_wait: Duration::from_millis(self.batch_wait_ms),
            max_backoff: Duration::from_millis(self.max_backoff_ms.max(1)),
            drain_timeout: Duration::from_millis(self.drain_timeout_ms),
            concurrency: self.writers.max(1),
            poison_attempts: self.poison_attempts.max(1),
        }
    }
}

/// A `[[sales]]` table: an id plus a sale definition.
#[derive(Debug, Clone)]
pub struct SaleConfig {
    pub id: SaleId,
    pub definition: SaleDefinition,
}

impl<'de> Deserialize<'de> for SaleConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut table = serde_json::Map::<String, serde_json::Value>::deserialize(d)?;
        let id = table
            .remove("id")
            .ok_or_else(|| D::Error::missing_field("id"))?;
        let id = SaleId::deserialize(id).map_err(D::Error::custom)?;
        let definition = SaleDefinition::deserialize(serde_json::Value::Object(table))
            .map_err(D::Error::custom)?;
        Ok(Self { id, definition })
    }
}

fn list_or_csv<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ListOrCsv {
        List(Vec<String>),
        Csv(String),
    }
    Ok(match ListOrCsv::deserialize(d)? {
        ListOrCsv::List(list) => list,
        ListOrCsv::Csv(csv) => csv
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}

fn ips_list_or_csv<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IpAddr>, D::Error> {
    list_or_csv(d)?
        .iter()
        .map(|s| s.parse().map_err(serde::de::Error::custom))
        .collect()
}

fn origins_list_or_csv<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Origin>, D::Error> {
    list_or_csv(d)?
        .iter()
        .map(|s| Origin::parse(s).map_err(serde::de::Error::custom))
        .collect()
}

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {0} does not exist")]
    MissingFile(PathBuf),
    #[error("cannot read configuration")]
    Parse(#[from] Box<figment::Error>),
    #[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
    Invalid(Vec<String>),
}

impl Settings {
    /// Defaults, then `file` (if given; it must exist), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::new();
        if let Some(file) = file {
            if !file.exists() {
                return Err(ConfigError::MissingFile(file.to_owned()));
            }
            figment = figment.merge(Toml::file(file));
        }
        let settings: Settings = figment
            .merge(Env::prefixed("FLASHGATE_").split("__"))
            .extract()
            .map_err(Box::new)?;
        settings.validate()?;
        Ok(settings)
    }

    /// Whether any secret is one of the demo secrets shipped in the repository.
    fn uses_demo_secrets(&self) -> bool {
        let demo = |secret: &str| secret.starts_with(DEMO_SECRET);
        demo(&self.auth.jwt_secret)
            || demo(&self.admin.token)
            || self.admin.tokens.values().any(|t| demo(t))
            || demo(&self.tokens.secret)
    }

    /// Checks everything that types alone cannot, reporting every problem at once.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        problems.extend(self.auth.problems());
        if self.auth.jwt_secret.is_empty() && self.auth.has_jwks() && self.tokens.secret.is_empty()
        {
            problems.push(
                "tokens.secret must be set when auth.jwt_secret (which it is otherwise derived from) is empty"
                    .to_owned(),
            );
        }
        problems.extend(self.admin.problems());
        if !self.demo && self.uses_demo_secrets() {
            problems.push(format!(
                "the config uses the demo secrets ({DEMO_SECRET}...) shipped in the repository: set your own auth.jwt_secret and admin token(s), or FLASHGATE_DEMO=true for a demo"
            ));
        }
        // No request of the API comes near a mebibyte; a larger cap only lets a client make
        // the gateway buffer more (and axum's own 2 MiB default stays below it everywhere).
        if !(64..=MAX_BODY_LIMIT).contains(&self.http.body_limit_bytes) {
            problems.push(format!(
                "http.body_limit_bytes must be between 64 and {MAX_BODY_LIMIT}"
            ));
        }
        if self.http.max_in_flight == 0 {
            problems.push("http.max_in_flight must be positive".to_owned());
        }
        if self.http.request_timeout_ms == 0 {
            problems.push("http.request_timeout_ms must be positive".to_owned());
        }
        problems.extend(self.http.problems());
        if self.redis.response_timeout_ms == 0
            || self.redis.response_timeout_ms >= self.http.request_timeout_ms
        {
            problems.push(
                "redis.response_timeout_ms must be positive and below http.request_timeout_ms"
                    .to_owned(),
            );
        }
        if self.redis.replica_wait_timeout_ms == 0
            || self.redis.replica_wait_timeout_ms >= self.redis.response_timeout_ms
        {
            problems.push(
                "redis.replica_wait_timeout_ms must be positive and below redis.response_timeout_ms"
                    .to_owned(),
            );
        }
        if self.redis.bulk_pool_size == 0 {
            problems.push("redis.bulk_pool_size must be at least 1".to_owned());
        }
        if self.redis.key_prefix.is_empty() || self.redis.key_prefix.contains(['{', '}']) {
            problems.push("redis.key_prefix must be non-empty without braces".to_owned());
        }
        if !(1..=MAX_BATCH).contains(&self.stock.purchase_batch_max) {
            problems.push(format!(
                "stock.purchase_batch_max must be between 1 and {MAX_BATCH}"
            ));
        }
        if self.queue.capacity == 0 || self.queue.batch_size == 0 {
            problems.push("queue.capacity and queue.batch_size must be positive".to_owned());
        }
        if !self.tokens.secret.is_empty() && self.tokens.secret.len() < 16 {
            problems.push("tokens.secret must be empty or at least 16 bytes".to_owned());
        }
        if self.tokens.challenge_ttl_ms == 0 || self.tokens.token_ttl_ms == 0 {
            problems.push(
                "tokens.challenge_ttl_ms and tokens.token_ttl_ms must be positive".to_owned(),
            );
        }
        if !(self.tokens.issue_cap_per_unit >= 0.0 && self.tokens.issue_cap_per_unit.is_finite()) {
            problems.push("tokens.issue_cap_per_unit must be a finite number >= 0".to_owned());
        }
        if self.database.url.is_empty() {
            problems.push("database.url must be set".to_owned());
        }
        if self.database.acquire_timeout_ms == 0 || self.database.statement_timeout_ms == 0 {
            problems.push(
                "database.acquire_timeout_ms and database.statement_timeout_ms must be positive"
                    .to_owned(),
            );
        }
        if self.queue.stall_after_ms == 0 || self.queue.poison_attempts == 0 {
            problems
                .push("queue.stall_after_ms and queue.poison_attempts must be positive".to_owned());
        }
        for sale in &self.sales {
            if let Err(e) = SaleSpec::try_from(sale.definition.clone()) {
                problems.push(format!("sales[{}]: {e}", sale.id));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> Settings {
        let mut s = Settings::default();
        s.auth.jwt_secret = "0123456789abcdef".into();
        s.admin.token = "fedcba9876543210".into();
        s
    }

    #[test]
    fn defaults_with_secrets_are_valid() {
        assert!(valid().validate().is_ok());
    }

    #[test]
    fn the_body_limit_is_bounded_on_both_sides() {
        for (limit, ok) in [
            (63, false),
            (64, true),
            (MAX_BODY_LIMIT, true),
            (MAX_BODY_LIMIT + 1, false),
        ] {
            let mut s = valid();
            s.http.body_limit_bytes = limit;
            assert_eq!(s.validate().is_ok(), ok, "body_limit_bytes = {limit}");
        }
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let mut s = Settings::default();
        s.http.body_limit_bytes = 1;
        let Err(ConfigError::Invalid(problems)) = s.validate() else {
            panic!("accepted")
        };
        assert_eq!(problems.len(), 3, "{problems:?}");
    }

    #[test]
    fn named_admin_tokens_parse_and_are_named_by_their_key() {
        let toml = r#"
            [admin]
            token = "fedcba9876543210"
            [admin.tokens]
            alice = "alice-token-0123456789"
            "ops.bob" = "bob-token-0123456789"
        "#;
        let s: Settings = Figment::from(Toml::string(toml)).extract().unwrap();
        let names: Vec<&str> = s.admin.credentials().map(|(name, _)| name).collect();
        assert_eq!(names, ["admin", "alice", "ops.bob"]);
        let mut s = Settings {
            admin: s.admin,
            ..valid()
        };
        assert!(s.validate().is_ok());
        s.admin.token = String::new();
        assert!(s.validate().is_ok(), "named tokens alone are enough");
    }

    #[test]
    fn bad_admin_credentials_are_each_reported() {
        let mut s = valid();
        let tokens = [
            ("admin", "another-token-0123456789"),
            ("al ice", "alice-token-0123456789"),
            ("bob", "short"),
            ("carol", "fedcba9876543210"),
        ];
        s.admin.tokens = tokens
            .into_iter()
            .map(|(n, t)| (n.to_owned(), t.to_owned()))
            .collect();
        let Err(ConfigError::Invalid(problems)) = s.validate() else {
            panic!("accepted")
        };
        assert_eq!(problems.len(), 4, "{problems:?}");
        s.admin = AdminSettings::default();
        let Err(ConfigError::Invalid(problems)) = s.validate() else {
            panic!("accepted without any admin credential")
        };
        assert_eq!(
            problems,
            ["admin.token or admin.tokens must name a credential"]
        );
    }

    #[test]
    fn sales_tables_parse_with_their_id() {
        let toml = r#"
            [auth]
            jwt_secret = "0123456789abcdef"
            [[sales]]
            id = "phone"
            name = "Phone"
            stock = 10
            shards = 4
            starts_at = "2026-11-21T12:00:00Z"
            ends_at = "2026-11-21T13:00:00Z"
            per_user_limit = 1
            max_per_order = 1
        "#;
        let s: Settings = Figment::from(Toml::string(toml)).extract().unwrap();
        assert_eq!(s.sales[0].id.as_str(), "phone");
        assert_eq!(s.sales[0].definition.shards, 4);
    }

    #[test]
    fn a_sales_table_over_a_bound_is_refused_naming_it() {
        let toml = r#"
            [[sales]]
            id = "phone"
            name = "Phone"
            stock = 2000000000
            starts_at = "2026-11-21T12:00:00Z"
            ends_at = "2026-11-21T13:00:00Z"
            per_user_limit = 1
            max_per_order = 1
        "#;
        let mut s: Settings = Figment::from(Toml::string(toml)).extract().unwrap();
        s.auth = valid().auth;
        s.admin = valid().admin;
        let Err(ConfigError::Invalid(problems)) = s.validate() else {
            panic!("accepted")
        };
        assert!(
            problems
                .iter()
                .any(|p| p.contains("sales[phone]: stock") && p.contains("1000000000")),
            "{problems:?}"
        );
    }

    #[test]
    fn unknown_sale_fields_are_refused() {
        let toml = r#"
            [[sales]]
            id = "phone"
            name = "Phone"
            stock = 10
            starts_at = "2026-11-21T12:00:00Z"
            ends_at = "2026-11-21T13:00:00Z"
            per_user_limit = 1
            max_per_order = 1
            pow_dificulty = 3
        "#;
        assert!(
            Figment::from(Toml::string(toml))
                .extract::<Settings>()
                .is_err()
        );
    }

    #[test]
    fn the_shipped_config_file_states_the_defaults() {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/flashgate.toml");
        let shipped: Settings = Figment::from(Toml::file(file)).extract().unwrap();
        let defaults = Settings::default();
        let sections = |s: &Settings| {
            format!(
                "{:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?}",
                s.http,
                s.database,
                s.stock,
                s.queue,
                s.limits,
                s.tokens,
                s.metrics,
                s.log,
                s.lifecycle
            )
        };
        assert_eq!(sections(&shipped), sections(&defaults));
        // Its secrets are the demo's: refused unless it is a demo.
        assert!(shipped.validate().is_err());
        let demo = Settings {
            demo: true,
            ..shipped
        };
        assert!(demo.validate().is_ok());
    }

    #[test]
    fn cors_origins_parse_from_a_list_or_a_comma_separated_string_and_bad_ones_are_refused() {
        let list = r#"
            [http]
            cors_origins = ["https://shop.example", "http://localhost:3000"]
        "#;
        let csv = r#"
            [http]
            cors_origins = "https://shop.example, http://localhost:3000"
        "#;
        for toml in [list, csv] {
            let s: Settings = Figment::from(Toml::string(toml)).extract().unwrap();
            let expected = ["https://shop.example", "http://localhost:3000"]
                .map(|o| Origin::parse(o).unwrap());
            assert_eq!(s.http.cors_origins, expected);
        }
        let bad = r#"
            [http]
            cors_origins = ["https://shop.example/checkout"]
        "#;
        assert!(
            Figment::from(Toml::string(bad))
                .extract::<Settings>()
                .is_err()
        );
    }

    #[test]
    fn purchase_batches_are_between_one_and_the_most_a_call_may_carry() {
        for (max, ok) in [
            (0, false),
            (1, true),
            (64, true),
            (MAX_BATCH, true),
            (MAX_BATCH + 1, false),
        ] {
            let mut s = valid();
            s.stock.purchase_batch_max = max;
            assert_eq!(s.validate().is_ok(), ok, "purchase_batch_max = {max}");
        }
    }

    #[test]
    fn token_settings_are_checked() {
        let mut s = valid();
        assert!(
            s.tokens.require_purchase_token,
            "tokens are required by default"
        );
        s.tokens.secret = "short".into();
        s.tokens.token_ttl_ms = 0;
        s.tokens.issue_cap_per_unit = f64::NAN;
        let Err(ConfigError::Invalid(problems)) = s.validate() else {
            panic!("accepted")
        };
        assert_eq!(problems.len(), 3, "{problems:?}");
    }

    #[test]
    fn durability_is_read_in_lowercase_and_its_wait_bounded_by_the_response_timeout() {
        let s: Settings = Figment::from(Toml::string(
            "[redis]\ndurability = \"replica\"\nreplica_wait_timeout_ms = 50",
        ))
        .extract()
        .unwrap();
        assert_eq!(s.redis.durability, DurabilityMode::Replica);
        assert_eq!(s.redis.replica_wait_timeout_ms, 50);
        assert!(
            Figment::from(Toml::string("[redis]\ndurability = \"fsync\""))
                .extract::<Settings>()
                .is_err()
        );
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/flashgate.toml");
        let shipped: Settings = Figment::from(Toml::file(file)).extract().unwrap();
        let defaults = RedisSettings::default();
        assert_eq!(shipped.redis.durability, DurabilityMode::Async);
        assert_eq!(defaults.durability, DurabilityMode::Async);
        assert_eq!(
            shipped.redis.replica_wait_timeout_ms,
            defaults.replica_wait_timeout_ms
        );
        for (wait_ms, ok) in [(0, false), (1, true), (499, true), (500, false)] {
            let mut s = valid();
            s.redis.response_timeout_ms = 500;
            s.redis.replica_wait_timeout_ms = wait_ms;
            assert_eq!(
                s.validate().is_ok(),
                ok,
                "replica_wait_timeout_ms = {wait_ms}"
            );
        }
    }

    #[test]
    fn queue_policy_is_read_in_kebab_case() {
        let s: Settings = Figment::from(Toml::string(
            "[queue]\npolicy = \"caller-runs\"\ncapacity = 10",
        ))
        .extract()
        .unwrap();
        assert_eq!(s.queue.policy, QueuePolicy::CallerRuns);
        assert_eq!(s.queue.capacity, 10);
    }

    #[test]
    fn the_bounds_on_hostile_clients_are_checked() {
        let mut s = valid();
        s.http.max_in_flight_per_buyer = 0;
        s.http.max_connections = 0;
        s.http.header_read_timeout_ms = 0;
        s.http.max_header_bytes = 100;
        s.http.body_read_timeout_ms = s.http.request_timeout_ms + 1;
        let Err(ConfigError::Invalid(problems)) = s.validate() else {
            panic!("accepted")
        };
        assert_eq!(problems.len(), 5, "{problems:?}");
    }

    #[test]
    fn buyer_auth_needs_a_secret_or_a_jwks_and_a_token_secret_without_hs256() {
        let mut s = valid();
        s.auth.jwt_secret = String::new();
        let Err(ConfigError::Invalid(problems)) = s.validate() else {
            panic!("accepted without any buyer key")
        };
        assert_eq!(problems.len(), 1, "{problems:?}");
        s.auth.jwks_file = "/etc/flashgate/jwks.json".into();
        let Err(ConfigError::Invalid(problems)) = s.validate() else {
            panic!("accepted without a purchase-token secret")
        };
        assert!(problems[0].starts_with("tokens.secret"), "{problems:?}");
        s.tokens.secret = "purchase-token-secret-0123456789".into();
        assert!(s.validate().is_ok());
        s.auth.jwks_url = "https://login.example/.well-known/jwks.json".into();
        s.auth.jwks_min_refresh_s = 0;
        s.auth.leeway_s = MAX_LEEWAY_S + 1;
        s.auth.jwt_secret = "short".into();
        let Err(ConfigError::Invalid(problems)) = s.validate() else {
            panic!("accepted")
        };
        assert_eq!(problems.len(), 4, "{problems:?}");
    }

    #[test]
    fn cluster_urls_accept_a_comma_separated_string() {
        let s: Settings = Figment::from(Toml::string(
            "[redis]\ncluster_urls = \"redis://a:1, redis://b:2\"",
        ))
        .extract()
        .unwrap();
        assert_eq!(s.redis.cluster_urls, ["redis://a:1", "redis://b:2"]);
    }
}
