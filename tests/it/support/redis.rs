//! Real `redis-server` processes for integration tests: one node ([`RedisServer`]) or a
//! three-master cluster ([`RedisCluster`], optionally with a replica per master that takes
//! over when its master is killed), on free loopback ports, each node in its own temp
//! dir, killed on drop (also while a panicking test unwinds). No mocks, no Docker.
//!
//! Starting blocks the calling thread (a node is ready in ~50 ms, a cluster in a few seconds),
//! which is fine at the top of a `#[tokio::test]`. Do not keep servers in `static`s: statics are
//! never dropped, so their processes would outlive the test binary.

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

const HOST: &str = "127.0.0.1";
const INSTALL_HINT: &str = "run `scripts/install-deps.sh` (Debian: apt-get install redis-server)";
/// Redis Cluster's bus listens on the client port plus this offset.
const CLUSTER_BUS_OFFSET: u16 = 10_000;
const READY_TIMEOUT: Duration = Duration::from_secs(10);
const CLUSTER_TIMEOUT: Duration = Duration::from_secs(30);
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// Fresh-port attempts before giving up: another test may grab a port between probe and bind.
const START_ATTEMPTS: usize = 5;
const CLUSTER_MASTERS: usize = 3;
/// Extra `redis-server` options, as (name, value) pairs.
type Options = &'static [(&'static str, &'static str)];
const CLUSTER_OPTIONS: Options = &[
    ("--cluster-enabled", "yes"),
    ("--cluster-config-file", "nodes.conf"),
    ("--cluster-node-timeout", "5000"),
];
/// Cluster nodes that declare a silent master failed after a second, so that its replica
/// takes over quickly in failover tests.
const FAILOVER_OPTIONS: Options = &[
    ("--cluster-enabled", "yes"),
    ("--cluster-config-file", "nodes.conf"),
    ("--cluster-node-timeout", "1000"),
    // A replica's first sync at once, not after the default 5 s wait for more replicas.
    ("--repl-diskless-sync-delay", "0"),
];

/// Returns a loopback port that was free a moment ago (bind `127.0.0.1:0`, read it, drop it).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind((HOST, 0)).expect("bind 127.0.0.1:0 to find a free port");
    listener
        .local_addr()
        .expect("read the bound address")
        .port()
}

/// Returns a free loopback port whose cluster bus port (`port + 10000`) is free as well.
pub fn free_cluster_port() -> u16 {
    for _ in 0..100 {
        let port = free_port();
        let Some(bus) = port.checked_add(CLUSTER_BUS_OFFSET) else {
            continue;
        };
        if TcpListener::bind((HOST, bus)).is_ok() {
            return port;
        }
    }
    panic!("found no free port P on {HOST} with P+{CLUSTER_BUS_OFFSET} free too");
}

/// A `redis-server` child process on a loopback port, with append-only persistence in a temp
/// dir. The port and dir outlive [`stop`](Self::stop), so [`restart`](Self::restart) brings
/// the same server back. Killed on drop.
pub struct RedisServer {
    port: u16,
    /// Root of the temp dir: `redis.log` (stdout and stderr) and `data/` (`--dir`).
    root: TempDir,
    /// Options beyond the standalone defaults (cluster mode).
    extra_options: Options,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a standalone server on a free port and waits until it answers.
    pub fn start() -> Self {
        Self::start_with(free_port, &[])
    }

    /// Starts a cluster-enabled node (not yet part of any cluster); see [`RedisCluster`].
    fn start_cluster_node(options: Options) -> Self {
        Self::start_with(free_cluster_port, options)
    }

