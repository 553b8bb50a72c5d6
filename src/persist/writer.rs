//! The batch writer: drains the order queue into the database in batches bounded by size
//! (`queue.batch_size`) and time (`queue.batch_wait_ms`); while there is a backlog (full
//! batches), up to `queue.writers` batches are in flight at once, retrying database failures with
//! capped exponential backoff and jitter. While it retries, the queue fills and the
//! rejection policy takes over; nothing accepted is dropped (it is pending in its stream).
//! A batch the database *rejects* is split until the refused order is alone, and that order
//! becomes a dead letter after `queue.poison_attempts` refusals ([`super::isolate`]); every
//! database call is bounded ([`crate::db::DbTimeouts`]), so a dead connection is a failure
//! to retry, not a hang, and [`super::health`] tells readiness when nothing commits.
//! [`Writer::flush`] (or a [`Flusher`] handed out before the writer starts) waits until
//! everything queued so far is written, so tests and tools await the writer instead of
//! polling Redis.

use std::time::Duration;

use rand::Rng;
use tokio::sync::mpsc::{self, Receiver, UnboundedReceiver, UnboundedSender};
use tokio::sync::{oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use super::Persister;
use super::isolate::{BatchWrite, Step};
use crate::domain::NewOrder;

/// How the writer batches and retries.
#[derive(Debug, Clone, Copy)]
pub struct WriterSettings {
    /// Most orders per database transaction.
    pub batch_size: usize,
    /// Longest a partial batch waits for more orders.
    pub batch_wait: Duration,
    /// Longest pause between retries.
    pub max_backoff: Duration,
    /// At shutdown, how long the writer may keep draining the queue.
    pub drain_timeout: Duration,
    /// Batches written at once (each in its own transaction).
    pub concurrency: usize,
    /// Refusals of one order on its own before it becomes a dead letter.
    pub poison_attempts: u32,
}

/// The running writer task.
pub struct Writer {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    flusher: Flusher,
}

/// Asks a writer to write everything queued so far. Cheap to clone; requests made before
/// the writer starts are answered once it runs.
#[derive(Debug, Clone)]
pub struct Flusher {
    requests: UnboundedSender<oneshot::Sender<()>>,
}

/// The writer stopped before it wrote what a flush waited for (those orders stay pending
/// in their streams for recovery).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the order writer has stopped")]
pub struct WriterStopped;

/// The receiving end of a [`Flusher`], given to [`Writer::start_with`].
#[derive(Debug)]
pub struct FlushRequests {
    flusher: Flusher,
    requests: UnboundedReceiver<oneshot::Sender<()>>,
}

impl FlushRequests {
    /// A new pair: hand out [`Self::flusher`], then start the writer with this.
    pub fn new() -> Self {
        let (tx, requests) = mpsc::unbounded_channel();
        Self {
            flusher: Flusher { requests: tx },
            requests,
        }
    }

    /// A handle that asks the writer (once started with `self`) to flush.
    pub fn flusher(&self) -> Flusher {
        self.flusher.clone()
    }
}

impl Default for FlushRequests {
    fn default() -> Self {
        Self::new()
    }
}

impl Flusher {
    /// Waits until every order queued before this call is committed and acknowledged
    /// (a failing write is retried, so this waits for the database to come back).
    pub async fn flush(&self) -> Result<(), WriterStopped> {
        let (done, flushed) = oneshot::channel();
        self.requests.send(done).map_err(|_| WriterStopped)?;
        flushed.await.map_err(|_| WriterStopped)
    }
}

impl Writer {
    /// Starts writing what arrives on `rx`.
    pub fn start(persister: Persister, rx: Receiver<NewOrder>, settings: WriterSettings) -> Self {
        Self::start_with(persister, rx, FlushRequests::new(), settings)
    }

    /// Starts writing what arrives on `rx`, answering the flushes of `flushes`' [`Flusher`]s.
    pub fn start_with(
        persister: Persister,
        rx: Receiver<NewOrder>,
        flushes: FlushRequests,
        settings: WriterSettings,
    ) -> Self {
        let (stop, stopped) = watch::channel(false);
        let FlushRequests { flusher, requests } = flushes;
        let task = tokio::spawn(run(persister, rx, requests, settings, stopped));
        Self {
            stop,
            task,
            flusher,
        }
    }

    /// Waits until every order queued before this call is committed and acknowledged.
    pub async fn flush(&self) -> Result<(), WriterStopped> {
        self.flusher.flush().await
    }

    /// Stops taking orders, writes what is queued (within the drain timeout) and returns.
    /// Orders left unwritten stay pending in their streams for recovery.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

async fn run(
    persister: Persister,
    mut rx: Receiver<NewOrder>,
    mut flushes: UnboundedReceiver<oneshot::Sender<()>>,
    settings: WriterSettings,
    mut stopped: watch::Receiver<bool>,
) {
    let give_up = GiveUp::new(stopped.clone(), settings.drain_timeout);
    let mut in_flight = JoinSet::new();
    loop {
        while in_flight.len() >= settings.concurrency {
            in_flight.join_next().await;
        }
        let mut batch = Vec::with_capacity(settings.batch_size);
        tokio::select! {
            received = rx.recv_many(&mut batch, settings.batch_size) => {
                if received == 0 {
                    break;
                }
            }
            Some(done) = flushes.recv() => {
                flush(&persister, &mut rx, settings, &give_up, &mut in_flight).await;
                let _ = done.send(());
                continue;
            }
            _ = stopped.changed() => break,
        }
        fill_within(&mut rx, &mut batch, settings).await;
        persister.health().picked_up(batch.len());
        // Only a backlog (a full batch) earns a concurrent transaction; a partial batch waits
        // for the ones in flight, so orders keep gathering into fewer, larger commits.
        if batch.len() < settings.batch_size {
            while in_flight.join_next().await.is_some() {}
        }
        in_flight.spawn(write_batch(
            persister.clone(),
            batch,
            settings,
            give_up.clone(),
        ));
    }
    drain(&persister, &mut rx, settings, give_up, in_flight).await;
}

/// Answers a flush: writes everything the queue holds now, in batches beside the ones in
/// flight, and waits until every batch is written.
async fn flush(
    persister: &Persister,
    rx: &mut Receiver<NewOrder>,
    settings: WriterSettings,
    give_up: &GiveUp,
    in_flight: &mut JoinSet<usize>,
) {
    loop {
        let mut batch = Vec::with_capacity(settings.batch_size);
        while batch.len() < settings.batch_size {
            match rx.try_recv() {
                Ok(order) => batch.push(order),
                Err(_) => break,
            }
        }
        if batch.is_empty() {
            break;
        }
        persister.health().picked_up(batch.len());
        while in_flight.len() >= settings.concurrency {
            in_flight.join_next().await;
        }
        in_flight.spawn(write_batch(
            persister.clone(),
            batch,
            settings,
            give_up.clone(),
        ));
    }
    while in_flight.join_next().await.is_some() {}
}

/// Writes one batch (retrying); returns how many orders it left unwritten.
async fn write_batch(
    persister: Persister,
    batch: Vec<NewOrder>,
    settings: WriterSettings,
    mut give_up: GiveUp,
) -> usize {
    let held = batch.len();
    let left = write_until_done(&persister, batch, settings, &mut give_up).await;
    persister.health().let_go(held);
    left
}

/// Tops a partial batch up with the orders that arrive within `batch_wait`: sleeps once,
/// then takes what came. (Waiting on the queue instead would wake the writer for every
/// few orders, a cost the purchase path's cores pay at peak; a backlog never gets here,
/// since it fills the batch at once.)
async fn fill_within(
    rx: &mut Receiver<NewOrder>,
    batch: &mut Vec<NewOrder>,
    settings: WriterSettings,
) {
    if batch.len() >= settings.batch_size {
        return;
    }
    tokio::time::sleep(settings.batch_wait).await;
    while batch.len() < settings.batch_size {
        match rx.try_recv() {
            Ok(order) => batch.push(order),
            Err(_) => return,
        }
    }
}

/// Closes the queue and writes whatever it still holds, until the drain deadline, with the
/// batches already in flight.
async fn drain(
    persister: &Persister,
    rx: &mut Receiver<NewOrder>,
    settings: WriterSettings,
    give_up: GiveUp,
    mut in_flight: JoinSet<usize>,
) {
    rx.close();
    let mut left = 0;
    loop {
        let mut batch = Vec::with_capacity(settings.batch_size);
        if rx.recv_many(&mut batch, settings.batch_size).await == 0 {
            break;
        }
        persister.health().picked_up(batch.len());
        while in_flight.len() >= settings.concurrency {
            left += in_flight
                .join_next()
                .await
                .and_then(Result::ok)
                .unwrap_or(0);
        }
        in_flight.spawn(write_batch(
            persister.clone(),
            batch,
            settings,
            give_up.clone(),
        ));
    }
    while let Some(unwritten) = in_flight.join_next().await {
        left += unwritten.unwrap_or(0);
    }
    if left > 0 {
        tracing::warn!(
            orders = left,
            "shutdown drain timed out; these orders stay in their streams for recovery"
        );
    } else {
        tracing::info!("order queue drained");
    }
}

/// When the writer stops retrying: never while running; `drain_timeout` after a stop.
#[derive(Clone)]
struct GiveUp {
    stopped: watch::Receiver<bool>,
    drain_timeout: Duration,
    deadline: Option<Instant>,
}

impl GiveUp {
    fn new(stopped: watch::Receiver<bool>, drain_timeout: Duration) -> Self {
        Self {
            stopped,
            drain_timeout,
            deadline: None,
        }
    }

    /// Whether waiting `pause` more would pass the deadline.
    fn before_waiting(&mut self, pause: Duration) -> bool {
        if self.deadline.is_none() && *self.stopped.borrow() {
            self.deadline = Some(Instant::now() + self.drain_timeout);
        }
        self.deadline.is_some_and(|d| Instant::now() + pause > d)
    }
}

/// Persists `batch`, retrying failures that pass with backoff, until every order is a row
/// or a dead letter, or the writer gives up. Returns how many orders it left unwritten.
async fn write_until_done(
    persister: &Persister,
    batch: Vec<NewOrder>,
    settings: WriterSettings,
    give_up: &mut GiveUp,
) -> usize {
    let mut write = BatchWrite::new(batch, settings.poison_attempts);
    let mut backoff = FIRST_BACKOFF;
    while !write.is_done() {
        match write.step(persister).await {
            Ok(Step::Committed { .. } | Step::DeadLettered { .. }) => {
                persister.health().committed();
                backoff = FIRST_BACKOFF;
                continue;
            }
            Ok(Step::Split) => continue,
            Ok(Step::Refused { order, attempts }) => {
                tracing::warn!(%order, attempts, "the database refused an order; retrying it alone")
            }
            Err(error) => {
                tracing::warn!(%error, orders = write.remaining(), "persisting orders failed; retrying")
            }
        }
        let pause = jittered(backoff);
        if give_up.before_waiting(pause) {
            return write.remaining();
        }
        tokio::time::sleep(pause).await;
        backoff = (backoff * 2).min(settings.max_backoff);
    }
    0
}

/// The first pause after a failure.
const FIRST_BACKOFF: Duration = Duration::from_millis(50);

/// "Equal jitter": between half and all of `backoff`, so retrying writers spread out.
fn jittered(backoff: Duration) -> Duration {
    let millis = backoff.as_millis().max(2) as u64;
    Duration::from_millis(rand::rng().random_range(millis / 2..=millis))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_half_and_all_of_the_backoff() {
        for _ in 0..1000 {
            let d = jittered(Duration::from_millis(400));
            assert!((200..=400).contains(&d.as_millis()), "{d:?}");
        }
    }
}
