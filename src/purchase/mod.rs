//! The purchase use case: the one ordered chain every purchase answer comes from, whether
//! it is given by the sold-out shortcut in front of the router or by the purchase handler.
//!
//! The order of the checks is written once, in [`Purchases::purchase`]:
//!
//! 1. the sale exists;
//! 2. **settled from memory** ([`Purchases::settled_from_memory`]): a buyer who holds nothing
//!    of a sale known to be sold out, while it is open, is told `sold-out` — the shortcut in
//!    front of the router asks exactly this, before the body is read;
//! 3. the per-sale rate limit; the quantity fits `max_per_order`;
//! 4. the sale window and kill switch; the purchase token; the shared per-sale limit; a slot
//!    in the order queue — the checks before Redis ([`admit`]);
//! 5. **replay first**: a refusal of step 4 that an accepted retry could meet (an ended or
//!    paused sale, an expired or stale token, a full queue) asks the buyer's record before it
//!    answers, and a recorded order is answered again (`replay_or_refuse`);
//! 6. the deduction (`purchase.lua` on the buyer's home shard, through the stock engine);
//! 7. the hand-off of an accepted order towards the database, as its admission said.
//!
//! The per-buyer checks that need no sale (the JWT, the per-buyer rate limit and in-flight
//! slots) run before all this, at the edge, from the request's headers. Every refusal is
//! counted here, once, in the sale's statistics.

mod refusal;

use std::sync::Arc;

use sha2::{Digest, Sha256};
use time::OffsetDateTime;

pub use refusal::Refusal;

use crate::clock::{Clock, unix_ms};
use crate::domain::Rejection;
use crate::domain::{IdempotencyKey, OrderId, Quantity, SaleId, UserId, Window};
use crate::domain::{NewOrder, OrderStatus};
use crate::limits::{RateLimits, SharedSaleLimit};
use crate::orders;
use crate::persist::Persister;
use crate::persist::queue::{Admission, OrderQueue};
use crate::sales::SaleRegistry;
use crate::stock::SaleRuntime;
use crate::stock::{PurchaseOutcome, PurchaseRequest, ReplayLookup, StockEngine};
use crate::store::StoreError;
use crate::store::purchase::SpendToken;
use crate::tokens::{Audience, InvalidToken, TokenError, TokenSigner};

/// One purchase attempt as the buyer sent it (the body not yet judged).
#[derive(Debug, Clone)]
pub struct Attempt {
    /// The authenticated buyer.
    pub user: UserId,
    pub sale: SaleId,
    /// The client's `Idempotency-Key`.
    pub key: IdempotencyKey,
    /// Units asked for, as sent.
    pub quantity: u32,
    /// The purchase token, as sent.
    pub token: Option<String>,
}

impl Attempt {
    /// A digest of the request's meaning (not its bytes): a retry that re-serialises the
    /// same request matches; a different quantity or token does not.
    fn fingerprint(&self) -> String {
        let mut hash = Sha256::new();
        hash.update(self.quantity.to_be_bytes());
        hash.update(self.token.as_deref().unwrap_or("").as_bytes());
        const HEX: &[u8; 16] = b"0123456789abcdef";
        hash.finalize()[..12]
            .iter()
            .flat_map(|b| [HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]])
            .map(char::from)
            .collect()
    }
}

/// An accepted purchase: a new order, or the earlier order a retry is answered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub order_id: OrderId,
    pub sale_id: SaleId,
    pub quantity: Quantity,
    /// Where the order stands now.
    pub status: OrderStatus,
}

/// What a purchase attempt came to: infrastructure failures are the `Err` of
/// [`Purchases::purchase`], business outcomes are these.
#[derive(Debug)]
pub enum Answer {
    /// Stock taken for a new order.
    Accepted(Accepted),
    /// A retry of an accepted purchase: its order, nothing taken.
    Replayed(Accepted),
    Refused(Refusal),
}

/// A purchase's answer, with the sale it was for when that sale exists (whose counters the
/// caller counts the answer in).
#[derive(Debug)]
pub struct Purchased {
    pub sale: Option<Arc<SaleRuntime>>,
    pub answer: Result<Answer, StoreError>,
}

