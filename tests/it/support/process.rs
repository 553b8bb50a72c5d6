//! The gateway as a real child process (the `flashgate` binary), for tests that kill it.

use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::app::{ADMIN_TOKEN, JWT_SECRET};
use super::redis::free_port;

/// A `flashgate serve` child process and how to start it again.
pub struct GatewayProcess {
    child: Option<Child>,
    port: u16,
    env: Vec<(String, String)>,
    /// Arguments after `serve` (e.g. `--config FILE`).
    args: Vec<String>,
    /// Where its stderr (the log) goes; discarded when `None`.
    log: Option<std::path::PathBuf>,
}

impl GatewayProcess {
    /// Starts the binary on a free port with `env` (FLASHGATE_* overrides) on top of the
    /// test secrets, and waits until it is ready.
    pub async fn start(env: &[(&str, String)]) -> Self {
        Self::start_with_args(env, &[]).await
    }

    /// As [`Self::start`], with the log (stderr) appended to `log`.
    pub async fn start_logging_to(env: &[(&str, String)], log: &std::path::Path) -> Self {
        Self::start_inner(env, &[], Some(log.to_owned())).await
    }

    /// As [`Self::start`], passing `args` to `flashgate serve`.
    pub async fn start_with_args(env: &[(&str, String)], args: &[&str]) -> Self {
        Self::start_inner(env, args, None).await
    }

    async fn start_inner(
        env: &[(&str, String)],
        args: &[&str],
        log: Option<std::path::PathBuf>,
    ) -> Self {
        let port = free_port();
        let mut all = vec![
            (
                "FLASHGATE_HTTP__ADDR".to_owned(),
                format!("127.0.0.1:{port}"),
            ),
            (
                "FLASHGATE_AUTH__JWT_SECRET".to_owned(),
                JWT_SECRET.to_owned(),
            ),
            ("FLASHGATE_ADMIN__TOKEN".to_owned(), ADMIN_TOKEN.to_owned()),
            // As in-process test apps: stock tests buy without purchase tokens.
            (
                "FLASHGATE_TOKENS__REQUIRE_PURCHASE_TOKEN".to_owned(),
                "false".to_owned(),
            ),
            // Nor about one buyer's pace (retries after a kill come in quick succession).
            (
                "FLASHGATE_LIMITS__USER__RATE_PER_SEC".to_owned(),
                "0".to_owned(),
            ),
        ];
        all.extend(env.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
        let mut process = Self {
            child: None,
            port,
            env: all,
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            log,
        };
        process.spawn().await;
        process
    }

    /// The base URL.
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn spawn(&mut self) {
        let stderr = match &self.log {
            Some(path) => Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .expect("the log file opens"),
            ),
            None => Stdio::null(),
        };
        // RUST_LOG=warn unless the caller's env says otherwise.
        let child = Command::new(env!("CARGO_BIN_EXE_flashgate"))
            .arg("serve")
            .args(&self.args)
            .env("RUST_LOG", "warn")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("flashgate binary starts");
        self.child = Some(child);
        self.wait_ready().await;
    }

    async fn wait_ready(&mut self) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let ready = client
                .get(format!("{}/health/ready", self.base()))
                .send()
                .await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("gateway exited during start-up: {status}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("gateway not ready within 30 s");
    }

    /// Sends `signal` (e.g. `-HUP`) to the running gateway.
    pub fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("running");
        let sent = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status();
        assert!(sent.is_ok_and(|s| s.success()), "kill {signal} failed");
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the binary again on the same port with the same settings.
    pub async fn restart(&mut self) {
        self.kill9();
        self.spawn().await;
    }

    /// SIGTERM, then waits (bounded) for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -TERM failed");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "gateway did not exit within 60 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs `flashgate <args>` with this gateway's settings; returns (exit status, stdout).
    pub fn run_cli(&self, args: &[&str]) -> (ExitStatus, String) {
        let output = Command::new(env!("CARGO_BIN_EXE_flashgate"))
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .expect("flashgate binary runs");
        (
            output.status,
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}
