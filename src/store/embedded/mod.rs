//! A redis-server started by the gateway itself when no Redis is configured: the embedded
//! default for a single host. It persists to an append-only file (fsync every second) in
//! the data directory, so accepted orders survive a gateway crash.
//!
//! Every gateway on one data directory uses one server, and there is never more than one
//! server per data directory, whatever is killed when:
//! - a gateway starts a server only while holding the directory's lock, and hands the
//!   lock to the server, which holds it until it has exited (`server`);
//! - the server stops when the gateway that started it exits, however it exits (a pipe,
//!   `server`), so none is left running without that gateway;
//! - a gateway that finds the lock held joins the server named by the address file, once
//!   that server reports this directory as its own (`data_dir`, `server::serves`);
//! - every gateway watches the lock (`supervisor`): when it comes free (the starting
//!   gateway stopped or died, or the server died), one gateway starts a new server over
//!   the same data and port, and every gateway's connection reconnects to it.
//!
//! It is single-host only: gateways on other hosts cannot see the lock and would each start
//! a server, each with the whole stock. Start-up says so in the log.

mod data_dir;
mod server;
mod supervisor;

use std::path::{Path, PathBuf};
use std::process::ExitStatus;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use data_dir::{DataDir, url_of};
use supervisor::Supervisor;

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
    #[error("cannot start `sh` to supervise `{binary}`")]
    Spawn {
        binary: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "`{binary}` exited during start-up with {status} (127: not installed, see scripts/install-deps.sh; otherwise see {log})"
    )]
    Exited {
        binary: String,
        status: ExitStatus,
        log: PathBuf,
    },
    #[error("redis-server on port {port} did not serve its data directory in time")]
    NotReady { port: u16 },
    #[error(
        "a redis-server that no gateway started runs over {dir} on port {port}; stop it first (two servers over one directory would be two stocks)"
    )]
    Unmanaged { port: u16, dir: PathBuf },
}

/// `stream-node-max-entries` for flashgate's order streams (Redis's default is 100). The
/// writer deletes each persisted order from its stream, and `XDEL` walks the stream node
/// holding the entry from its start: with 16-entry nodes instead of 100 it costs a third
/// (measured 5.3 -> 1.9 us per call under the purchase benchmark). The same setting is
/// recommended for an external Redis (README, "Running Redis for flashgate").
pub const RECOMMENDED_STREAM_NODE: [&str; 2] = ["--stream-node-max-entries", "16"];

/// `auto-aof-rewrite-percentage` (Redis's default is 100): how far the append-only file grows
/// past its last rewrite before Redis rewrites it. A purchase adds ~450 bytes to the file and
/// ~115 to a rewrite's snapshot, and a rewrite forks Redis and writes every record out again,
/// so at 100 each purchase costs about four records' rewriting, ~7.6 us of CPU; at 400 a
/// quarter of that, for a file up to five times the snapshot between rewrites
/// (docs/BENCHMARKS.md §8). The same setting is recommended for an external Redis (README).
pub const RECOMMENDED_AOF_REWRITE: [&str; 2] = ["--auto-aof-rewrite-percentage", "400"];

/// The embedded server as this gateway uses it: started here or joined, and supervised
/// until [`EmbeddedRedis::stop`] (or until dropped).
#[derive(Debug)]
pub struct EmbeddedRedis {
    port: u16,
    stop: oneshot::Sender<()>,
    supervisor: JoinHandle<()>,
}

impl EmbeddedRedis {
    /// Joins the server over `dir` if one is running (or being started), else starts
    /// `binary` over it on a loopback port; waits until it serves, then keeps watching.
    pub async fn start(binary: &str, dir: &Path) -> Result<Self, EmbeddedRedisError> {
        let data = DataDir::create(dir).map_err(|source| EmbeddedRedisError::DataDir {
            dir: dir.to_owned(),
            source,
        })?;
        let supervisor = Supervisor::new(binary, data);
        let (port, started) = supervisor.join_or_start().await?;
        tracing::warn!(
            url = %url_of(port),
            dir = %dir.display(),
            role = if started.is_some() { "started" } else { "joined" },
            "embedded redis-server: single-host only. Gateways share it through its data \
             directory on this host; a gateway on another host would start its own server \
             and sell the whole stock again. Configure redis.url or redis.cluster_urls to \
             run on more than one host."
        );
        let (stop, stopped) = oneshot::channel();
        let supervisor = tokio::spawn(supervisor.run(port, started, stopped));
        Ok(Self {
            port,
            stop,
            supervisor,
        })
    }

    /// The URL of the server running over `dir`, if one is: for tools such as
    /// `flashgate reconcile` that use a running gateway's Redis.
    pub fn running_url(dir: &Path) -> Option<String> {
        let data = DataDir::existing(dir).ok()?;
        let server_alive = data.try_lock().ok()?.is_none();
        server_alive.then(|| data.recorded_port().map(url_of))?
    }

    /// The URL to connect to.
    pub fn url(&self) -> String {
        url_of(self.port)
    }

    /// Stops watching, and stops the server if this gateway runs it (other gateways on the
    /// data directory then start a new one).
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.supervisor.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_url_is_running_over_a_directory_whose_lock_is_free() {
        let tmp = tempfile::tempdir().unwrap();
        let data = DataDir::create(tmp.path()).unwrap();
        data.record_port(6391).unwrap();
        assert_eq!(EmbeddedRedis::running_url(tmp.path()), None);
        let _held = data.try_lock().unwrap().unwrap();
        assert_eq!(
            EmbeddedRedis::running_url(tmp.path()).as_deref(),
            Some("redis://127.0.0.1:6391")
        );
    }
}
