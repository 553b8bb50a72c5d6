//! A real PostgreSQL server ([`PostgresServer`]) for integration tests: a fresh cluster made
//! by `initdb` in a temp dir, a `postgres` child process on a free loopback port, the
//! superuser `postgres` with trust auth, killed on drop (also while a panicking test unwinds).
//! No mocks, no Docker.
//!
//! `initdb` and `postgres` refuse to run as root, so when the tests run as root both run as the
//! `postgres` system user (installed with Debian's `postgresql` package). The switch happens in
//! the forked child itself (`CommandExt::uid`/`gid`), not through `su`, so the child we hold
//! *is* the postmaster and `SIGKILL` reaches it directly.
//!
//! Starting blocks the calling thread (`initdb` plus start take about a second), which is fine
//! at the top of a `#[tokio::test]`. Do not keep servers in `static`s: statics are never
//! dropped, so their processes would outlive the test binary.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::redis::free_port;

const HOST: &str = "127.0.0.1";
const SUPERUSER: &str = "postgres";
const INSTALL_HINT: &str = "run `scripts/install-deps.sh` (Debian: apt-get install postgresql)";
/// Where Debian installs each major version's binaries (`/usr/lib/postgresql/15/bin`).
const DEBIAN_ROOT: &str = "/usr/lib/postgresql";
const PREFERRED_MAJOR: &str = "15";
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const KILL_TIMEOUT: Duration = Duration::from_secs(10);
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// Fresh-port attempts before giving up: another test may grab a port between probe and bind.
const START_ATTEMPTS: usize = 5;
/// The lock file the postmaster writes into its data dir; line 1 is its pid, line 8 its state.
const PID_FILE: &str = "postmaster.pid";
/// Server settings beyond the defaults: loopback only, no fsync, room for many pools.
const SETTINGS: &[&str] = &[
    "listen_addresses=127.0.0.1",
    "fsync=off",
    "max_connections=200",
];

/// Numbers the databases made by [`PostgresServer::fresh_database`].
static NEXT_DATABASE: AtomicU32 = AtomicU32::new(0);

/// A `postgres` child process on a loopback port, over a cluster made by `initdb` in a temp
/// dir. The port and data dir outlive [`stop`](PostgresServer::stop), so
/// [`start_again`](PostgresServer::start_again) brings the same data back. Killed on drop.
pub struct PostgresServer {
    port: u16,
    /// Root of the temp dir: `data/` (the cluster), `socket/` (`-k`) and `postgres.log`.
    root: TempDir,
    bin: PathBuf,
    /// The account `initdb` and `postgres` run as: `Some` when we are root.
    run_as: Option<Account>,
    child: Option<Child>,
}

/// A system user's numeric ids, from `/etc/passwd`.
#[derive(Clone, Copy)]
struct Account {
    uid: u32,
    gid: u32,
}

