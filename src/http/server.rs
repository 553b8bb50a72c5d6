//! Accepting and serving connections, bounded against hostile clients:
//!
//! - at most `http.max_connections` connections are open at once; beyond that, new ones are
//!   not accepted and wait in the kernel's listen backlog until one closes, so the process
//!   holds a bounded number of sockets and never runs out of file descriptors for them;
//! - a request's line and headers must arrive within `http.header_read_timeout_ms` (hyper's
//!   header read timeout, which also closes a kept-alive connection idle that long), so a
//!   client trickling header bytes holds its connection for that long at most;
//! - they may be at most `http.max_header_bytes` long: hyper stops reading there and answers
//!   431 Request Header Fields Too Large (its own bare answer: the request never reached the
//!   application), then closes the connection.
//!
//! Graceful shutdown: once the signal comes, nothing more is accepted, every connection
//! finishes the request it is serving and closes, and `serve` returns when all are closed.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tower::{Service, ServiceExt};

use crate::config::HttpSettings;

/// The connection cap and what it has seen.
#[derive(Debug)]
pub struct Connections {
    limit: usize,
    permits: Arc<Semaphore>,
    open: AtomicUsize,
    peak: AtomicUsize,
}

impl Connections {
    /// A cap of `limit` open connections (at least 1, at most `u32::MAX`).
    pub fn new(limit: usize) -> Self {
        let limit = limit.clamp(1, u32::MAX as usize);
        Self {
            limit,
            permits: Arc::new(Semaphore::new(limit)),
            open: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        }
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Most connections ever open at once.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    /// Waits for a free place.
    async fn place(&self) -> OwnedSemaphorePermit {
        Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .expect("the connection semaphore is never closed")
    }

    /// Counts a connection accepted into `place`, until the returned slot is dropped.
    fn opened(self: &Arc<Self>, place: OwnedSemaphorePermit) -> ConnectionSlot {
        let open = self.open.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak.fetch_max(open, Ordering::Relaxed);
        ConnectionSlot {
            connections: Arc::clone(self),
            _place: place,
        }
    }

    /// Waits until every connection has closed.
    async fn all_closed(&self) {
        let every = u32::try_from(self.limit).expect("the limit fits a u32");
        let _every = self
            .permits
            .acquire_many(every)
            .await
            .expect("the connection semaphore is never closed");
    }
}

/// An open connection's place under the cap, given back on drop.
struct ConnectionSlot {
    connections: Arc<Connections>,
    _place: OwnedSemaphorePermit,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.connections.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves `listener` until `shutdown` completes, each connection with the service
/// `make_service` builds for its peer; then shuts down gracefully (module docs).
pub async fn serve<M, S>(
    listener: TcpListener,
    make_service: M,
    settings: &HttpSettings,
    connections: Arc<Connections>,
    shutdown: impl Future<Output = ()>,
) where
    M: Fn(SocketAddr) -> S,
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let http = Arc::new(http1_builder(settings));
    // Dropping `stop` tells every connection to finish up.
    let (stop, stopping) = watch::channel(());
    let mut shutdown = pin!(shutdown);
    loop {
        let place = tokio::select! {
            place = connections.place() => place,
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    accept_failed(error).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let connection = serve_connection(
            stream,
            make_service(peer),
            Arc::clone(&http),
            stopping.clone(),
            connections.opened(place),
        );
        tokio::spawn(connection);
    }
    drop(listener);
    drop(stop);
    connections.all_closed().await;
}

/// HTTP/1 as the gateway speaks it: hyper's defaults, plus the time and size bounds on
/// request heads.
fn http1_builder(settings: &HttpSettings) -> http1::Builder {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(settings.header_read_timeout_ms))
        .max_header_size(settings.max_header_bytes);
    http
}

/// Serves one connection until it closes, or until `stopping` says to finish up; gives its
/// place back (`_slot`) when done.
async fn serve_connection<S>(
    stream: TcpStream,
    service: S,
    http: Arc<http1::Builder>,
    mut stopping: watch::Receiver<()>,
    _slot: ConnectionSlot,
) where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let service = service.map_request(|req: Request<Incoming>| req.map(Body::new));
    let connection = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
    let mut connection = pin!(connection);
    let served = tokio::select! {
        served = connection.as_mut() => served,
        _ = stopping.changed() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    // Clients that time out, send garbage or vanish end here: expected, not worth a warning.
    if let Err(error) = served {
        tracing::debug!(%error, "connection ended with an error");
    }
}

/// Errors of one incoming connection are that connection's; others (such as running out of
/// file descriptors) are the listener's: log, and pause before accepting again.
async fn accept_failed(error: io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        error.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(%error, "cannot accept connections; retrying in a second");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