/// How often one purchase follows a sale that changed under it (a reshard's new layout, a
/// top-up, a pause) before it answers "contended, retry": each change is one reload, and
/// operators' changes are seconds apart.
const STALE_RETRIES: usize = 3;

/// Where the chain stands after running on one view of the sale.
enum Step {
    Answered(Answer),
    /// Redis says the sale changed since this view was loaded: reload it and run again.
    Stale,
}

/// What the chain needs, each a cheap handle.
pub struct Purchases {
    pub(crate) sales: SaleRegistry,
    pub(crate) stock: StockEngine,
    pub(crate) queue: OrderQueue,
    pub(crate) persister: Persister,
    pub(crate) clock: Clock,
    pub(crate) rate_limits: Arc<RateLimits>,
    pub(crate) shared_sale_limit: Option<SharedSaleLimit>,
    pub(crate) tokens: TokenSigner,
    /// Whether a purchase without a token is refused.
    pub(crate) require_token: bool,
}

impl Purchases {
    /// Step 2 of the chain, for the shortcut in front of the router: the refusal a purchase
    /// of `user` gets before its body matters, if the sale's state already settles it. Only
    /// a sold-out sale does: a buyer who holds none of it (so has no order to replay) is told
    /// `sold-out` while the sale is open; everything else takes the whole chain.
    pub fn settled_from_memory(
        &self,
        rt: &SaleRuntime,
        user: &UserId,
        now: OffsetDateTime,
    ) -> Option<Refusal> {
        let open = rt.sale.spec.window(now) == Window::Open && !rt.paused;
        (open && rt.sold_out_for(user)).then_some(Refusal::SoldOut)
    }

    /// Runs the whole chain for `attempt` (the module's header lists its steps).
    pub async fn purchase(&self, attempt: &Attempt) -> Purchased {
        let rt = match self.sales.get(&attempt.sale).await {
            Ok(Some(rt)) => rt,
            Ok(None) => {
                let answer = Ok(Answer::Refused(Refusal::NoSuchSale));
                return Purchased { sale: None, answer };
            }
            Err(error) => {
                return Purchased {
                    sale: None,
                    answer: Err(error),
                };
            }
        };
        let answer = self.purchase_of(&rt, attempt).await;
        Purchased {
            sale: Some(rt),
            answer,
        }
    }

    /// The chain on sale `rt`, following the sale through as many changes under the
    /// purchase as [`STALE_RETRIES`] allows.
    async fn purchase_of(
        &self,
        rt: &Arc<SaleRuntime>,
        attempt: &Attempt,
    ) -> Result<Answer, StoreError> {
        let mut fresh: Option<Arc<SaleRuntime>> = None;
        for _ in 0..STALE_RETRIES {
            match self
                .purchase_on(fresh.as_ref().unwrap_or(rt), attempt)
                .await?
            {
                Step::Answered(answer) => return Ok(answer),
                Step::Stale => match self.sales.reload(&attempt.sale).await? {
                    Some(reloaded) => fresh = Some(reloaded),
                    None => return Ok(Answer::Refused(Refusal::NoSuchSale)),
                },
            }
        }
        Ok(self.refuse(fresh.as_ref().unwrap_or(rt), Refusal::Contended))
    }