impl PostgresServer {
    /// Creates a cluster with `initdb`, starts it on a free port and waits until it accepts
    /// connections.
    pub fn start() -> Self {
        let mut server = Self::new();
        server.init_cluster();
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            server.port = free_port();
            match server.launch() {
                Ok(()) => return server,
                Err(why) => failures.push(why),
            }
        }
        panic!(
            "postgres failed to start {START_ATTEMPTS} times:\n{}",
            failures.join("\n")
        );
    }

    /// Prepares (without `initdb`) a temp dir the server's account can use.
    fn new() -> Self {
        let bin = bin_dir();
        let run_as = running_as_root().then(postgres_account);
        let root = tempfile::Builder::new()
            .prefix("flashgate-pg-")
            .tempdir()
            .expect("create a temp dir for postgres");
        // Temp dirs are 0700; the postgres user must be able to enter this one.
        fs::set_permissions(root.path(), fs::Permissions::from_mode(0o755))
            .expect("chmod the postgres temp dir");
        let server = Self {
            port: 0,
            root,
            bin,
            run_as,
            child: None,
        };
        server.make_owned_dir(&server.data_dir(), 0o700);
        server.make_owned_dir(&server.socket_dir(), 0o755);
        server
    }

    /// The loopback port the server listens on (the same across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of database `db`, as superuser `postgres` (trust auth, no password).
    pub fn url(&self, db: &str) -> String {
        format!("postgres://{SUPERUSER}@{HOST}:{}/{db}", self.port)
    }

    /// The cluster's data dir (also the working dir of all its processes).
    pub fn data_dir(&self) -> PathBuf {
        self.root.path().join("data")
    }

    /// The postmaster's process id while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the postmaster is alive (a crashed or stopped server is not).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// Creates database `name` with `psql`; panics if that fails (e.g. it exists).
    pub fn create_database(&self, name: &str) {
        let sql = format!("CREATE DATABASE {}", quote_identifier(name));
        let output = self
            .psql()
            .args(["-c", &sql])
            .output()
            .unwrap_or_else(|err| panic_spawn("psql", &err));
        if !output.status.success() {
            panic!("`{sql}` failed:\n{}", describe(&output));
        }
    }

    /// Creates a database with a name unused on this server and returns its URL.
    pub fn fresh_database(&self) -> String {
        let number = NEXT_DATABASE.fetch_add(1, Ordering::Relaxed);
        let name = format!("test_{}_{number}", std::process::id());
        self.create_database(&name);
        self.url(&name)
    }

    /// Simulates an outage: `SIGKILL`s the postmaster and every backend of this cluster, waits
    /// until they are gone, and removes the stale lock files. Port and data dir are kept.
    pub fn stop(&mut self) {
        if let Err(why) = self.kill_all() {
            panic!("{why}\n{}", self.log_tail());
        }
        self.remove_lock_files();
    }

    /// Black-holes the server: `SIGSTOP`s the postmaster and every backend, so connections
    /// stay open and nothing answers (what a dead host or a partition looks like to a
    /// client), until [`resume`](Self::resume).
    pub fn pause(&self) {
        signal_cluster(&self.data_dir(), "-STOP");
    }

    /// Lets a paused server run again (`SIGCONT`).
    pub fn resume(&self) {
        signal_cluster(&self.data_dir(), "-CONT");
    }

    /// Starts the server again on the same port and data dir (stopping it first if needed).
    /// Committed data survives: WAL is written even with `fsync=off`, and crash recovery
    /// replays it before the server accepts connections.
    pub fn start_again(&mut self) {
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
            "postgres failed to start again on its old port:\n{}",
            failures.join("\n")
        );
    }

    /// The last lines of the server's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    fn socket_dir(&self) -> PathBuf {
        self.root.path().join("socket")
    }

    fn log_path(&self) -> PathBuf {
        self.root.path().join("postgres.log")
    }

    /// Creates `dir` with `mode`, owned by the server's account.
    fn make_owned_dir(&self, dir: &Path, mode: u32) {
        fs::create_dir(dir).expect("create a postgres dir");
        fs::set_permissions(dir, fs::Permissions::from_mode(mode)).expect("chmod a postgres dir");
        if let Some(account) = self.run_as {
            std::os::unix::fs::chown(dir, Some(account.uid), Some(account.gid))
                .expect("chown a postgres dir to the postgres user");
        }
    }

    /// A command for one of the server binaries, run as the server's account.
    fn server_command(&self, program: &str) -> Command {
        let mut command = Command::new(self.bin.join(program));
        command.current_dir(self.root.path()).stdin(Stdio::null());
        if let Some(account) = self.run_as {
            command.uid(account.uid).gid(account.gid);
        }
        command
    }

    /// Runs `initdb`: superuser `postgres`, trust auth, no fsync.
    fn init_cluster(&self) {
        let output = self
            .server_command("initdb")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-A", "trust", "--no-sync", "-U", SUPERUSER])
            .args(["--encoding=UTF8", "--locale=C", "--no-instructions"])
            .output()
            .unwrap_or_else(|err| panic_spawn("initdb", &err));
        if !output.status.success() {
            panic!("initdb failed:\n{}", describe(&output));
        }
    }

    /// Spawns the postmaster and waits until it is ready; on failure everything is killed.
    fn launch(&mut self) -> Result<(), String> {
        self.child = Some(self.spawn());
        let outcome = self.wait_until_ready();
        if outcome.is_err() {
            let _ = self.kill_all();
            self.remove_lock_files();
        }
        outcome.map_err(|why| format!("port {}: {why}\n{}", self.port, self.log_tail()))
    }

    /// Spawns `postgres` with its output appended to `postgres.log`.
    fn spawn(&self) -> Child {
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path());
        let log = log.expect("open postgres.log");
        let stderr = log.try_clone().expect("clone the postgres.log handle");
        let settings = SETTINGS.iter().flat_map(|setting| ["-c", setting]);
        self.server_command("postgres")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-p", &self.port.to_string()])
            .arg("-k")
            .arg(self.socket_dir())
            .args(settings)
            .stdout(log)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|err| panic_spawn("postgres", &err))
    }

    /// Polls the lock file until *our* postmaster (not another test's server on a reused
    /// port) reports `ready`, which it does once it listens and recovery is done.
    fn wait_until_ready(&mut self) -> Result<(), String> {
        let pid = self.pid().expect("wait_until_ready runs after spawn");
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                return Err(format!("postgres exited early ({status})"));
            }
            if self.lock_file_says_ready(pid) {
                return Ok(());
            }
            thread::sleep(POLL_INTERVAL);
        }
        Err(format!("not ready within {READY_TIMEOUT:?}"))
    }

    /// Whether `postmaster.pid` names `pid` and the state `ready`.
    fn lock_file_says_ready(&self, pid: u32) -> bool {
        let lock = fs::read_to_string(self.data_dir().join(PID_FILE)).unwrap_or_default();
        let lines: Vec<&str> = lock.lines().map(str::trim).collect();
        lines.first() == Some(&pid.to_string().as_str()) && lines.get(7) == Some(&"ready")
    }

    /// `SIGKILL`s the postmaster (reaping it), then every leftover process of the cluster.
    fn kill_all(&mut self) -> Result<(), String> {
        if let Some(mut child) = self.child.take() {
            // Errors mean it already exited, which is what we want.
            let _ = child.kill();
            let _ = child.wait();
        }
        kill_cluster_processes(&self.data_dir())
    }

    /// Removes the lock files a killed postmaster leaves in the data and socket dirs.
    fn remove_lock_files(&self) {
        let socket_lock = format!(".s.PGSQL.{}.lock", self.port);
        for lock in [
            self.data_dir().join(PID_FILE),
            self.socket_dir().join(socket_lock),
        ] {
            // Missing means already clean.
            let _ = fs::remove_file(lock);
        }
    }

    /// A `psql` that runs one statement in database `postgres` and stops at the first error.
    fn psql(&self) -> Command {
        let mut command = Command::new(self.bin.join("psql"));
        command
            .args([
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                HOST,
                "-U",
                SUPERUSER,
            ])
            .args(["-p", &self.port.to_string(), "-d", "postgres"])
            .env("PGCONNECT_TIMEOUT", "10")
            .stdin(Stdio::null());
        command
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        // Never panic here: a panic while unwinding aborts the test binary.
        let _ = self.kill_all();
    }
}

