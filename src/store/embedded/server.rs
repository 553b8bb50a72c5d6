//! One redis-server process over a data directory, tied to the gateway that started it.
//!
//! The server runs under `sh` (`LIFELINE`), whose standard input is a pipe from the
//! gateway. A watcher in that shell reads the pipe; at end-of-file, which the kernel delivers
//! when the gateway closes it or exits however it exits (SIGKILL included), it stops the
//! server with SIGTERM (Redis then flushes its append-only file). The shell exits when the
//! server does. Its standard output is the data directory's locked lock file, inherited by
//! the server: the lock stays held until both have exited, so no other server can start
//! over the directory before this one is gone. The shell leads its own process group, so a
//! Ctrl-C at the terminal reaches only the gateway, which stops the server itself.

use std::fs::File;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::process::{Child, ChildStdin, Command};
use tokio::time::{Instant, sleep, timeout};

use super::data_dir::{DataDir, url_of};
use super::{EmbeddedRedisError, RECOMMENDED_AOF_REWRITE, RECOMMENDED_STREAM_NODE};

/// Starts `"$@"` (redis-server and its arguments) and stops it when standard input ends.
/// fd 3 carries the pipe to the watcher: a background job's standard input would be
/// /dev/null otherwise. The watcher's output is /dev/null, so it never holds the lock.
const LIFELINE: &str = r#"exec 3<&0 0</dev/null
"$@" 3<&- &
server=$!
( while read -r _; do :; done; kill -TERM "$server" 2>/dev/null ) <&3 >/dev/null 2>&1 &
watcher=$!
exec 3<&-
wait "$server"
status=$?
kill "$watcher" 2>/dev/null
exit "$status""#;

/// Most time a server has to load its data and answer.
const READY_WITHIN: Duration = Duration::from_secs(60);
/// Most time a server has to flush and exit once asked to stop.
const STOP_WITHIN: Duration = Duration::from_secs(10);

/// A running server: the supervising shell, and the write end of its lifeline.
#[derive(Debug)]
pub struct ServerProcess {
    shell: Child,
    lifeline: Option<ChildStdin>,
}

impl ServerProcess {
    /// Starts `binary` on the loopback `port` over `dir`, handing it `lock` (the data
    /// directory's lock, held), and waits until it serves.
    pub async fn start(
        binary: &str,
        dir: &DataDir,
        port: u16,
        lock: File,
    ) -> Result<Self, EmbeddedRedisError> {
        let mut shell = Command::new("sh")
            .args(["-c", LIFELINE, "flashgate-redis", binary])
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--appendonly", "yes", "--appendfsync", "everysec"])
            .args(RECOMMENDED_STREAM_NODE)
            .args(RECOMMENDED_AOF_REWRITE)
            .args(["--save", "", "--protected-mode", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(dir.path())
            .arg("--logfile")
            .arg(dir.log_path())
            .stdin(Stdio::piped())
            .stdout(Stdio::from(lock))
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()
            .map_err(|source| EmbeddedRedisError::Spawn {
                binary: binary.to_owned(),
                source,
            })?;
        let lifeline = shell.stdin.take();
        let mut server = Self { shell, lifeline };
        server.wait_ready(binary, dir, port).await?;
        Ok(server)
    }

    async fn wait_ready(
        &mut self,
        binary: &str,
        dir: &DataDir,
        port: u16,
    ) -> Result<(), EmbeddedRedisError> {
        let deadline = Instant::now() + READY_WITHIN;
        while Instant::now() < deadline {
            if let Some(status) = self.exit_status() {
                return Err(EmbeddedRedisError::Exited {
                    binary: binary.to_owned(),
                    status,
                    log: dir.log_path(),
                });
            }
            if serves(port, dir).await {
                return Ok(());
            }
            sleep(Duration::from_millis(50)).await;
        }
        Err(EmbeddedRedisError::NotReady { port })
    }

    /// The shell's exit status once it (and so the server) has exited.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.shell.try_wait().ok().flatten()
    }

    /// Stops the server (SIGTERM through the lifeline: the append-only file is flushed)
    /// and waits, bounded, until it has exited.
    pub async fn stop(mut self) {
        drop(self.lifeline.take());
        if timeout(STOP_WITHIN, self.shell.wait()).await.is_err() {
            tracing::error!(
                "embedded redis-server still running {STOP_WITHIN:?} after it was asked to stop"
            );
        }
    }
}

/// Whether a server on the loopback `port` serves `dir` and is ready for commands (not
/// loading its data). Checking the directory, not only PING, keeps a gateway from joining
/// another program that happens to listen on a port recorded earlier.
pub async fn serves(port: u16, dir: &DataDir) -> bool {
    let probe = async {
        let client = redis::Client::open(url_of(port))?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        let (config, _pong): (Vec<String>, String) = redis::pipe()
            .cmd("CONFIG")
            .arg("GET")
            .arg("dir")
            .cmd("PING")
            .query_async(&mut conn)
            .await?;
        Ok::<_, redis::RedisError>(config)
    };
    match timeout(Duration::from_secs(1), probe).await {
        Ok(Ok(config)) => config.get(1).map(std::path::Path::new) == Some(dir.path()),
        _ => false,
    }
}
