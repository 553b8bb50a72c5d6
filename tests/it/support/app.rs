//! `spawn_app()`: the real gateway, in-process on a free port, against a real Redis
//! (single node or cluster), with a unique key prefix so tests never see each other's data.

use std::time::Duration;

use flashgate::testing::auth::JwtKeys;
use flashgate::testing::config::Settings;
use flashgate::testing::db::OrderDb;
use flashgate::testing::domain::{SaleId, UserId};
use flashgate::testing::persist::writer::Flusher;
use flashgate::testing::startup::Application;
use flashgate::testing::store::shards::{self, ShardCounters};
use flashgate::testing::store::{Keys, RedisConn, RedisTarget, RedisTimeouts};
use flashgate::testing::workers::Recovery;
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::redis::RedisServer;

pub const JWT_SECRET: &str = "test-secret-0123456789abcdef";
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// A running gateway and the means to poke at it.
pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub jwt: JwtKeys,
    pub keys: Keys,
    /// The key prefix (`redis.key_prefix`) this gateway runs under.
    pub prefix: String,
    pub redis: RedisConn,
    pub db: OrderDb,
    /// The gateway's shared state (for counters no endpoint shows).
    pub state: flashgate::testing::http::AppState,
    flusher: Flusher,
    recovery: Recovery,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
    _sqlite_dir: Option<tempfile::TempDir>,
}

/// Settings for a test gateway on `target`, before any per-test tweak.
pub fn test_settings(target: &RedisTarget) -> Settings {
    let mut s = Settings::default();
    s.http.addr = "127.0.0.1:0".parse().unwrap();
    s.auth.jwt_secret = JWT_SECRET.into();
    s.admin.token = ADMIN_TOKEN.into();
    match target {
        RedisTarget::Single(url) => s.redis.url = Some(url.clone()),
        RedisTarget::Cluster(urls) => s.redis.cluster_urls = urls.clone(),
    }
    s.redis.key_prefix = format!("t{}", rand_suffix());
    // Tests assert behaviour, not timing: a debug build sharing two cores with thousands of
    // client requests and three redis-servers must not trip production-tight timeouts.
    s.http.request_timeout_ms = 20_000;
    s.redis.response_timeout_ms = 10_000;
    s.redis.connect_timeout_ms = 10_000;
    s.stock.refresh_interval_ms = 200;
    s.stock.recovery_interval_ms = 200;
    s.stock.loan_grace_ms = 1000;
    // Most tests are about stock, not bots: they buy without purchase tokens. The token
    // tests (tests/it/tokens.rs) turn the requirement back on.
    s.tokens.require_purchase_token = false;
    // Nor about one buyer's pace: storms of one buyer test the per-user *unit* limit.
    s.limits.user = flashgate::testing::config::LimitSettings::default();
    // Nor about one buyer's concurrency or challenge pace: storms of one buyer and token
    // tests send many requests of one buyer at once. The edge tests turn these back on.
    s.http.max_in_flight_per_buyer = s.http.max_in_flight;
    s.limits.issue = flashgate::testing::config::LimitSettings::default();
    s
}

fn rand_suffix() -> String {
    format!("{:08x}", rand::random::<u32>())
}

/// Starts the gateway on `target` with default test settings.
pub async fn spawn_app(target: &RedisTarget) -> TestApp {
    spawn_app_with(test_settings(target)).await
}

/// A fresh single-node redis-server and a gateway against it (keep the server alive as
/// long as the app: dropping it stops the process).
pub async fn spawn_single() -> (RedisServer, TestApp) {
    let redis = RedisServer::start();
    let app = spawn_app(&RedisTarget::Single(redis.url())).await;
    (redis, app)
}

