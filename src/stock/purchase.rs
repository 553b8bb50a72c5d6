//! The purchase path: one `purchase.lua` call on the buyer's home shard in the common case;
//! loans from other shards when home runs short; a consistent snapshot before "sold out".

use std::time::{Duration, Instant};

use super::{SaleRuntime, StockEngine};
use crate::domain::{EntryId, IdempotencyKey, NewOrder, OrderId, Quantity, UserId};
use crate::store::buyer_record::BuyerRecord;
use crate::store::loans::Loan;
use crate::store::purchase::{self, Import, PurchaseCall, PurchaseReply, SpendToken};
use crate::store::{StoreError, migration, shards};

/// Most borrow-and-retry rounds before answering "contended, retry".
const MAX_ROUNDS: u32 = 8;
/// First pause before retrying while stock is in flight; doubles each round (≤ 0.25 s in all).
const ROUND_PAUSE: Duration = Duration::from_millis(1);

/// One buyer's purchase attempt, already validated.
#[derive(Debug, Clone, Copy)]
pub struct PurchaseRequest<'a> {
    /// The buyer.
    pub user: &'a UserId,
    /// Units wanted (within the sale's `max_per_order`).
    pub quantity: Quantity,
    /// The client's idempotency key.
    pub key: &'a IdempotencyKey,
    /// A digest of the request body; a key reused with another digest is a conflict.
    pub fingerprint: &'a str,
    /// The current time, unix milliseconds.
    pub now_ms: i64,
    /// The verified purchase token this purchase spends, if tokens are required.
    pub token: Option<SpendToken>,
}

/// What became of a purchase attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PurchaseOutcome {
    /// The order holds stock and is durably recorded in its shard's stream.
    Accepted(NewOrder),
    /// The same idempotency key and body were accepted before: that order, again.
    Replayed {
        order_id: OrderId,
        quantity: Quantity,
    },
    /// Refused; no stock was taken.
    Refused(Refusal),
    /// The sale changed under this request (a new layout, new stock, a pause): nothing was
    /// taken; reload the sale and ask again.
    Stale,
}

/// Why a purchase took no stock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No unit is left anywhere.
    SoldOut,
    /// Fewer units than asked remain (`remaining`, at least 1).
    Insufficient { remaining: u64 },
    /// The buyer holds `held` units; this order would exceed the per-user limit.
    LimitReached { held: u32 },
    /// The idempotency key was used before with another body.
    IdempotencyConflict,
    /// The purchase token was spent on an earlier purchase.
    TokenUsed,
    /// Stock kept moving under this request; the client should retry shortly.
    Contended,
}

/// Whether an idempotency key was accepted before, as the buyer's record says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayLookup {
    /// The key was accepted with the same body: that order.
    Replayed {
        order_id: OrderId,
        quantity: Quantity,
    },
    /// The key was accepted with another body.
    Conflict,
    /// The key took nothing so far.
    NotRecorded,
    /// The sale has a newer layout than the runtime asked with: reload and ask again.
    Stale,
}

/// What a consistent snapshot says about a request for some units.
enum Judgement {
    SoldOut,
    Insufficient(u64),
    /// Enough stock exists (or the snapshot was not consistent): `home_stock` is on the
    /// buyer's home shard.
    TryAgain {
        home_stock: u64,
    },
    /// The sale's record changed while the snapshot was taken.
    Stale,
}

