//! Stock loans between shards: how a buyer whose home shard ran dry takes stock from others,
//! and how a loan abandoned by a dead gateway is finished by the recovery worker.
//!
//! Lifecycle: `borrow` (donor: stock -> lent, loan record) -> credit (home: +stock, by id,
//! at most once; done inside `purchase.lua` or by `credit.lua`) -> `settle` (donor: lent -> 0,
//! record deleted). Each step is one atomic script, and each unit is counted in some shard's
//! `stock` or `lent` throughout, so no unit is lost or duplicated, whatever step a crash hits.

use futures_util::future::join_all;
use uuid::Uuid;

use super::shard::donors;
use super::{SaleRuntime, StockEngine};
use crate::domain::SaleId;
use crate::store::StoreError;
use crate::store::loans::{self, Loan};

impl StockEngine {
    /// Borrows up to `need` units for shard `home` from donors not known to be empty,
    /// visiting them from a random offset. Returns the loans made (possibly fewer units
    /// than asked, possibly none). On error, loans already made stay recorded in Redis and
    /// the recovery worker credits them to `home`.
    pub(crate) async fn borrow_for(
        &self,
        rt: &SaleRuntime,
        home: u32,
        mut need: u64,
        now_ms: i64,
    ) -> Result<Vec<Loan>, StoreError> {
        let mut loans = Vec::new();
        let mut conn = self.conn.clone();
        let stocked = rt.stocked();
        for donor in donors(home, &stocked, rand::random()) {
            if need == 0 {
                break;
            }
            if rt.shard_seems_empty(donor) {
                continue;
            }
            let id = Uuid::now_v7().simple().to_string();
            let reply = loans::borrow(&mut conn, rt.keys(donor), &id, need, home, now_ms).await?;
            rt.observe_shard(donor, reply.stock_left);
            if reply.taken > 0 {
                need -= reply.taken.min(need);
                loans.push(Loan {
                    id,
                    donor,
                    units: reply.taken,
                });
            }
        }
        Ok(loans)
    }

    /// Settles `loans` (already credited to their recipient) on their donors. A failure is
    /// logged and left to the recovery worker: settling is idempotent.
    pub(crate) async fn settle_loans(&self, sale: &SaleId, loans: &[Loan]) {
        let calls = loans.iter().map(|loan| {
            let mut conn = self.conn.clone();
            let keys = self.keys().shard(sale, loan.donor);
            async move { (loan, loans::settle(&mut conn, &keys, &loan.id).await) }
        });
        for (loan, result) in join_all(calls).await {
            if let Err(error) = result {
                tracing::warn!(%sale, loan = %loan.id, %error, "loan not settled; recovery will");
            }
        }
    }

    /// Finishes loans older than `grace_ms` on every shard that may lend (the layout's, and
    /// the draining one's; an earlier layout was emptied of loans before it was dropped): credits them to their
    /// recipient (no-op if already credited) and settles them. Safe to run concurrently with
    /// live traffic and with other gateway instances. Returns how many loans it finished.
    pub async fn recover_loans(
        &self,
        rt: &SaleRuntime,
        now_ms: i64,
        grace_ms: i64,
    ) -> Result<usize, StoreError> {
        let mut conn = self.redis.bulk().await?;
        let mut finished = 0;
        for donor in rt.stocked() {
            let donor_keys = self.keys().shard(&rt.sale.id, donor);
            for (id, loan) in loans::open_loans(&mut conn, &donor_keys).await? {
                if loan.created_ms + grace_ms > now_ms {
                    continue;
                }
                let recipient_keys = self.keys().shard(&rt.sale.id, loan.recipient);
                loans::credit(&mut conn, &recipient_keys, &id, loan.units).await?;
                loans::settle(&mut conn, &donor_keys, &id).await?;
                finished += 1;
            }
        }
        Ok(finished)
    }
}