/// Starts the gateway with `settings`.
pub async fn spawn_app_with(settings: Settings) -> TestApp {
    // Logs only when asked: TEST_LOG=flashgate=debug cargo test ...
    if let Ok(filter) = std::env::var("TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
    let mut settings = settings;
    // The default SQLite file would be shared by every test: give each app its own.
    let sqlite_dir = (settings.database.url == Settings::default().database.url).then(|| {
        let dir = tempfile::tempdir().unwrap();
        settings.database.url = format!("sqlite://{}/orders.db", dir.path().display());
        dir
    });
    let keys = Keys::new(&settings.redis.key_prefix);
    let prefix = settings.redis.key_prefix.clone();
    let target = settings
        .redis
        .target()
        .expect("tests always configure redis");
    let timeouts = RedisTimeouts {
        response: Duration::from_secs(2),
        connect: Duration::from_secs(2),
    };
    let redis = RedisConn::connect(&target, timeouts)
        .await
        .expect("probe connects");
    let db_url = settings.database.url.clone();
    let app = Application::build(settings).await.expect("gateway builds");
    let db = OrderDb::connect(&db_url)
        .await
        .expect("test connects to the order database");
    let base = format!("http://127.0.0.1:{}", app.port());
    let state = app.state().clone();
    let (flusher, recovery) = (app.writer_flusher(), app.recovery());
    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        app.run_until(async {
            let _ = rx.await;
        })
        .await
        .expect("gateway runs");
    });
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    TestApp {
        base,
        client,
        jwt: JwtKeys::new(JWT_SECRET.as_bytes()),
        keys,
        prefix,
        redis,
        db,
        state,
        flusher,
        recovery,
        shutdown: Some(tx),
        server: Some(server),
        _sqlite_dir: sqlite_dir,
    }
}

impl TestApp {
    /// Shuts the gateway down as SIGTERM does (the writer drains, the workers stop) and
    /// waits until it has.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("the gateway stops");
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

/// A sale body for `PUT /admin/v1/sales/{id}`, open now for an hour.
pub fn live_sale(stock: u64, shards: u32, per_user_limit: u32, max_per_order: u32) -> Value {
    let now = time::OffsetDateTime::now_utc();
    let fmt = &time::format_description::well_known::Rfc3339;
    json!({
        "name": "Test sale",
        "stock": stock,
        "shards": shards,
        "starts_at": (now - time::Duration::minutes(1)).format(fmt).unwrap(),
        "ends_at": (now + time::Duration::hours(1)).format(fmt).unwrap(),
        "per_user_limit": per_user_limit,
        "max_per_order": max_per_order,
        "pow_difficulty": 0,
    })
}

impl TestApp {
    /// A valid buyer JWT for `user`.
    pub fn token(&self, user: &str) -> String {
        let exp = time::OffsetDateTime::now_utc().unix_timestamp() + 3600;
        self.jwt.mint(&UserId::parse(user).unwrap(), exp)
    }

    /// `PUT /admin/v1/sales/{id}` with `body`; panics unless 200/201.
    pub async fn create_sale(&self, id: &str, body: &Value) {
        let response = self.put_sale(id, body).await;
        let status = response.status();
        assert!(
            status.is_success(),
            "create sale: {status} {}",
            response.text().await.unwrap()
        );
    }