    /// The chain on the sale as `rt` sees it; `Stale` if Redis says the sale changed since.
    async fn purchase_on(&self, rt: &SaleRuntime, attempt: &Attempt) -> Result<Step, StoreError> {
        let now = self.clock.now();
        if let Some(refusal) = self.settled_from_memory(rt, &attempt.user, now) {
            return Ok(Step::Answered(self.refuse(rt, refusal)));
        }
        if let Err(limited) = self.rate_limits.check_sale(&attempt.sale) {
            return Ok(Step::Answered(
                self.refuse(rt, Refusal::RateLimited(limited)),
            ));
        }
        let quantity = match Quantity::new(attempt.quantity) {
            Ok(quantity) if rt.sale.spec.allows_order_of(quantity) => quantity,
            _ => {
                let max = rt.sale.spec.max_per_order();
                let refusal = Refusal::QuantityNotAllowed { max };
                return Ok(Step::Answered(Answer::Refused(refusal)));
            }
        };
        let fingerprint = attempt.fingerprint();
        let mut request = PurchaseRequest {
            user: &attempt.user,
            quantity,
            key: &attempt.key,
            fingerprint: &fingerprint,
            now_ms: unix_ms(now),
            token: None,
        };
        let admission = match self.admit(rt, now, &mut request, attempt).await? {
            Ok(admission) => admission,
            Err(early) => return self.replay_or_refuse(rt, &request, early).await,
        };
        let outcome = self.stock.purchase(rt, &request).await.inspect_err(|_| {
            rt.stats.record(Rejection::Unavailable);
        })?;
        Ok(Step::Answered(match outcome {
            PurchaseOutcome::Accepted(order) => {
                let accepted = Accepted {
                    order_id: order.order_id.clone(),
                    sale_id: attempt.sale.clone(),
                    quantity: order.quantity,
                    status: self.hand_off(admission, order).await,
                };
                Answer::Accepted(accepted)
            }
            PurchaseOutcome::Replayed { order_id, quantity } => {
                Answer::Replayed(self.replayed(order_id, quantity).await?)
            }
            PurchaseOutcome::Refused(refused) => {
                let limit = rt.sale.spec.per_user_limit();
                self.refuse(rt, Refusal::of_stock(refused, limit))
            }
            PurchaseOutcome::Stale => return Ok(Step::Stale),
        }))
    }

    /// Step 4, the checks between the request and the Redis call, in order: the sale window
    /// and kill switch, the purchase token, the shared per-sale limit, then a slot in the
    /// order queue. On success `req` carries the token to spend. (The outer `Err` is the
    /// shared limit's Redis failing.)
    async fn admit(
        &self,
        rt: &SaleRuntime,
        now: OffsetDateTime,
        req: &mut PurchaseRequest<'_>,
        attempt: &Attempt,
    ) -> Result<Result<Admission, Refusal>, StoreError> {
        match rt.sale.spec.window(now) {
            Window::Before => {
                let starts_at = rt.sale.spec.starts_at();
                return Ok(Err(Refusal::NotStarted { starts_at }));
            }
            Window::After => return Ok(Err(Refusal::Ended)),
            Window::Open if rt.paused => return Ok(Err(Refusal::Paused)),
            Window::Open => {}
        }
        req.token = match self.spend_token(rt, req, attempt.token.as_deref()) {
            Ok(token) => token,
            Err(invalid) => return Ok(Err(Refusal::InvalidToken(invalid))),
        };
        if let Some(shared) = &self.shared_sale_limit
            && let Err(limited) = shared.check(&rt.sale.id).await?
        {
            return Ok(Err(Refusal::RateLimited(limited)));
        }
        Ok(self.queue.admit().map_err(|_| Refusal::QueueFull))
    }

    /// The purchase token, verified locally (signature, buyer, sale, generation, expiry): what
    /// the purchase script must spend. Without a token: refused when tokens are required,
    /// otherwise nothing to spend. Whether the token was spent before is Redis's to say.
    fn spend_token(
        &self,
        rt: &SaleRuntime,
        req: &PurchaseRequest<'_>,
        token: Option<&str>,
    ) -> Result<Option<SpendToken>, InvalidToken> {
        let Some(text) = token else {
            return if self.require_token {
                Err(InvalidToken::Missing)
            } else {
                Ok(None)
            };
        };
        let to = Audience {
            sale: &rt.sale.id,
            user: req.user,
        };
        let token = self
            .tokens
            .verify_token(text, to, rt.generation, req.now_ms)?;
        Ok(Some(SpendToken(token.id)))
    }

