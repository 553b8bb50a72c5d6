//! The HTTP ceiling for `scripts/bench-http.sh`: a hello-world axum server on the same
//! tokio multi-thread runtime as the gateway, so a benchmark can tell the cost of the
//! gateway's own work from the cost of HTTP on this machine.
//!
//! Usage: `cargo run --release --example hello -- PORT` (answers "hello" to any request on
//! 127.0.0.1:PORT).

use std::net::SocketAddr;
use std::process::ExitCode;

use axum::Router;
use tokio::net::TcpListener;

// mimalloc: the gateway allocates and frees many small, short-lived buffers per request
// across threads, where glibc's allocator spent about a fifth of the gateway's CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let Some(port) = std::env::args().nth(1).and_then(|p| p.parse::<u16>().ok()) else {
        eprintln!("usage: hello PORT");
        return ExitCode::from(2);
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let listener = match TcpListener::bind(addr).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("hello: cannot listen on {addr}: {error}");
            return ExitCode::FAILURE;
        }
    };
    // Every path and method answers, so the benchmark can send hello the very requests it
    // sends the gateway (same wrk script, same headers and body).
    let app = Router::new().fallback(|| async { "hello" });
    eprintln!("hello: listening on http://{addr}");
    match axum::serve(listener, app).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("hello: server failed: {error}");
            ExitCode::FAILURE
        }
    }
}
