//! `flashgate sale`: the real binary operating a real gateway process through its admin
//! API, with the token from the flag, the environment or the config file; a named admin
//! credential given in the environment (`FLASHGATE_ADMIN__TOKENS__<NAME>`) is audited by
//! its name.

use std::process::{Command, Output};

use serde_json::{Value, json};

use crate::support::app::{ADMIN_TOKEN, JWT_SECRET, live_sale};
use crate::support::db::TestDb;
use crate::support::process::GatewayProcess;
use crate::support::redis::RedisServer;

const ALICE_TOKEN: &str = "alice-admin-token-0123456789";

/// Runs `flashgate sale <args>` with `env` (and none of the caller's own FLASHGATE_*).
fn sale_cli(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flashgate"))
        .arg("sale")
        .args(args)
        .env_remove("FLASHGATE_GATEWAY")
        .env_remove("FLASHGATE_ADMIN_TOKEN")
        .envs(env.iter().copied())
        .output()
        .expect("flashgate binary runs")
}

/// The JSON a successful run printed.
fn printed(output: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "failed: {stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sale_command_lists_pauses_resumes_and_ends_through_the_admin_api() {
    let redis = RedisServer::start();
    let db = TestDb::sqlite();
    let env = [
        ("FLASHGATE_REDIS__URL", redis.url()),
        ("FLASHGATE_DATABASE__URL", db.url()),
        ("FLASHGATE_ADMIN__TOKENS__ALICE", ALICE_TOKEN.to_owned()),
    ];
    let gateway = GatewayProcess::start(&env).await;
    let base = gateway.base();
    let response = reqwest::Client::new()
        .put(format!("{base}/admin/v1/sales/cli"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&live_sale(10, 2, 1, 1))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);

    // The token from the environment, the gateway from the flag.
    let paused = sale_cli(
        &["--gateway", &base, "pause", "cli"],
        &[("FLASHGATE_ADMIN_TOKEN", ALICE_TOKEN)],
    );
    assert_eq!(printed(&paused)["state"], "paused");
    // The token from the flag, the gateway from the environment.
    let listed = sale_cli(
        &["--admin-token", ADMIN_TOKEN, "list"],
        &[("FLASHGATE_GATEWAY", &base)],
    );
    let listed = printed(&listed);
    assert_eq!(listed["sales"][0]["sale_id"], "cli", "{listed}");
    assert_eq!(listed["sales"][0]["state"], "paused", "{listed}");
    assert_eq!(listed["sales"][0]["shards"], 2, "{listed}");
    // The changes that take several steps (endpoints of their own) go through too.
    let topped = sale_cli(
        &[
            "--gateway",
            &base,
            "--admin-token",
            ADMIN_TOKEN,
            "topup",
            "cli",
            "--add",
            "5",
        ],
        &[],
    );
    let topped = printed(&topped);
    assert_eq!(
        (&topped["sale_id"], topped["change"].is_object()),
        (&json!("cli"), true),
        "{topped}"
    );
    let resharded = sale_cli(
        &[
            "--gateway",
            &base,
            "--admin-token",
            ADMIN_TOKEN,
            "reshard",
            "cli",
            "--shards",
            "4",
        ],
        &[],
    );
    let resharded = printed(&resharded);
    assert_eq!(
        (&resharded["sale_id"], resharded["change"].is_object()),
        (&json!("cli"), true),
        "{resharded}"
    );
    // The token from the config file.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("flashgate.toml");
    let toml =
        format!("[auth]\njwt_secret = \"{JWT_SECRET}\"\n[admin]\ntoken = \"{ADMIN_TOKEN}\"\n");
    std::fs::write(&config, toml).unwrap();
    let config = config.to_str().unwrap();
    let resumed = sale_cli(
        &["--gateway", &base, "--config", config, "resume", "cli"],
        &[],
    );
    assert_eq!(printed(&resumed)["state"], "live");
    let ended = sale_cli(
        &[
            "--gateway",
            &base,
            "--admin-token",
            ALICE_TOKEN,
            "end",
            "cli",
        ],
        &[],
    );
    assert_eq!(printed(&ended)["state"], "ended");

    let audit = reqwest::Client::new()
        .get(format!("{base}/admin/v1/sales/cli"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["audit"]
        .clone();
    let said: Vec<(&str, &str)> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["actor"].as_str().unwrap(), e["action"].as_str().unwrap()))
        .collect();
    assert_eq!(
        said,
        [
            ("alice", "ended"),
            ("admin", "resumed"),
            ("admin", "resharded"),
            ("admin", "stock-changed"),
            ("alice", "paused"),
            ("admin", "created"),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sale_command_exits_non_zero_naming_the_problem_or_the_missing_token() {
    let redis = RedisServer::start();
    let db = TestDb::sqlite();
    let env = [
        ("FLASHGATE_REDIS__URL", redis.url()),
        ("FLASHGATE_DATABASE__URL", db.url()),
    ];
    let gateway = GatewayProcess::start(&env).await;
    let base = gateway.base();
    let failures = [
        (
            vec!["--admin-token", ADMIN_TOKEN, "pause", "nosuch"],
            "no such sale",
        ),
        (
            vec!["--admin-token", "not-the-admin-token-0123", "list"],
            "Unauthorized",
        ),
        (vec!["list"], "no admin token"),
    ];
    for (args, says) in failures {
        let mut all = vec!["--gateway", base.as_str()];
        all.extend(args.iter().copied());
        let output = sale_cli(&all, &[]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} succeeded");
        assert!(
            stderr.contains(says),
            "{args:?}: {stderr:?} does not say {says:?}"
        );
        assert!(output.stdout.is_empty(), "{args:?} printed an answer");
    }
}
