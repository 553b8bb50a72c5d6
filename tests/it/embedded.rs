//! The embedded redis-server, with the real `flashgate` binary, no Redis configured and a
//! temporary data directory: gateways on one data directory share one server, there is
//! never more than one, it dies with the gateway that started it (SIGKILL included), and
//! its data survives into the next server.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use flashgate::testing::auth::JwtKeys;
use flashgate::testing::domain::UserId;
use serde_json::{Value, json};

use crate::support::app::{ADMIN_TOKEN, JWT_SECRET, live_sale};
use crate::support::redis::free_port;

/// The `flashgate` binary with no Redis configured, its embedded server's data in
/// `<root>/redis` and its orders in `<root>/orders.db`.
fn flashgate(root: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_flashgate"));
    command
        .env_remove("FLASHGATE_REDIS__URL")
        .env_remove("FLASHGATE_REDIS__CLUSTER_URLS")
        .env("FLASHGATE_REDIS__EMBEDDED_DIR", root.join("redis"))
        .env(
            "FLASHGATE_DATABASE__URL",
            format!("sqlite://{}/orders.db", root.display()),
        )
        .env("FLASHGATE_AUTH__JWT_SECRET", JWT_SECRET)
        .env("FLASHGATE_ADMIN__TOKEN", ADMIN_TOKEN)
        .env("FLASHGATE_TOKENS__REQUIRE_PURCHASE_TOKEN", "false")
        .env("RUST_LOG", "warn");
    command
}

/// A `flashgate serve` process using the embedded Redis over `<root>/redis`, its log in
/// `<root>/gateway-<port>.log`.
struct Gateway {
    child: Option<Child>,
    port: u16,
    log: PathBuf,
}

impl Gateway {
    async fn start(root: &Path) -> Self {
        Self::start_with_orders_in(root, "orders.db").await
    }

