//! Checks the test harness itself: a real PostgreSQL server starts, serves fresh databases,
//! goes down hard, comes back with its data, and dies with its owner.

use std::path::Path;
use std::process::Command;
use std::sync::mpsc;
use std::thread;
use std::time::Instant;

use sqlx::{Connection, PgConnection, PgPool};

use crate::support::postgres::{PostgresServer, cluster_processes};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// The pids `pgrep -f` finds for `pattern` (the postmaster's command line names its data dir).
fn pgrep(pattern: &Path) -> Vec<String> {
    let output = Command::new("pgrep")
        .arg("-f")
        .arg(pattern)
        .output()
        .expect("run pgrep");
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout.split_whitespace().map(str::to_owned).collect()
}

/// Whether a process with this id exists and is not a zombie.
fn process_alive(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The state follows the parenthesised command name.
    let state = stat.rsplit_once(") ").map(|(_, rest)| rest.chars().next());
    matches!(state, Some(Some(state)) if state != 'Z')
}

/// Reads the single row of `items`.
async fn read_item(url: &str) -> Result<String, sqlx::Error> {
    let pool = PgPool::connect(url).await?;
    let name = sqlx::query_scalar("SELECT name FROM items WHERE id = 1")
        .fetch_one(&pool)
        .await?;
    pool.close().await;
    Ok(name)
}

#[tokio::test]
async fn server_serves_queries_refuses_when_stopped_and_keeps_data_when_started_again() -> TestResult
{
    let mut server = PostgresServer::start();
    let url = server.fresh_database();
    let pool = PgPool::connect(&url).await?;
    let one: i32 = sqlx::query_scalar("SELECT 1").fetch_one(&pool).await?;
    assert_eq!(one, 1);
    sqlx::query("CREATE TABLE items (id INT PRIMARY KEY, name TEXT NOT NULL)")
        .execute(&pool)
        .await?;
    sqlx::query("INSERT INTO items VALUES (1, 'widget')")
        .execute(&pool)
        .await?;

    let port = server.port();
    // The pool still holds a connection, so a backend process dies with the server.
    server.stop();
    assert!(!server.is_running());
    assert_eq!(
        cluster_processes(&server.data_dir()),
        Vec::<u32>::new(),
        "backends outlived the postmaster"
    );
    let refused = PgConnection::connect(&url).await;
    assert!(refused.is_err(), "a stopped server must refuse connections");
    pool.close().await;

    server.start_again();
    assert!(server.is_running());
    assert_eq!(server.port(), port);
    assert_eq!(read_item(&url).await?, "widget", "committed row survived");
    Ok(())
}

#[tokio::test]
async fn fresh_databases_are_distinct_and_empty() -> TestResult {
    let server = PostgresServer::start();
    let first = server.fresh_database();
    let second = server.fresh_database();
    assert_ne!(first, second);
    assert!(first.starts_with(&format!("postgres://postgres@127.0.0.1:{}/", server.port())));

    let mut con = PgConnection::connect(&first).await?;
    sqlx::query("CREATE TABLE only_in_first (id INT)")
        .execute(&mut con)
        .await?;
    let mut con = PgConnection::connect(&second).await?;
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
    )
    .fetch_one(&mut con)
    .await?;
    assert_eq!(tables, 0);
    Ok(())
}

#[tokio::test]
async fn dropping_a_server_leaves_no_postgres_process() -> TestResult {
    let started = Instant::now();
    let server = PostgresServer::start();
    eprintln!("initdb + start took {:?}", started.elapsed());
    // Hold a connection so that a backend process exists too.
    let _con = PgConnection::connect(&server.url("postgres")).await?;
    let data_dir = server.data_dir();
    let pid = server.pid().expect("a started server has a pid");
    // Freshly forked children briefly carry the postmaster's command line too.
    assert!(
        pgrep(&data_dir).contains(&pid.to_string()),
        "pgrep finds the postmaster"
    );
    assert!(cluster_processes(&data_dir).len() > 1, "backends are found");

    drop(server);
    assert_eq!(pgrep(&data_dir), Vec::<String>::new());
    assert!(!process_alive(pid), "the postmaster outlived its server");
    assert!(!data_dir.exists(), "the temp dir is removed");
    Ok(())
}

#[test]
fn a_panicking_test_does_not_leak_its_server() {
    let (tx, rx) = mpsc::channel();
    let outcome = thread::spawn(move || {
        let server = PostgresServer::start();
        tx.send((server.pid(), server.data_dir()))
            .expect("send the pid");
        panic!("deliberate panic: the server must be killed while unwinding");
    })
    .join();
    assert!(outcome.is_err());
    let (pid, data_dir) = rx.recv().expect("the thread started a server");
    let pid = pid.expect("a started server has a pid");
    assert!(!process_alive(pid), "postgres survived a panic");
    assert_eq!(pgrep(&data_dir), Vec::<String>::new());
}

#[tokio::test]
async fn a_paused_server_keeps_its_connections_and_answers_only_once_resumed() -> TestResult {
    let server = PostgresServer::start();
    let url = server.fresh_database();
    let mut con = PgConnection::connect(&url).await?;
    server.pause();
    let query = tokio::spawn(async move {
        sqlx::query_scalar::<_, i32>("SELECT 1")
            .fetch_one(&mut con)
            .await
    });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(!query.is_finished(), "a paused server answered");
    server.resume();
    assert_eq!(
        query.await??,
        1,
        "the open connection is answered after resume"
    );
    Ok(())
}
