//! Checks the test harness itself: real `redis-server` processes start, answer, stop, come
//! back, die with their owner, and form a working three-master cluster.

use std::path::Path;
use std::sync::mpsc;
use std::thread;

use redis::AsyncTypedCommands;
use redis::cluster::ClusterClient;

use crate::support::redis::{RedisCluster, RedisServer};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Opens a multiplexed async connection to a single server.
async fn connect(url: &str) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
    redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await
}

/// Whether a process with this id exists (checked by pid, not port: ports get reused by
/// parallel tests far sooner than Linux reuses pids).
fn process_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[tokio::test]
async fn server_serves_commands_refuses_when_stopped_and_keeps_data_across_restart() -> TestResult {
    let mut server = RedisServer::start();
    let mut con = connect(&server.url()).await?;
    con.set("greeting", "hello").await?;
    assert_eq!(con.get("greeting").await?.as_deref(), Some("hello"));

    server.stop();
    assert!(!server.is_running());
    assert!(
        connect(&server.url()).await.is_err(),
        "a stopped server must refuse connections"
    );

    server.restart();
    assert!(server.is_running());
    let mut con = connect(&server.url()).await?;
    assert_eq!(con.ping().await?, "PONG");
    assert_eq!(
        con.get("greeting").await?.as_deref(),
        Some("hello"),
        "AOF replayed"
    );
    Ok(())
}

#[tokio::test]
async fn restart_empty_comes_back_on_the_same_port_without_data() -> TestResult {
    let mut server = RedisServer::start();
    let port = server.port();
    connect(&server.url()).await?.set("doomed", "1").await?;

    server.restart_empty();
    assert_eq!(server.port(), port);
    let mut con = connect(&server.url()).await?;
    assert_eq!(con.get("doomed").await?, None);
    Ok(())
}

#[test]
fn dropping_a_server_kills_its_process() {
    let server = RedisServer::start();
    let pid = server.pid().expect("a started server has a pid");
    assert!(process_exists(pid));
    drop(server);
    assert!(
        !process_exists(pid),
        "redis-server outlived its RedisServer"
    );
}

#[test]
fn a_panicking_test_does_not_leak_its_server() {
    let (pid_tx, pid_rx) = mpsc::channel();
    let outcome = thread::spawn(move || {
        let server = RedisServer::start();
        pid_tx.send(server.pid()).expect("send the pid");
        panic!("deliberate panic: the server must be killed while unwinding");
    })
    .join();
    assert!(outcome.is_err());
    let pid = pid_rx.recv().expect("the thread started a server");
    let pid = pid.expect("a started server has a pid");
    assert!(!process_exists(pid), "redis-server survived a panic");
}

#[tokio::test]
async fn cluster_spreads_keys_with_different_hash_tags_over_its_masters() -> TestResult {
    let cluster = RedisCluster::start();
    let mut con = ClusterClient::new(cluster.urls())?
        .get_async_connection()
        .await?;
    let keys: Vec<String> = (0..12).map(|i| format!("{{sale-{i}}}:stock")).collect();
    for (i, key) in keys.iter().enumerate() {
        con.set(key, i).await?;
    }
    for (i, key) in keys.iter().enumerate() {
        assert_eq!(con.get(key).await?, Some(i.to_string()));
    }

    let mut masters_with_keys = 0;
    for url in cluster.urls() {
        let size: usize = redis::cmd("DBSIZE")
            .query_async(&mut connect(&url).await?)
            .await?;
        masters_with_keys += usize::from(size > 0);
    }
    assert!(masters_with_keys >= 2, "keys all landed on one master");
    Ok(())
}