impl StockEngine {
    /// Takes `req.quantity` units of the sale for `req.user`, or says why not.
    pub async fn purchase(
        &self,
        rt: &SaleRuntime,
        req: &PurchaseRequest<'_>,
    ) -> Result<PurchaseOutcome, StoreError> {
        if rt.sold_out_for(req.user) {
            return Ok(PurchaseOutcome::Refused(Refusal::SoldOut));
        }
        let home = rt.home_of(req.user);
        let mut import = first_import(rt);
        let qty = u64::from(req.quantity.get());
        // Known-empty home: borrow first instead of asking home to say "short".
        let mut need = if rt.shard_seems_empty(home) && !rt.is_sold_out() {
            qty
        } else {
            0
        };
        // Whether the buyer's home has answered this request: until it has, a snapshot's
        // "sold out" or "not enough" may hide an earlier order under this key (a retry).
        let mut home_asked = false;
        for round in 0..MAX_ROUNDS {
            let mut credits = Vec::new();
            if need > 0 {
                credits = self.borrow_for(rt, home, need, req.now_ms).await?;
                if credits.is_empty() {
                    match self.judge(rt, home, qty).await? {
                        Judgement::SoldOut if home_asked => {
                            return Ok(PurchaseOutcome::Refused(Refusal::SoldOut));
                        }
                        Judgement::Insufficient(remaining) if home_asked => {
                            return Ok(PurchaseOutcome::Refused(Refusal::Insufficient {
                                remaining,
                            }));
                        }
                        // Ask home, below: its record replays a retry (or refuses a
                        // reused key or token) before it looks at stock, and it answers
                        // "short" otherwise, which comes back here with `home_asked` set.
                        Judgement::SoldOut | Judgement::Insufficient(_) => {}
                        Judgement::Stale => return Ok(PurchaseOutcome::Stale),
                        Judgement::TryAgain { home_stock } => {
                            need = qty.saturating_sub(home_stock);
                            if need > 0 {
                                // Units are in flight between shards (or the snapshot
                                // was torn): give the loans a moment to land.
                                tokio::time::sleep(ROUND_PAUSE * (1 << round)).await;
                                continue;
                            }
                        }
                    }
                }
            }
            let call = self.call(rt, req, home, credits.clone(), import.clone());
            // On error the credits' fate is unknown; their loan records let recovery finish them.
            let reply = self.send(call).await?;
            home_asked = true;
            if let PurchaseReply::Accepted {
                entry_id,
                stock_left,
            } = reply
            {
                rt.observe_shard(home, stock_left);
                self.settle_in_background(rt, credits);
                let entry = EntryId::parse(&entry_id)
                    .map_err(|_| StoreError::unexpected("purchase.lua entry id", &entry_id))?;
                return Ok(PurchaseOutcome::Accepted(NewOrder {
                    order_id: OrderId::new(rt.sale.id.clone(), home, entry),
                    user: req.user.clone(),
                    quantity: req.quantity,
                    created_ms: req.now_ms,
                }));
            }
            // Credits are applied before the script looks at the buyer: settle them whatever
            // it answered.
            self.settle_loans(&rt.sale.id, &credits).await;
            match reply {
                PurchaseReply::Accepted { .. } => unreachable!("handled above"),
                PurchaseReply::Replay { order_id, quantity } => {
                    let (order_id, quantity) = recorded_order(&order_id, quantity)?;
                    return Ok(PurchaseOutcome::Replayed { order_id, quantity });
                }
                PurchaseReply::Conflict => {
                    return Ok(PurchaseOutcome::Refused(Refusal::IdempotencyConflict));
                }
                PurchaseReply::TokenUsed => {
                    return Ok(PurchaseOutcome::Refused(Refusal::TokenUsed));
                }
                PurchaseReply::Limit { held } => {
                    return Ok(PurchaseOutcome::Refused(Refusal::LimitReached { held }));
                }
                PurchaseReply::Moved => return Ok(PurchaseOutcome::Stale),
                PurchaseReply::Import => {
                    import = self.hand_over(rt, req.user).await?;
                    need = 0;
                }
                PurchaseReply::Short { stock } => {
                    rt.observe_shard(home, stock);
                    // A sold-out mark came from a consistent snapshot; only an operator
                    // change (a new runtime) brings stock back.
                    if rt.is_sold_out() {
                        return Ok(PurchaseOutcome::Refused(Refusal::SoldOut));
                    }
                    need = qty - stock;
                }
            }
        }
        Ok(PurchaseOutcome::Refused(Refusal::Contended))
    }

    /// Hands `user`'s record over from their home in the draining layout; what the next
    /// call on their new home imports.
    async fn hand_over(&self, rt: &SaleRuntime, user: &UserId) -> Result<Import, StoreError> {
        let Some(draining) = &rt.layout.draining else {
            return Err(StoreError::unexpected(
                "purchase.lua",
                &"import outside a reshard",
            ));
        };
        let old_home = rt.keys(draining.home_of(user));
        let record =
            migration::export_buyer(&mut self.conn.clone(), old_home, user.as_str()).await?;
        Ok(Import::Record(record))
    }

