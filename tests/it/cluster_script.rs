//! `scripts/cluster.sh`: the compose cluster topology as local processes. It starts six
//! Redis Cluster nodes (3 masters, 3 replicas), PostgreSQL, two gateways and nginx, prints
//! where they are as env lines, serves through the balancer, and stops every process by its
//! pid file, twice without harm.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Output};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Runs `scripts/cluster.sh COMMAND` with its state in `dir` and this build's gateway.
fn cluster_sh(command: &str, dir: &Path) -> Output {
    Command::new("bash")
        .arg(Path::new(ROOT).join("scripts/cluster.sh"))
        .arg(command)
        .env("CLUSTER_DIR", dir)
        .env("GATEWAY_BIN", env!("CARGO_BIN_EXE_flashgate"))
        .env("GATEWAYS", "2")
        .output()
        .expect("run scripts/cluster.sh")
}

/// The `NAME=value` lines of `text` (values unquoted).
fn env_lines(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| (name.to_owned(), value.trim_matches('\'').to_owned()))
        .collect()
}

/// Whether process `pid` is alive (not a zombie).
fn alive(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| !stat.rsplit(") ").next().unwrap_or("").starts_with('Z'))
}

#[tokio::test]
async fn cluster_sh_starts_the_topology_serves_through_the_balancer_and_stops_twice() {
    let dir = tempfile::Builder::new()
        .prefix("flashgate-cluster-sh-")
        .tempdir()
        .unwrap();
    let started = cluster_sh("start", dir.path());
    let stderr = String::from_utf8_lossy(&started.stderr).into_owned();
    let stdout = String::from_utf8_lossy(&started.stdout).into_owned();
    // Stop whatever started before any assertion can fail.
    let pids: Vec<String> = std::fs::read_dir(dir.path().join("pids"))
        .map(|entries| {
            entries
                .filter_map(|e| std::fs::read_to_string(e.unwrap().path()).ok())
                .map(|pid| pid.trim().to_owned())
                .collect()
        })
        .unwrap_or_default();
    let served = async {
        let env = env_lines(&stdout);
        let url = env.get("CLUSTER_URL")?;
        let ready = reqwest::get(format!("{url}/health/ready")).await.ok()?;
        Some((env.clone(), ready.status().as_u16()))
    }
    .await;
    let stopped = cluster_sh("stop", dir.path());
    let again = cluster_sh("stop", dir.path());
    let status = cluster_sh("status", dir.path());

    assert!(started.status.success(), "start failed:\n{stderr}");
    let (env, ready) = served.expect("env lines with CLUSTER_URL, and an answer through it");
    assert_eq!(ready, 200, "the balancer's /health/ready");
    assert_eq!(env["CLUSTER_GATEWAYS"].split(' ').count(), 2);
    assert_eq!(env["CLUSTER_REDIS_NODES"].split(' ').count(), 6);
    assert_eq!(env["CLUSTER_REDIS_URLS"].split(',').count(), 3);
    assert!(env["CLUSTER_PG_URL"].starts_with("postgres://"));
    // 6 redis-server, 2 gateways, nginx.
    assert_eq!(pids.len(), 9, "{pids:?}");
    assert!(stopped.status.success());
    assert!(again.status.success(), "a second stop fails");
    assert!(
        !status.status.success(),
        "status after stop says all is running"
    );
    let survivors: Vec<_> = pids.iter().filter(|pid| alive(pid)).collect();
    assert!(
        survivors.is_empty(),
        "still running after stop: {survivors:?}"
    );
}
