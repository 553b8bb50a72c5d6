//! A redis-server started by the gateway itself when no Redis is configured: the embedded
//! default for a single machine. It persists to an append-only file (fsync every second) in
//! the data directory, so accepted orders survive a gateway crash, and it stops with the
//! gateway.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// File in the data directory naming the running server's URL.
const URL_FILE: &str = "flashgate-redis.url";

/// Why the embedded redis-server did not start.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedRedisError {
    #[error("cannot prepare redis data directory {dir}")]
    DataDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot find a free loopback port")]
    Port(#[source] std::io::Error),
    #[error("cannot start `{binary}` (install it: scripts/install-deps.sh)")]
    Spawn {
        binary: String,
        #[source]
        source: std::io::Error,
    },
    #[error("redis-server on port {port} did not answer PING within 10 s")]
    NotReady { port: u16 },
}

/// `stream-node-max-entries` for flashgate's order streams (Redis's default is 100). The
/// writer deletes each persisted order from its stream, and `XDEL` walks the stream node
/// holding the entry from its start: with 16-entry nodes instead of 100 it costs a third
/// (measured 5.3 -> 1.9 us per call under the purchase benchmark). The same setting is
/// recommended for an external Redis (README, "Running Redis for flashgate").
pub const RECOMMENDED_STREAM_NODE: [&str; 2] = ["--stream-node-max-entries", "16"];

/// A running redis-server child process; killed when dropped.
#[derive(Debug)]
pub struct EmbeddedRedis {
    child: Child,
    port: u16,
}

impl EmbeddedRedis {
    /// Starts `binary` on a free loopback port with its data in `dir`, and waits until it
    /// answers PING.
    pub async fn start(binary: &str, dir: &Path) -> Result<Self, EmbeddedRedisError> {
        std::fs::create_dir_all(dir).map_err(|source| EmbeddedRedisError::DataDir {
            dir: dir.to_owned(),
            source,
        })?;
        let port = free_port().map_err(EmbeddedRedisError::Port)?;
        let child = Command::new(binary)
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--appendonly", "yes", "--appendfsync", "everysec"])
            .args(RECOMMENDED_STREAM_NODE)
            .args(["--save", "", "--protected-mode", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| EmbeddedRedisError::Spawn {
                binary: binary.to_owned(),
                source,
            })?;
        let server = Self { child, port };
        server.wait_ready().await?;
        // Lets `flashgate reconcile` find the running server.
        let _ = std::fs::write(dir.join(URL_FILE), server.url());
        Ok(server)
    }

    /// The URL of the embedded server a running gateway started with its data in `dir`.
    pub fn running_url(dir: &Path) -> Option<String> {
        std::fs::read_to_string(dir.join(URL_FILE))
            .ok()
            .map(|s| s.trim().to_owned())
    }

    /// The URL to connect to.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn wait_ready(&self) -> Result<(), EmbeddedRedisError> {
        for _ in 0..200 {
            if ping(self.port).await {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(EmbeddedRedisError::NotReady { port: self.port })
    }

    /// Stops the server cleanly (`SHUTDOWN` flushes the append-only file), killing it if
    /// it has not exited within 5 s.
    pub async fn stop(mut self) {
        if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)).await {
            let _ = stream.write_all(b"SHUTDOWN\r\n").await;
        }
        let exited = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
        if exited.is_err() {
            let _ = self.child.kill().await;
        }
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

async fn ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    let mut reply = [0u8; 7];
    stream.write_all(b"PING\r\n").await.is_ok()
        && stream.read_exact(&mut reply).await.is_ok()
        && &reply == b"+PONG\r\n"
}