    /// Looks `req.key` up in the buyer's record on their home shard, without buying: the
    /// answer a retry gets when a check before Redis (an expired token, an ended sale, a full
    /// queue) would refuse a new purchase. One `purchase.lua` call with a per-user limit of 0,
    /// which can replay, conflict or refuse, and never writes (batched like a purchase).
    pub async fn replay_of(
        &self,
        rt: &SaleRuntime,
        req: &PurchaseRequest<'_>,
    ) -> Result<ReplayLookup, StoreError> {
        let home = rt.home_of(req.user);
        let mut import = first_import(rt);
        // At most two calls: the second with the record the previous home handed over.
        for _ in 0..2 {
            let call = PurchaseCall {
                limit: 0,
                token: None,
                ..self.call(rt, req, home, Vec::new(), import)
            };
            return Ok(match self.send(call).await? {
                PurchaseReply::Replay { order_id, quantity } => {
                    let (order_id, quantity) = recorded_order(&order_id, quantity)?;
                    ReplayLookup::Replayed { order_id, quantity }
                }
                PurchaseReply::Conflict => ReplayLookup::Conflict,
                PurchaseReply::Limit { .. } => ReplayLookup::NotRecorded,
                PurchaseReply::Moved => ReplayLookup::Stale,
                PurchaseReply::Import => {
                    import = self.hand_over(rt, req.user).await?;
                    continue;
                }
                other => return Err(StoreError::unexpected("purchase.lua replay lookup", &other)),
            });
        }
        Err(StoreError::unexpected(
            "purchase.lua replay lookup",
            &"import asked twice",
        ))
    }

    /// `user`'s record in the sale: the units they hold and their accepted orders.
    pub async fn buyer_record(
        &self,
        rt: &SaleRuntime,
        user: &UserId,
    ) -> Result<Option<BuyerRecord>, StoreError> {
        let mut conn = self.conn.clone();
        let home = rt.keys(rt.home_of(user));
        let record = shards::read_buyer_record(&mut conn, home, user).await?;
        match (record, &rt.layout.draining) {
            // Not handed over yet: still at the buyer's home in the draining layout.
            (None, Some(draining)) => {
                let old_home = rt.keys(draining.home_of(user));
                shards::read_buyer_record(&mut conn, old_home, user).await
            }
            (record, _) => Ok(record),
        }
    }

    /// The `purchase.lua` inputs of `req` on shard `home`, crediting `credits`.
    fn call(
        &self,
        rt: &SaleRuntime,
        req: &PurchaseRequest<'_>,
        home: u32,
        credits: Vec<Loan>,
        import: Import,
    ) -> PurchaseCall {
        PurchaseCall {
            keys: rt.keys(home).clone(),
            user: req.user.clone(),
            quantity: req.quantity.get(),
            limit: rt.sale.spec.per_user_limit(),
            idem_key: req.key.clone(),
            fingerprint: req.fingerprint.to_owned(),
            sale: rt.sale.id.clone(),
            now_ms: req.now_ms,
            shard: home,
            credits,
            token: req.token,
            import,
        }
    }

    /// Sends one purchase call: in a batch where batching is on, else on its own.
    async fn send(&self, call: PurchaseCall) -> Result<PurchaseReply, StoreError> {
        match &self.batcher {
            Some(batcher) => batcher.purchase(call).await,
            None => {
                let mut conn = self.conn.clone();
                let call = purchase::purchase_with(&mut conn, &call, &self.durability);
                self.timer.time(call).await
            }
        }
    }

    fn settle_in_background(&self, rt: &SaleRuntime, credits: Vec<Loan>) {
        if credits.is_empty() {
            return;
        }
        let engine = self.clone();
        let sale = rt.sale.id.clone();
        tokio::spawn(async move { engine.settle_loans(&sale, &credits).await });
    }

    /// Takes a snapshot made after this moment and judges a request for `qty` units.
    async fn judge(&self, rt: &SaleRuntime, home: u32, qty: u64) -> Result<Judgement, StoreError> {
        let snap = self.snapshot_after(rt, Instant::now()).await?;
        if snap.stale {
            return Ok(Judgement::Stale);
        }
        let home_stock = snap.shard(home).map_or(0, |c| c.stock);
        let unsold = snap.unsold();
        if !snap.consistent || unsold >= qty {
            return Ok(Judgement::TryAgain { home_stock });
        }
        if unsold > 0 {
            return Ok(Judgement::Insufficient(unsold));
        }
        if let Some(holders) = rt.mark_sold_out() {
            let shards = rt
                .stocked()
                .into_iter()
                .map(|i| rt.keys(i).clone())
                .collect();
            holders.load_in_background(self.redis.clone(), shards);
        }
        Ok(Judgement::SoldOut)
    }
}

/// What a first call tells the buyer's home about their record.
fn first_import(rt: &SaleRuntime) -> Import {
    if rt.layout.is_migrating() {
        Import::Unknown
    } else {
        Import::Settled
    }
}

/// The order of an idempotency record, parsed.
fn recorded_order(order_id: &str, quantity: u32) -> Result<(OrderId, Quantity), StoreError> {
    let order_id = OrderId::parse(order_id)
        .map_err(|_| StoreError::unexpected("idempotency record", &order_id))?;
    let quantity = Quantity::new(quantity)
        .map_err(|_| StoreError::unexpected("idempotency record", &quantity))?;
    Ok((order_id, quantity))
}