    /// Starts a gateway with its orders in `<root>/<db>`.
    async fn start_with_orders_in(root: &Path, db: &str) -> Self {
        let port = free_port();
        let log = root.join(format!("gateway-{port}.log"));
        let child = flashgate(root)
            .arg("serve")
            .env(
                "FLASHGATE_DATABASE__URL",
                format!("sqlite://{}", root.join(db).display()),
            )
            .env("FLASHGATE_HTTP__ADDR", format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("flashgate binary starts");
        let mut gateway = Self {
            child: Some(child),
            port,
            log,
        };
        gateway.wait_ready().await;
        gateway
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if self.get("/health/ready").await.0 == 200 {
                return;
            }
            let child = self.child.as_mut().unwrap();
            if let Some(status) = child.try_wait().unwrap() {
                panic!("gateway exited during start-up ({status}): {}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("gateway not ready within 60 s: {}", self.log());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let request = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{}{path}", self.port))
            .bearer_auth(ADMIN_TOKEN)
            .timeout(Duration::from_secs(10));
        match request.send().await {
            Ok(r) => (r.status().as_u16(), r.json().await.unwrap_or(Value::Null)),
            Err(_) => (0, Value::Null),
        }
    }

    async fn create_sale(&self, sale: &str, stock: u64) {
        let response = reqwest::Client::new()
            .put(format!(
                "http://127.0.0.1:{}/admin/v1/sales/{sale}",
                self.port
            ))
            .bearer_auth(ADMIN_TOKEN)
            .json(&live_sale(stock, 2, 1, 1))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
    }

    /// One purchase of one unit by `buyer` (its own Idempotency-Key): (status, body); status
    /// 0 when no answer came.
    async fn purchase(&self, sale: &str, buyer: &str) -> (u16, Value) {
        let exp = time::OffsetDateTime::now_utc().unix_timestamp() + 3600;
        let jwt = JwtKeys::new(JWT_SECRET.as_bytes()).mint(&UserId::parse(buyer).unwrap(), exp);
        let request = reqwest::Client::new()
            .post(format!(
                "http://127.0.0.1:{}/api/v1/sales/{sale}/purchase",
                self.port
            ))
            .bearer_auth(jwt)
            .header("Idempotency-Key", format!("key-{buyer}"))
            .json(&json!({ "quantity": 1 }))
            .timeout(Duration::from_secs(10));
        match request.send().await {
            Ok(r) => (r.status().as_u16(), r.json().await.unwrap_or(Value::Null)),
            Err(_) => (0, Value::Null),
        }
    }

    /// Units sold, as the operator endpoint reads them from Redis.
    async fn sold(&self, sale: &str) -> u64 {
        let (status, body) = self.get(&format!("/admin/v1/sales/{sale}")).await;
        assert_eq!(status, 200, "{body}");
        body["sold"].as_u64().unwrap()
    }

    /// SIGKILL: no shutdown code runs.
    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// SIGTERM, then waits for the exit.
    fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().unwrap();
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        assert!(sent.is_ok_and(|s| s.success()));
        child.wait().unwrap()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Ids of the live redis-server processes working in `dir` (redis-server changes into its
/// data directory; zombies have no working directory and do not count).
fn servers_over(dir: &Path) -> Vec<u32> {
    let dir = dir.canonicalize().unwrap();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            let cwd = std::fs::read_link(format!("/proc/{pid}/cwd"));
            comm.trim() == "redis-server" && cwd.is_ok_and(|cwd| cwd == dir)
        })
        .collect()
}

/// Polls (bounded) until `servers_over(dir)` has `n` entries, checking at every look that
/// there is never more than one; returns them.
async fn wait_for_servers(dir: &Path, n: usize) -> Vec<u32> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let servers = servers_over(dir);
        assert!(
            servers.len() <= 1,
            "two servers over one directory: {servers:?}"
        );
        if servers.len() == n {
            return servers;
        }
        assert!(
            Instant::now() < deadline,
            "expected {n} servers, found {servers:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls (bounded) until none of `pids` is a server over `dir` any more, checking at every
/// look that there is never more than one.
async fn wait_until_gone(dir: &Path, pids: &[u32]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let servers = servers_over(dir);
        assert!(
            servers.len() <= 1,
            "two servers over one directory: {servers:?}"
        );
        if !servers.iter().any(|pid| pids.contains(pid)) {
            return;
        }
        assert!(Instant::now() < deadline, "{pids:?} still running");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Buys one unit through `gateway` until it answers 202 (bounded), checking at every try
/// that there is never more than one server over `dir`.
async fn buy_when_served(gateway: &Gateway, dir: &Path, sale: &str, buyer: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let servers = servers_over(dir);
        assert!(
            servers.len() <= 1,
            "two servers over one directory: {servers:?}"
        );
        let (status, body) = gateway.purchase(sale, buyer).await;
        if status == 202 {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "no 202 within 60 s, last {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_on_one_data_directory_share_one_redis_server() {
    let root = tempfile::tempdir().unwrap();
    let redis_dir = root.path().join("redis");
    let first = Gateway::start(root.path()).await;
    let second = Gateway::start(root.path()).await;
    assert_eq!(servers_over(&redis_dir).len(), 1);
    // A sale lives in Redis only: created through one gateway, it is visible through the
    // other, and a purchase through either takes from one stock.
    first.create_sale("shared", 10).await;
    let (status, body) = second.get("/api/v1/sales/shared").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(second.purchase("shared", "a").await.0, 202);
    assert_eq!(first.purchase("shared", "b").await.0, 202);
    assert_eq!(first.sold("shared").await, 2);
    assert_eq!(second.sold("shared").await, 2);
    assert_eq!(servers_over(&redis_dir).len(), 1);
    // It runs with the settings the README recommends for flashgate's Redis.
    let settings = server_settings(servers_over(&redis_dir)[0]).await;
    for (name, value) in [
        ("appendonly", "yes"),
        ("appendfsync", "everysec"),
        ("auto-aof-rewrite-percentage", "400"),
        ("stream-node-max-entries", "16"),
    ] {
        assert_eq!(
            settings.get(name).map(String::as_str),
            Some(value),
            "{name}"
        );
    }
}

/// The configuration of the redis-server `pid`, asked over the port its process title names
/// (`redis-server 127.0.0.1:<port>`).
async fn server_settings(pid: u32) -> std::collections::HashMap<String, String> {
    let title = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap();
    let address = title
        .split(['\0', ' '])
        .find(|part| part.starts_with("127.0.0.1:"))
        .unwrap_or_else(|| panic!("no address in the title {title:?}"));
    let client = redis::Client::open(format!("redis://{address}")).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("CONFIG")
        .arg("GET")
        .arg("*")
        .query_async(&mut conn)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_start_up_log_warns_that_the_embedded_redis_is_single_host_only() {
    let root = tempfile::tempdir().unwrap();
    let first = Gateway::start(root.path()).await;
    let second = Gateway::start(root.path()).await;
    for gateway in [&first, &second] {
        let log = gateway.log();
        assert!(log.contains("WARN"), "{log}");
        assert!(log.contains("single-host only"), "{log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkilled_gateway_takes_its_redis_server_with_it_and_the_next_start_keeps_the_data() {
    let root = tempfile::tempdir().unwrap();
    let redis_dir = root.path().join("redis");
    let mut gateway = Gateway::start(root.path()).await;
    gateway.create_sale("kill", 10).await;
    let (status, order) = gateway.purchase("kill", "before").await;
    assert_eq!(status, 202, "{order}");
    let before = wait_for_servers(&redis_dir, 1).await;
    gateway.kill9();
    wait_for_servers(&redis_dir, 0).await;

    let restarted = Gateway::start(root.path()).await;
    let after = wait_for_servers(&redis_dir, 1).await;
    assert_ne!(before, after, "the old server was still running");
    assert_eq!(
        restarted.sold("kill").await,
        1,
        "the purchase before the kill"
    );
    // A retry of that purchase is the same order (its record is in Redis).
    let (status, again) = restarted.purchase("kill", "before").await;
    assert_eq!(status, 202, "{again}");
    assert_eq!(again["order_id"], order["order_id"]);
    assert_eq!(restarted.sold("kill").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_gateway_running_the_server_dies_another_starts_one_over_the_same_data() {
    let root = tempfile::tempdir().unwrap();
    let redis_dir = root.path().join("redis");
    let mut first = Gateway::start(root.path()).await;
    let second = Gateway::start(root.path()).await;
    let third = Gateway::start(root.path()).await;
    first.create_sale("takeover", 10).await;
    assert_eq!(second.purchase("takeover", "before").await.0, 202);
    let before = wait_for_servers(&redis_dir, 1).await;

    // Both survivors race to start the next server; one does, the other joins it.
    first.kill9();
    wait_until_gone(&redis_dir, &before).await;
    buy_when_served(&second, &redis_dir, "takeover", "second").await;
    buy_when_served(&third, &redis_dir, "takeover", "third").await;
    let after = wait_for_servers(&redis_dir, 1).await;
    assert_ne!(before, after);
    assert_eq!(second.sold("takeover").await, 3);
    assert_eq!(third.sold("takeover").await, 3);

    // The first gateway comes back and joins the running server.
    let back = Gateway::start(root.path()).await;
    assert_eq!(back.sold("takeover").await, 3);
    assert_eq!(servers_over(&redis_dir), after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateways_started_at_once_on_a_fresh_directory_start_one_server() {
    let root = tempfile::tempdir().unwrap();
    let redis_dir = root.path().join("redis");
    // Each with its own order database: what is shared here is the Redis data directory.
    let (a, b, c) = tokio::join!(
        Gateway::start_with_orders_in(root.path(), "a.db"),
        Gateway::start_with_orders_in(root.path(), "b.db"),
        Gateway::start_with_orders_in(root.path(), "c.db"),
    );
    assert_eq!(servers_over(&redis_dir).len(), 1);
    a.create_sale("race", 10).await;
    for (gateway, buyer) in [(&a, "a"), (&b, "b"), (&c, "c")] {
        assert_eq!(gateway.purchase("race", buyer).await.0, 202);
    }
    assert_eq!(c.sold("race").await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_server_that_dies_alone_is_started_again_by_its_gateway() {
    let root = tempfile::tempdir().unwrap();
    let redis_dir = root.path().join("redis");
    let gateway = Gateway::start(root.path()).await;
    gateway.create_sale("alone", 10).await;
    let before = wait_for_servers(&redis_dir, 1).await;
    let killed = Command::new("kill")
        .args(["-KILL", &before[0].to_string()])
        .status();
    assert!(killed.is_ok_and(|s| s.success()));
    wait_until_gone(&redis_dir, &before).await;
    buy_when_served(&gateway, &redis_dir, "alone", "after").await;
    let after = wait_for_servers(&redis_dir, 1).await;
    assert_ne!(before, after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_stopped_with_sigterm_has_stopped_its_redis_server_when_it_exits() {
    let root = tempfile::tempdir().unwrap();
    let redis_dir = root.path().join("redis");
    let mut gateway = Gateway::start(root.path()).await;
    assert_eq!(servers_over(&redis_dir).len(), 1);
    let status = gateway.terminate();
    assert!(status.success(), "{status}: {}", gateway.log());
    assert_eq!(servers_over(&redis_dir), Vec::<u32>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_uses_the_embedded_server_only_while_a_gateway_runs_it() {
    let root = tempfile::tempdir().unwrap();
    let mut gateway = Gateway::start(root.path()).await;
    gateway.create_sale("rec", 10).await;
    assert_eq!(gateway.purchase("rec", "a").await.0, 202);
    let reconcile = || {
        flashgate(root.path())
            .args(["reconcile", "--sale", "rec"])
            .output()
            .unwrap()
    };
    let running = reconcile();
    assert!(running.status.success(), "{running:?}");
    assert!(gateway.terminate().success());
    // The address file is still there, but no server: the tool says so instead of
    // connecting to whatever listens on that port now.
    let stopped = reconcile();
    assert!(!stopped.status.success());
    let stderr = String::from_utf8_lossy(&stopped.stderr);
    assert!(
        stderr.contains("no running embedded redis-server"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_refuses_to_start_a_second_server_beside_one_it_did_not_start() {
    let root = tempfile::tempdir().unwrap();
    let redis_dir = root.path().join("redis");
    std::fs::create_dir_all(&redis_dir).unwrap();
    // A redis-server over the directory that holds no lock (started by hand, or left by an
    // older flashgate), on the port the address file records.
    let port = free_port();
    let mut stray = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .arg("--dir")
        .arg(&redis_dir)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::fs::write(
        redis_dir.join("flashgate-redis.url"),
        format!("redis://127.0.0.1:{port}"),
    )
    .unwrap();
    wait_for_servers(&redis_dir, 1).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the stray server never listened");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let log = root.path().join("refused.log");
    let mut gateway = flashgate(root.path())
        .arg("serve")
        .env("FLASHGATE_HTTP__ADDR", format!("127.0.0.1:{}", free_port()))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = gateway.try_wait().unwrap() {
            break status;
        }
        let servers = servers_over(&redis_dir);
        if servers.len() > 1 || Instant::now() > deadline {
            gateway.kill().unwrap();
            let _ = stray.kill();
            panic!("the gateway did not refuse; servers {servers:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    stray.kill().unwrap();
    stray.wait().unwrap();
    assert!(!status.success());
    let log = std::fs::read_to_string(log).unwrap();
    assert!(log.contains("no gateway started"), "{log}");
}