    /// Starts on ports from `pick_port` until one start succeeds, retrying port races.
    fn start_with(pick_port: fn() -> u16, extra_options: Options) -> Self {
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            let mut server = Self::new(pick_port(), extra_options);
            match server.launch() {
                Ok(()) => return server,
                Err(why) => failures.push(why),
            }
        }
        panic!(
            "redis-server failed to start {START_ATTEMPTS} times:\n{}",
            failures.join("\n")
        );
    }

    /// Prepares (without launching) a server on `port` in a fresh temp dir.
    fn new(port: u16, extra_options: Options) -> Self {
        let root = tempfile::Builder::new()
            .prefix("flashgate-redis-")
            .tempdir()
            .expect("create a temp dir for redis-server");
        fs::create_dir(root.path().join("data")).expect("create the redis data dir");
        Self {
            port,
            root,
            extra_options,
            child: None,
        }
    }

    /// The `redis://` URL clients connect to.
    pub fn url(&self) -> String {
        format!("redis://{HOST}:{}", self.port)
    }

    /// The loopback port the server listens on (the same across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The process id while running, e.g. to `SIGSTOP` the server in a fault test.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process is alive (a crashed or stopped server is not).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// Kills the process with `SIGKILL` and reaps it; the port and data dir are kept.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Errors mean it already exited, which is what we want.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server if running, then starts it again on the same port and dir. Data
    /// written before the stop survives (append-only file); the script cache never does.
    pub fn restart(&mut self) {
        self.stop();
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            match self.launch() {
                Ok(()) => return,
                Err(why) => failures.push(why),
            }
            // A test probing for free ports may hold ours for a moment.
            thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "redis-server failed to restart on its old port:\n{}",
            failures.join("\n")
        );
    }

    /// Like [`restart`](Self::restart), but deletes the data dir first: no keys, no scripts.
    pub fn restart_empty(&mut self) {
        self.stop();
        let data = self.data_dir();
        fs::remove_dir_all(&data).expect("delete the redis data dir");
        fs::create_dir(&data).expect("recreate the redis data dir");
        self.restart();
    }

    /// The last lines of the server's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    fn data_dir(&self) -> PathBuf {
        self.root.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.root.path().join("redis.log")
    }

    /// Spawns the process and waits until it answers; on failure it is killed and reaped.
    fn launch(&mut self) -> Result<(), String> {
        self.child = Some(self.spawn());
        let outcome = self.wait_until_ready();
        if outcome.is_err() {
            self.stop();
        }
        outcome.map_err(|why| format!("port {}: {why}\n{}", self.port, self.log_tail()))
    }

    /// Spawns `redis-server` with its output appended to `redis.log`.
    fn spawn(&self) -> Child {
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path());
        let log = log.expect("open redis.log");
        let stderr = log.try_clone().expect("clone the redis.log handle");
        Command::new("redis-server")
            .args(self.args())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|err| panic_spawn("redis-server", &err))
    }

    /// Command-line arguments: loopback only, append-only persistence, no RDB snapshots.
    fn args(&self) -> Vec<String> {
        let data = self.data_dir().to_string_lossy().into_owned();
        let port = self.port.to_string();
        let options = [
            ("--port", port.as_str()),
            ("--bind", HOST),
            ("--save", ""),
            ("--appendonly", "yes"),
            ("--appendfsync", "everysec"),
            ("--dir", data.as_str()),
            ("--daemonize", "no"),
            ("--protected-mode", "no"),
        ];
        let options = options.iter().chain(self.extra_options);
        options
            .flat_map(|(name, value)| [name.to_string(), value.to_string()])
            .collect()
    }

    /// Polls `INFO` until *this* process (not another test's server on a reused port) answers
    /// with its data loaded.
    fn wait_until_ready(&mut self) -> Result<(), String> {
        let pid = self.pid().expect("wait_until_ready runs after spawn");
        let ours = format!("process_id:{pid}");
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                return Err(format!("redis-server exited early ({status})"));
            }
            let info = query(self.port, &["INFO", "server", "persistence"]).unwrap_or_default();
            if has_line(&info, &ours) && has_line(&info, "loading:0") {
                return Ok(());
            }
            thread::sleep(POLL_INTERVAL);
        }
        Err(format!("no answer within {READY_TIMEOUT:?}"))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A Redis Cluster of three masters covering all 16384 slots, without or with one replica