    /// `PUT /admin/v1/sales/{id}` with `body`.
    pub async fn put_sale(&self, id: &str, body: &Value) -> Response {
        self.client
            .put(format!("{}/admin/v1/sales/{id}", self.base))
            .bearer_auth(ADMIN_TOKEN)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// `POST .../purchase` as `user` with `key` and `{"quantity": qty}`.
    pub async fn purchase(&self, sale: &str, user: &str, key: &str, qty: u32) -> Response {
        self.client
            .post(format!("{}/api/v1/sales/{sale}/purchase", self.base))
            .bearer_auth(self.token(user))
            .header("Idempotency-Key", key)
            .json(&json!({ "quantity": qty }))
            .send()
            .await
            .unwrap()
    }

    /// `POST .../purchase` as `user` with `key`, `qty` and, if given, a purchase token.
    pub async fn purchase_with_token(
        &self,
        sale: &str,
        user: &str,
        key: &str,
        qty: u32,
        token: Option<&str>,
    ) -> Response {
        let mut body = json!({ "quantity": qty });
        if let Some(token) = token {
            body["purchase_token"] = json!(token);
        }
        self.post_json(
            &format!("/api/v1/sales/{sale}/purchase"),
            user,
            Some(key),
            &body,
        )
        .await
    }

    /// `POST path` with `body` as buyer `user` (and an Idempotency-Key if given).
    pub async fn post_json(
        &self,
        path: &str,
        user: &str,
        key: Option<&str>,
        body: &Value,
    ) -> Response {
        let mut request = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(self.token(user));
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        request.json(body).send().await.unwrap()
    }

    /// `POST .../challenge` as `user`: (status, body).
    pub async fn challenge(&self, sale: &str, user: &str) -> (StatusCode, Value) {
        let response = self
            .post_json(
                &format!("/api/v1/sales/{sale}/challenge"),
                user,
                None,
                &json!({}),
            )
            .await;
        (
            response.status(),
            response.json().await.unwrap_or(Value::Null),
        )
    }

    /// `POST .../tokens` as `user` with `challenge` and `nonce`.
    pub async fn exchange(&self, sale: &str, user: &str, challenge: &str, nonce: &str) -> Response {
        let body = json!({ "challenge": challenge, "nonce": nonce });
        self.post_json(&format!("/api/v1/sales/{sale}/tokens"), user, None, &body)
            .await
    }

    /// The whole anti-bot journey: a challenge, its proof of work, a purchase token.
    pub async fn purchase_token(&self, sale: &str, user: &str) -> String {
        let (status, challenge) = self.challenge(sale, user).await;
        assert_eq!(status, StatusCode::OK, "challenge: {challenge}");
        let text = challenge["challenge"].as_str().unwrap();
        let difficulty = u8::try_from(challenge["difficulty"].as_u64().unwrap()).unwrap();
        let nonce = flashgate::testing::tokens::pow::solve(text, difficulty);
        let response = self.exchange(sale, user, text, &nonce).await;
        assert_eq!(response.status(), StatusCode::CREATED);
        let body: Value = response.json().await.unwrap();
        body["purchase_token"].as_str().unwrap().to_owned()
    }

    /// `GET /metrics`: the Prometheus text of this gateway.
    pub async fn metrics_text(&self) -> String {
        let response = self
            .client
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap();
        response.text().await.unwrap()
    }

    /// `GET path` as JSON with optional bearer.
    pub async fn get_json(&self, path: &str, bearer: Option<&str>) -> (StatusCode, Value) {
        let mut request = self.client.get(format!("{}{path}", self.base));
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// `POST /admin/v1/sales/{sale}/reconcile`, which must answer 200: its JSON.
    pub async fn reconcile(&self, sale: &str) -> Value {
        let response = self
            .client
            .post(format!("{}/admin/v1/sales/{sale}/reconcile", self.base))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    /// Waits until this gateway knows who holds units of the sold-out `sale` (it loads them
    /// in the background once the sale is marked sold out); panics after 10 s.
    pub async fn await_sold_out_holders(&self, sale: &str) {
        let id = SaleId::parse(sale).unwrap();
        let loaded = eventually(Duration::from_secs(10), || async {
            let cached = self.state.sales.cached(&id);
            cached.is_some_and(|rt| rt.holders_known()).then_some(())
        })
        .await;
        assert!(
            loaded.is_some(),
            "the holders of sold-out sale {sale} were never loaded"
        );
    }

    /// The counters of every shard of `sale`, read straight from Redis.
    pub async fn shard_counters(&self, sale: &str, shards: u32) -> Vec<ShardCounters> {
        let sale = SaleId::parse(sale).unwrap();
        let mut conn = self.redis.clone();
        let mut all = Vec::new();
        for shard in 0..shards {
            all.push(
                shards::read_counters(&mut conn, &self.keys.shard(&sale, shard))
                    .await
                    .unwrap(),
            );
        }
        all
    }

    /// Units sold over every shard of `sale`, read straight from Redis.
    pub async fn sold(&self, sale: &str, shards: u32) -> u64 {
        let shards = self.indices_used(sale, shards).await;
        self.shard_counters(sale, shards)
            .await
            .iter()
            .map(|c| c.sold)
            .sum()
    }

    /// Units left on the shelves of every shard of `sale`, read straight from Redis.
    pub async fn stock_left(&self, sale: &str, shards: u32) -> u64 {
        let shards = self.indices_used(sale, shards).await;
        self.shard_counters(sale, shards)
            .await
            .iter()
            .map(|c| c.stock)
            .sum()
    }

    /// Every order record in every shard stream of `sale` (orders not yet persisted):
    /// (order id, user, quantity).
    pub async fn stream_orders(&self, sale: &str, shards: u32) -> Vec<(String, String, u64)> {
        let sale = SaleId::parse(sale).unwrap();
        let mut conn = self.redis.clone();
        let mut orders = Vec::new();
        for shard in 0..shards {
            let key = self.keys.shard(&sale, shard).orders;
            let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
                .arg(&key)
                .arg("-")
                .arg("+")
                .query_async(&mut conn)
                .await
                .unwrap();
            for entry in &reply.ids {
                let order =
                    flashgate::testing::orders::record_from_entry(&sale, shard, entry).unwrap();
                orders.push((
                    order.order_id.to_string(),
                    order.user.to_string(),
                    u64::from(order.quantity.get()),
                ));
            }
        }
        orders
    }

    /// How many shard indices from 0 to read to see every shard of `sale`: `shards`, or more
    /// if the sale's stored layout reaches further (on a cluster its shards are placed by
    /// master and skip indices; skipped ones have no keys and read as zero counters, empty
    /// streams).
    pub async fn indices_used(&self, sale: &str, shards: u32) -> u32 {
        let sale = SaleId::parse(sale).unwrap();
        let layout: Option<String> = redis::cmd("HGET")
            .arg(self.keys.sale_meta(&sale))
            .arg("layout")
            .query_async(&mut self.redis.clone())
            .await
            .unwrap();
        let end = layout.map_or(0, |text| {
            let layout: flashgate::testing::domain::Layout = serde_json::from_str(&text).unwrap();
            layout.next_base()
        });
        shards.max(end)
    }

    /// Every order row of `sale`: (order id, user, quantity).
    pub async fn db_orders(&self, sale: &str) -> Vec<(String, String, u64)> {
        let sale = SaleId::parse(sale).unwrap();
        let rows = self.db.list(&sale).await.unwrap();
        rows.into_iter()
            .map(|r| (r.order_id.to_string(), r.user_id, u64::from(r.quantity)))
            .collect()
    }

    /// Waits until this gateway's writer has committed every order queued so far (a
    /// writer retrying a database that never comes back fails the test after 60 s).
    pub async fn flush(&self) {
        tokio::time::timeout(Duration::from_secs(60), self.flusher.flush())
            .await
            .expect("the writer flushes within 60 s")
            .expect("the writer runs");
    }

    /// Runs one pass of this gateway's recovery jobs (abandoned loans, orders left
    /// pending in their streams), as its workers do on their timers.
    pub async fn run_recovery_once(&self) {
        self.recovery.run_once().await;
    }

    /// Flushes the writer, then waits (bounded) until every accepted order of `sale` is a
    /// row (nothing pending in Redis), then returns the counters. Orders the writer never
    /// held (spilled, or left by a writer that gave up) are recovery's, which takes only
    /// entries older than `queue.claim_idle_ms`: those are waited for, running recovery.
    pub async fn drained_counters(&self, sale: &str, shards: u32) -> Vec<ShardCounters> {
        self.flush().await;
        let drained = eventually(Duration::from_secs(30), || async move {
            let counters = self.settled_counters(sale, shards).await;
            if counters.iter().all(|c| c.pending_units == 0) {
                return Some(counters);
            }
            self.recovery.orders_once().await;
            None
        })
        .await;
        match drained {
            Some(counters) => counters,
            None => panic!(
                "orders still pending after 30 s: {:?}",
                self.shard_counters(sale, shards).await
            ),
        }
    }

    /// Waits (bounded) until no loan is outstanding on any shard, then returns the counters.
    /// A loan abandoned by its borrower is finished by loan recovery once it is older than
    /// `stock.loan_grace_ms`: until then, this runs recovery and waits.
    pub async fn settled_counters(&self, sale: &str, shards: u32) -> Vec<ShardCounters> {
        let settled = eventually(Duration::from_secs(10), || async move {
            // The shards are read one after the other while this gateway's own recovery may
            // credit and settle a loan: a read is kept only once the next one is the same,
            // so that no move of units fell between two of its shards.
            let counters = self.shard_counters(sale, shards).await;
            if counters.iter().all(|c| c.lent == 0)
                && self.shard_counters(sale, shards).await == counters
            {
                return Some(counters);
            }
            self.recovery.loans_once().await;
            None
        })
        .await;
        match settled {
            Some(counters) => counters,
            None => panic!(
                "loans still outstanding after 10 s: {:?}",
                self.shard_counters(sale, shards).await
            ),
        }
    }
}

/// Polls `check` every 50 ms until it returns a value, for at most `limit`: for state that
/// changes with time outside the test's hands (ages measured by the Redis clock, another
/// process). `None` when the limit passed.
pub async fn eventually<T, F, Fut>(limit: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The problem `type` slug of a problem+json response, checking its content type.
pub async fn problem_slug(response: Response) -> (StatusCode, String) {
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    assert_eq!(content_type, "application/problem+json", "status {status}");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], status.as_u16());
    let slug = body["type"]
        .as_str()
        .unwrap()
        .trim_start_matches("/problems/")
        .to_owned();
    (status, slug)
}
