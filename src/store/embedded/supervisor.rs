//! What every gateway on a data directory does about the embedded server: join the running
//! one or start one at start-up, then watch the directory's lock for as long as the gateway
//! runs and start a new server over the same data and port when the lock comes free.

use std::fs::File;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::{Instant, MissedTickBehavior, interval, sleep};

use super::EmbeddedRedisError;
use super::data_dir::{DataDir, free_port};
use super::server::{ServerProcess, serves};

/// How often a gateway checks whether the server is still alive (the lock still held).
const WATCH_EVERY: Duration = Duration::from_millis(250);
/// Most time a joining gateway waits for another one's server to serve.
const JOIN_WITHIN: Duration = Duration::from_secs(60);

/// The embedded server's keeper in one gateway.
pub struct Supervisor {
    binary: String,
    data: DataDir,
    /// Whether this gateway already reported that the server moved to another port.
    reported_move: bool,
}

impl Supervisor {
    /// A keeper that starts `binary` over `data` when no server is alive.
    pub fn new(binary: &str, data: DataDir) -> Self {
        Self {
            binary: binary.to_owned(),
            data,
            reported_move: false,
        }
    }

    /// Joins the server over the data directory, or starts one if none is alive: its port,
    /// and the server if this gateway started it.
    pub async fn join_or_start(&self) -> Result<(u16, Option<ServerProcess>), EmbeddedRedisError> {
        let deadline = Instant::now() + JOIN_WITHIN;
        loop {
            if let Some(lock) = self.try_lock()? {
                let port = match self.data.reusable_port() {
                    Some(port) => port,
                    None => free_port().map_err(EmbeddedRedisError::Port)?,
                };
                return Ok((port, Some(self.start(port, lock).await?)));
            }
            let recorded = self.data.recorded_port();
            if let Some(port) = recorded
                && serves(port, &self.data).await
            {
                return Ok((port, None));
            }
            if Instant::now() >= deadline {
                return Err(EmbeddedRedisError::NotReady {
                    port: recorded.unwrap_or(0),
                });
            }
            sleep(Duration::from_millis(50)).await;
        }
    }

    fn try_lock(&self) -> Result<Option<File>, EmbeddedRedisError> {
        self.data
            .try_lock()
            .map_err(|source| EmbeddedRedisError::DataDir {
                dir: self.data.path().to_owned(),
                source,
            })
    }

    /// Starts a server on `port`; the caller holds the lock, handed over to the server.
    /// With the lock held, no server started by a gateway is alive: one that answers for
    /// this directory on the recorded port was started some other way (by hand, or by an
    /// older flashgate), and a second one must not start beside it.
    async fn start(&self, port: u16, lock: File) -> Result<ServerProcess, EmbeddedRedisError> {
        if let Some(other) = self.data.recorded_port()
            && serves(other, &self.data).await
        {
            return Err(EmbeddedRedisError::Unmanaged {
                port: other,
                dir: self.data.path().to_owned(),
            });
        }
        self.data
            .record_port(port)
            .map_err(|source| EmbeddedRedisError::DataDir {
                dir: self.data.path().to_owned(),
                source,
            })?;
        ServerProcess::start(&self.binary, &self.data, port, lock).await
    }

    /// Watches the server on `port` until `stop` fires (or its sender is dropped), then
    /// stops the server if this gateway runs it.
    pub async fn run(
        mut self,
        port: u16,
        mut owned: Option<ServerProcess>,
        mut stop: oneshot::Receiver<()>,
    ) {
        let mut check = interval(WATCH_EVERY);
        check.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut stop => break,
                _ = check.tick() => {}
            }
            owned = self.check(port, owned).await;
        }
        if let Some(server) = owned {
            server.stop().await;
        }
    }

    async fn check(&mut self, port: u16, owned: Option<ServerProcess>) -> Option<ServerProcess> {
        match self.data.try_lock() {
            Ok(Some(lock)) => self.take_over(port, lock, owned).await,
            Ok(None) => {
                self.report_move(port);
                owned
            }
            Err(error) => {
                tracing::warn!(%error, dir = %self.data.path().display(), "cannot check the embedded redis-server's lock");
                owned
            }
        }
    }

    /// The lock came free: no server over the directory is alive. Starts one on the port
    /// every gateway here is connected to; their connections reconnect by themselves.
    async fn take_over(
        &self,
        port: u16,
        lock: File,
        old: Option<ServerProcess>,
    ) -> Option<ServerProcess> {
        let exited = old.and_then(|mut server| server.exit_status());
        tracing::warn!(
            port,
            dir = %self.data.path().display(),
            previous_exit = ?exited,
            "the embedded redis-server is gone; starting it again over the same data directory"
        );
        match self.start(port, lock).await {
            Ok(server) => Some(server),
            Err(error) => {
                tracing::error!(?error, port, "cannot start the embedded redis-server again");
                None
            }
        }
    }

    /// A gateway that started over this directory while this one ran found the port taken
    /// by another program and chose a new one: this gateway's connection cannot follow.
    fn report_move(&mut self, port: u16) {
        let recorded = self.data.recorded_port();
        if self.reported_move || recorded.is_none_or(|r| r == port) {
            return;
        }
        self.reported_move = true;
        tracing::error!(
            port,
            ?recorded,
            "the embedded redis-server now listens on another port; restart this gateway"
        );
    }
}