    /// Step 5: answers a purchase refused before Redis — with its earlier order if the
    /// refusal may hide one and the buyer's record holds the key with this body (a 202, as
    /// the first answer was), with a conflict if it holds the key with another body, else
    /// with the refusal itself. If the record cannot be read, the buyer is told to retry
    /// (the `Err`), never the refusal, which could make a buyer with an order believe they
    /// have none.
    async fn replay_or_refuse(
        &self,
        rt: &SaleRuntime,
        req: &PurchaseRequest<'_>,
        refusal: Refusal,
    ) -> Result<Step, StoreError> {
        if !may_hide_an_order(&refusal) {
            return Ok(Step::Answered(self.refuse(rt, refusal)));
        }
        let lookup = self.stock.replay_of(rt, req).await.inspect_err(|_| {
            rt.stats.record(Rejection::Unavailable);
        })?;
        Ok(Step::Answered(match lookup {
            ReplayLookup::Replayed { order_id, quantity } => {
                Answer::Replayed(self.replayed(order_id, quantity).await?)
            }
            ReplayLookup::Conflict => self.refuse(rt, Refusal::IdempotencyConflict),
            ReplayLookup::NotRecorded => self.refuse(rt, refusal),
            ReplayLookup::Stale => return Ok(Step::Stale),
        }))
    }

    /// The answer to a retry of an accepted purchase: its order, with where it stands now.
    async fn replayed(
        &self,
        order_id: OrderId,
        quantity: Quantity,
    ) -> Result<Accepted, StoreError> {
        Ok(Accepted {
            status: orders::status_of(self.persister.redis(), &order_id).await?,
            sale_id: order_id.sale().clone(),
            order_id,
            quantity,
        })
    }

    /// Step 7: sends an accepted order on its way to the database, as its admission said.
    /// Returns `Confirmed` only if the row is committed now (`caller-runs`). If that
    /// synchronous write fails, the order is still safe in its stream and recovery persists
    /// it: `Pending`.
    async fn hand_off(&self, admission: Admission, order: NewOrder) -> OrderStatus {
        match admission {
            Admission::Queued(permit) => {
                permit.send(order);
                OrderStatus::Pending
            }
            Admission::CallerRuns => {
                // Boxed: a database write's future is ~18 KB, and inline it made every
                // purchase's future (moved into its box per request) that much larger.
                let write = Box::pin(self.persister.persist(std::slice::from_ref(&order)));
                match write.await {
                    Ok(_) => OrderStatus::Confirmed,
                    Err(error) => {
                        tracing::warn!(%error, order = %order.order_id, "caller-runs write failed; recovery will persist it");
                        OrderStatus::Pending
                    }
                }
            }
            Admission::Spill => OrderStatus::Pending,
        }
    }

    /// A refusal, counted in the sale's statistics.
    fn refuse(&self, rt: &SaleRuntime, refusal: Refusal) -> Answer {
        Answer::Refused(self.counted(rt, refusal))
    }

    /// Counts `refusal` in the sale's statistics (for answers given outside
    /// [`Self::purchase`], by the shortcut in front of the router) and returns it.
    pub fn counted(&self, rt: &SaleRuntime, refusal: Refusal) -> Refusal {
        if let Some(reason) = refusal.reason() {
            rt.stats.record(reason);
        }
        refusal
    }
}

/// Whether a purchase refused before Redis may still have an accepted order under its
/// idempotency key: the first attempt may have been accepted while the sale was open, while
/// its token was fresh (only a token this gateway issued to this buyer for this sale expires
/// or goes stale; a forged, malformed or missing one never bought anything) or while the
/// queue had room. Nothing was sold before `starts_at`, and a rate limit answers a pace.
fn may_hide_an_order(refusal: &Refusal) -> bool {
    match refusal {
        Refusal::Ended | Refusal::Paused | Refusal::QueueFull => true,
        Refusal::InvalidToken(invalid) => matches!(
            invalid,
            InvalidToken::Token(TokenError::Expired(_) | TokenError::Stale)
        ),
        Refusal::NoSuchSale
        | Refusal::RateLimited(_)
        | Refusal::QuantityNotAllowed { .. }
        | Refusal::NotStarted { .. }
        | Refusal::SoldOut
        | Refusal::Insufficient { .. }
        | Refusal::LimitReached { .. }
        | Refusal::IdempotencyConflict
        | Refusal::TokenUsed
        | Refusal::Contended => false,
    }
}