/// The live processes of the cluster in `data_dir`: the postmaster chdirs into its data dir
/// and every backend and helper inherits that, whatever its retitled command line says.
pub fn cluster_processes(data_dir: &Path) -> Vec<u32> {
    let Ok(wanted) = data_dir.canonicalize() else {
        return Vec::new();
    };
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        // Zombies and exiting processes have no cwd any more, so they do not count.
        .filter(|pid| fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd == wanted))
        .collect()
}

/// Sends `signal` (e.g. `-STOP`) to every process of the cluster in `data_dir`.
fn signal_cluster(data_dir: &Path, signal: &str) {
    let pids = cluster_processes(data_dir);
    assert!(!pids.is_empty(), "no postgres process to signal");
    let sent = Command::new("kill")
        .arg(signal)
        .args(pids.iter().map(u32::to_string))
        .status();
    assert!(sent.is_ok_and(|s| s.success()), "kill {signal} failed");
}

/// `SIGKILL`s the processes of the cluster in `data_dir` until none is left.
fn kill_cluster_processes(data_dir: &Path) -> Result<(), String> {
    let deadline = Instant::now() + KILL_TIMEOUT;
    loop {
        let pids = cluster_processes(data_dir);
        if pids.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("postgres processes {pids:?} survived SIGKILL"));
        }
        // Failures are processes that exited meanwhile; the next scan checks.
        let _ = Command::new("kill")
            .arg("-9")
            .args(pids.iter().map(u32::to_string))
            .stderr(Stdio::null())
            .status();
        thread::sleep(POLL_INTERVAL);
    }
}

/// The dir holding `initdb`, `postgres` and `psql`: Debian's version 15 if installed, else its
/// highest version, else wherever `initdb` is on `PATH`.
fn bin_dir() -> PathBuf {
    let preferred = Path::new(DEBIAN_ROOT).join(PREFERRED_MAJOR).join("bin");
    let mut candidates = vec![preferred];
    candidates.extend(debian_bin_dirs_newest_first());
    candidates.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    candidates
        .into_iter()
        .find(|dir| dir.join("initdb").is_file())
        .unwrap_or_else(|| panic!("PostgreSQL's `initdb` was not found: {INSTALL_HINT}"))
}

/// `/usr/lib/postgresql/*/bin`, highest major version first.
fn debian_bin_dirs_newest_first() -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(DEBIAN_ROOT) else {
        return Vec::new();
    };
    let mut versions: Vec<(u32, PathBuf)> = entries
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let major = entry.file_name().to_str()?.parse().ok()?;
            Some((major, entry.path().join("bin")))
        })
        .collect();
    versions.sort_by_key(|(major, _)| std::cmp::Reverse(*major));
    versions.into_iter().map(|(_, dir)| dir).collect()
}

/// Whether this process runs as root (`/proc/self` belongs to the effective user).
fn running_as_root() -> bool {
    fs::metadata("/proc/self").is_ok_and(|meta| meta.uid() == 0)
}

/// The `postgres` system user's ids; panics if the user does not exist.
fn postgres_account() -> Account {
    let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            match fields.as_slice() {
                [SUPERUSER, _, uid, gid, ..] => Some(Account {
                    uid: uid.parse().ok()?,
                    gid: gid.parse().ok()?,
                }),
                _ => None,
            }
        })
        .unwrap_or_else(|| {
            panic!("running as root needs the `postgres` system user to run initdb: {INSTALL_HINT}")
        })
}

/// Quotes an SQL identifier (`"name"`, inner quotes doubled).
fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
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
        panic!("PostgreSQL's `{program}` was not found: {INSTALL_HINT}");
    }
    panic!("could not start `{program}`: {err}");
}