/// each, each node a [`RedisServer`] in its own temp dir. Killed on drop.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts three nodes, joins them with `redis-cli --cluster create`, and waits until every
    /// node reports `cluster_state:ok`.
    pub fn start() -> Self {
        Self::start_nodes(CLUSTER_OPTIONS, 0)
    }

    /// Starts three masters and one replica each (append-only file on, as every node), with a
    /// one-second `cluster-node-timeout`: a killed master's replica is promoted within a few
    /// seconds. Nodes `0..3` start as the masters.
    pub fn start_with_replicas() -> Self {
        Self::start_nodes(FAILOVER_OPTIONS, 1)
    }

    fn start_nodes(options: Options, replicas: usize) -> Self {
        // Nodes are owned by `cluster` before anything can panic, so they die with it.
        let mut cluster = Self { nodes: Vec::new() };
        for _ in 0..CLUSTER_MASTERS * (1 + replicas) {
            cluster.nodes.push(RedisServer::start_cluster_node(options));
        }
        cluster.create(replicas);
        cluster.wait_until_ok();
        cluster.wait_until_replicas_synced();
        cluster
    }

    /// Waits until every replica finished its first sync (a replica that never synced cannot
    /// take over from its master).
    fn wait_until_replicas_synced(&self) {
        let deadline = Instant::now() + CLUSTER_TIMEOUT;
        while Instant::now() < deadline {
            let synced = self.nodes.iter().all(|node| {
                let info = query(node.port(), &["INFO", "replication"]).unwrap_or_default();
                has_line(&info, "role:master") || has_line(&info, "master_link_status:up")
            });
            if synced {
                return;
            }
            thread::sleep(Duration::from_millis(100));
        }
        panic!("replicas not synced within {CLUSTER_TIMEOUT:?}");
    }

    /// Indexes (into [`Self::nodes`]) of the running nodes that are masters now.
    pub fn masters(&mut self) -> Vec<usize> {
        let mut masters = Vec::new();
        for (index, node) in self.nodes.iter_mut().enumerate() {
            let info = if node.is_running() {
                query(node.port(), &["INFO", "replication"]).unwrap_or_default()
            } else {
                String::new()
            };
            if has_line(&info, "role:master") {
                masters.push(index);
            }
        }
        masters
    }

    /// Kills node `index` with `SIGKILL` (its data dir is kept for [`Self::restart`]).
    pub fn kill(&mut self, index: usize) {
        self.nodes[index].stop();
    }

    /// Waits until the running nodes count three masters again (a killed master's replica
    /// was promoted) and every running node reports `cluster_state:ok`.
    pub fn wait_until_failed_over(&mut self) {
        let deadline = Instant::now() + CLUSTER_TIMEOUT;
        while Instant::now() < deadline {
            if self.masters().len() == CLUSTER_MASTERS && self.running_nodes_ok() {
                return;
            }
            thread::sleep(Duration::from_millis(100));
        }
        panic!("no replica was promoted within {CLUSTER_TIMEOUT:?}");
    }

    /// Starts the killed node `index` again on its port and data dir, and waits until it
    /// rejoined as a replica with its replication link up.
    pub fn restart(&mut self, index: usize) {
        self.nodes[index].restart();
        let deadline = Instant::now() + CLUSTER_TIMEOUT;
        let port = self.nodes[index].port();
        let mut last = String::new();
        while Instant::now() < deadline {
            last = query(port, &["INFO", "replication"]).unwrap_or_default();
            let replica = has_line(&last, "role:slave") && has_line(&last, "master_link_status:up");
            if replica && self.running_nodes_ok() {
                return;
            }
            thread::sleep(Duration::from_millis(100));
        }
        panic!("node {index} did not rejoin as a replica within {CLUSTER_TIMEOUT:?}:\n{last}");
    }

    /// Whether every running node reports `cluster_state:ok`.
    fn running_nodes_ok(&mut self) -> bool {
        self.nodes.iter_mut().all(|node| {
            !node.is_running()
                || query(node.port(), &["CLUSTER", "INFO"])
                    .is_ok_and(|info| has_line(&info, "cluster_state:ok"))
        })
    }

    /// The `redis://` URLs of all nodes, e.g. for `ClusterClient::new`.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// The nodes, e.g. to talk to one directly.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// Assigns the slots with `redis-cli --cluster create`: the first three nodes become
    /// masters, the others their replicas.
    fn create(&self, replicas: usize) {
        let addresses = self
            .nodes
            .iter()
            .map(|node| format!("{HOST}:{}", node.port()));
        let output = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(addresses)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|err| panic_spawn("redis-cli", &err));
        if !output.status.success() {
            panic!(
                "`redis-cli --cluster create` failed:\n{}",
                describe(&output)
            );
        }
    }

    /// Polls `CLUSTER INFO` on every node until all agree the cluster is whole.
    fn wait_until_ok(&self) {
        let deadline = Instant::now() + CLUSTER_TIMEOUT;
        let mut last = String::new();
        while Instant::now() < deadline {
            match self.first_unready_node() {
                None => return,
                Some(report) => last = report,
            }
            thread::sleep(Duration::from_millis(100));
        }
        panic!("Redis Cluster not ok within {CLUSTER_TIMEOUT:?}; last report: {last}");
    }

    /// `None` when every node is ok, else what the first node that is not ok said.
    fn first_unready_node(&self) -> Option<String> {
        let known = format!("cluster_known_nodes:{}", self.nodes.len());
        self.nodes
            .iter()
            .find_map(|node| match query(node.port(), &["CLUSTER", "INFO"]) {
                Ok(info) if has_line(&info, "cluster_state:ok") && has_line(&info, &known) => None,
                Ok(info) => Some(format!("port {}:\n{info}", node.port())),
                Err(err) => Some(format!("port {}: {err}", node.port())),
            })
    }
}

