//! The thinnest purchase gateway possible, a peer for `scripts/bench-peers.sh`: axum on the
//! gateway's runtime answers every POST with one `EVALSHA` of a five-line deduct script over
//! one multiplexed Redis connection. No buyer, token, limit, idempotency key, durable record
//! or persistence: what is left of a purchase when everything that makes it safe is taken
//! away, so the gap between it and flashgate is the price of those promises.
//!
//! Usage: `peer-axum PORT REDIS_URL KEY` — listens on 127.0.0.1:PORT; each request takes one
//! unit from the string `KEY` (set its stock with `SET KEY <n>` first) and answers 202, or
//! 409 once it is empty.

use std::net::SocketAddr;
use std::process::ExitCode;

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use redis::Script;
use redis::aio::MultiplexedConnection;
use tokio::net::TcpListener;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Takes one unit if one is left: 1 if taken, 0 if none was left (shared with the
/// OpenResty peer).
const DEDUCT: &str = include_str!("../deduct.lua");

#[derive(Clone)]
struct Peer {
    redis: MultiplexedConnection,
    script: &'static Script,
    key: &'static str,
}

async fn purchase(peer: Peer) -> Response {
    let mut redis = peer.redis;
    match peer
        .script
        .key(peer.key)
        .invoke_async::<i64>(&mut redis)
        .await
    {
        Ok(1) => (StatusCode::ACCEPTED, r#"{"status":"pending"}"#).into_response(),
        Ok(_) => (StatusCode::CONFLICT, r#"{"type":"/problems/sold-out"}"#).into_response(),
        Err(error) => (StatusCode::SERVICE_UNAVAILABLE, error.to_string()).into_response(),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [port, url, key] = args.as_slice() else {
        eprintln!("usage: peer-axum PORT REDIS_URL KEY");
        return ExitCode::from(2);
    };
    let Ok(port) = port.parse::<u16>() else {
        eprintln!("peer-axum: not a port: {port}");
        return ExitCode::from(2);
    };
    let redis = match redis::Client::open(url.as_str()) {
        Ok(client) => client.get_multiplexed_async_connection().await,
        Err(error) => Err(error),
    };
    let redis = match redis {
        Ok(redis) => redis,
        Err(error) => {
            eprintln!("peer-axum: cannot connect to {url}: {error}");
            return ExitCode::FAILURE;
        }
    };
    let peer = Peer {
        redis,
        script: Box::leak(Box::new(Script::new(DEDUCT))),
        key: Box::leak(key.clone().into_boxed_str()),
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let listener = match TcpListener::bind(addr).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("peer-axum: cannot listen on {addr}: {error}");
            return ExitCode::FAILURE;
        }
    };
    let app = Router::new().fallback(move || purchase(peer.clone()));
    eprintln!("peer-axum: listening on http://{addr}");
    match axum::serve(listener, app).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("peer-axum: server failed: {error}");
            ExitCode::FAILURE
        }
    }
}
