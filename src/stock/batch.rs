//! Purchases sent to a single Redis node in batches: one `purchase.lua` call carries every
//! purchase that arrived while earlier calls were on their way.
//!
//! Batches form by themselves, without waiting: a purchase goes out at once when fewer than
//! `IN_FLIGHT` (2) calls are outstanding, and otherwise waits for one of them to return, with
//! every other purchase that arrives meanwhile; a batch that reaches the configured maximum
//! per call goes out at once, however many calls are outstanding. A
//! lone purchase at a quiet moment pays nothing; at a spike, Redis runs one script call, one
//! append-only-file transaction and one reply for many purchases instead of one each. Each
//! purchase still waits for exactly one round trip, and `purchase.lua` runs the purchases of
//! a call one after the other, exactly as separate calls would (docs/DESIGN.md §3).

use std::panic::AssertUnwindSafe;

use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use tokio::sync::{mpsc, oneshot};

use crate::metrics::CallTimer;
use crate::store::purchase::{self, PurchaseCall, PurchaseReply};
use crate::store::{Durability, RedisConn, StoreError};

/// Calls outstanding at once before a purchase waits for one to return (full batches go
/// regardless): one being run by Redis while the next is on its way, so Redis never waits
/// on the gateway between two batches.
const IN_FLIGHT: usize = 2;
/// Purchases waiting for a call; beyond it a purchase waits to be queued (the gateway's
/// in-flight cap bounds them long before).
const QUEUE: usize = 4096;

/// The largest number of purchases one call may carry.
pub const MAX_BATCH: usize = 256;

type Answer = oneshot::Sender<Result<PurchaseReply, StoreError>>;
/// A purchase waiting for its call, and where its answer goes.
type Job = (PurchaseCall, Answer);

/// A handle on the task that batches purchases. Cheap to clone; the task stops when the
/// last handle is dropped, after answering every purchase it took.
#[derive(Clone)]
pub struct PurchaseBatcher {
    queue: mpsc::Sender<Job>,
}

impl PurchaseBatcher {
    /// Spawns the batching task over `conn` (a single node), sending at most `max_batch`
    /// purchases (1 ..= [`MAX_BATCH`]) per call.
    pub fn spawn(conn: RedisConn, max_batch: usize) -> Self {
        Self::spawn_with(conn, max_batch, CallTimer::noop(), Durability::Async)
    }

    /// As [`Self::spawn`], timing each call with `timer` and making its accepted purchases
    /// as durable as `durability` says before they are answered.
    pub fn spawn_with(
        conn: RedisConn,
        max_batch: usize,
        timer: CallTimer,
        durability: Durability,
    ) -> Self {
        let (queue, rx) = mpsc::channel(QUEUE);
        let calls = Calls {
            conn,
            timer,
            durability,
        };
        tokio::spawn(run(rx, calls, max_batch.clamp(1, MAX_BATCH)));
        Self { queue }
    }

    /// Runs `call` in the next batch and answers it.
    pub async fn purchase(&self, call: PurchaseCall) -> Result<PurchaseReply, StoreError> {
        let (answer, reply) = oneshot::channel();
        if self.queue.send((call, answer)).await.is_err() {
            return Err(unanswered());
        }
        reply.await.unwrap_or_else(|_| Err(unanswered()))
    }
}

/// The answer when a purchase's batch ended without one (its call panicked, or the batching
/// task is gone): nothing is known of the purchase, as after a lost reply.
fn unanswered() -> StoreError {
    StoreError::unexpected("purchase batch", &"the batch ended without an answer")
}

/// How the batching task sends its calls.
#[derive(Clone)]
struct Calls {
    conn: RedisConn,
    timer: CallTimer,
    durability: Durability,
}

async fn run(mut rx: mpsc::Receiver<Job>, calls: Calls, max_batch: usize) {
    let mut in_flight = FuturesUnordered::new();
    // Purchases taken from the queue and not yet sent: never more than `max_batch`, since
    // a full batch goes out at once.
    let mut pending: Vec<Job> = Vec::with_capacity(max_batch);
    let mut open = true;
    loop {
        if may_send(in_flight.len(), pending.len(), max_batch) {
            let batch = std::mem::replace(&mut pending, Vec::with_capacity(max_batch));
            // The calls are polled here, not spawned: when a reply arrives, this task answers
            // its purchases and sends the next batch in the same wake-up, where a task per call
            // cost a spawn and one more wake-up per call. A panic in a call is caught at the
            // call: it loses that batch's answers (its purchases get an error), never the
            // batching task.
            in_flight.push(AssertUnwindSafe(send(calls.clone(), batch)).catch_unwind());
            continue;
        }
        if !open && pending.is_empty() && in_flight.is_empty() {
            return;
        }
        tokio::select! {
            biased;
            Some(done) = in_flight.next(), if !in_flight.is_empty() => {
                if let Err(panic) = done {
                    let panic = crate::panics::message(&*panic);
                    tracing::error!(panic, "a purchase.lua batch call panicked");
                }
            }
            job = rx.recv(), if open => match job {
                Some(job) => {
                    pending.push(job);
                    while pending.len() < max_batch {
                        match rx.try_recv() {
                            Ok(job) => pending.push(job),
                            Err(_) => break,
                        }
                    }
                }
                None => open = false,
            },
        }
    }
}

/// Whether the `pending` purchases go out now: while fewer than [`IN_FLIGHT`] calls are
/// outstanding, or once they fill a call (then waiting would only add latency, and would
/// cap the throughput at `IN_FLIGHT × max_batch` purchases per round trip).
fn may_send(in_flight: usize, pending: usize, max_batch: usize) -> bool {
    pending > 0 && (in_flight < IN_FLIGHT || pending >= max_batch)
}

/// Sends one call for `batch` and answers each of its purchases.
async fn send(mut with: Calls, batch: Vec<Job>) {
    let (calls, answers): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
    let call = purchase::purchase_many_with(&mut with.conn, &calls, &with.durability);
    match with.timer.time(call).await {
        Ok(replies) => {
            for (answer, reply) in answers.into_iter().zip(replies) {
                // The buyer may have gone (request timed out): its order, if any, is in its
                // shard's stream all the same, and recovery persists it.
                let _ = answer.send(reply);
            }
        }
        Err(err) => {
            for answer in answers {
                let _ = answer.send(Err(err.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_purchase_goes_at_once_while_few_calls_are_out_or_when_it_fills_a_call() {
        // Nothing to send.
        assert!(!may_send(0, 0, 64));
        // Quiet: fewer than IN_FLIGHT calls out, so even one purchase goes.
        assert!(may_send(0, 1, 64));
        assert!(may_send(IN_FLIGHT - 1, 1, 64));
        // Busy: a partial batch waits for a call to return ...
        assert!(!may_send(IN_FLIGHT, 63, 64));
        assert!(!may_send(IN_FLIGHT + 5, 1, 64));
        // ... but a full one does not.
        assert!(may_send(IN_FLIGHT, 64, 64));
        assert!(may_send(IN_FLIGHT + 5, 4, 4));
    }
}