/// Sends one command over a fresh connection and returns its status or bulk-string reply.
fn query(port: u16, args: &[&str]) -> io::Result<String> {
    let mut stream = TcpStream::connect((HOST, port))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.write_all(&encode(args))?;
    let mut reader = BufReader::new(stream);
    let mut header = String::new();
    reader.read_line(&mut header)?;
    let header = header.trim_end();
    match header.split_at_checked(1) {
        Some(("+", status)) => Ok(status.to_owned()),
        Some(("$", len)) => read_bulk(&mut reader, len),
        _ => Err(io::Error::other(format!("unexpected reply {header:?}"))),
    }
}

/// Encodes a command as a RESP array of bulk strings.
fn encode(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len());
    for arg in args {
        out.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
    }
    out.into_bytes()
}

/// Reads a bulk-string body of `len` bytes plus its trailing CRLF.
fn read_bulk(reader: &mut impl Read, len: &str) -> io::Result<String> {
    let len: usize = len.parse().map_err(io::Error::other)?;
    let mut body = vec![0; len + 2];
    reader.read_exact(&mut body)?;
    body.truncate(len);
    String::from_utf8(body).map_err(io::Error::other)
}

/// Whether `text` has a line equal to `wanted` (Redis ends lines with CRLF).
fn has_line(text: &str, wanted: &str) -> bool {
    text.lines().any(|line| line.trim_end() == wanted)
}

/// Exit status and output of a finished command, for failure messages.
fn describe(output: &Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    format!("{}\nstdout:\n{stdout}\nstderr:\n{stderr}", output.status)
}

/// Panics on a failed spawn, pointing at the install script when the binary is missing.
fn panic_spawn(program: &str, err: &io::Error) -> ! {
    if err.kind() == io::ErrorKind::NotFound {
        panic!("`{program}` is not on PATH: {INSTALL_HINT}");
    }
    panic!("could not start `{program}`: {err}");
}
