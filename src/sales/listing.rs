//! The list of every sale for operators: one line each, read from Redis now.

use serde::Serialize;
use time::OffsetDateTime;

use super::registry::SaleRegistry;
use super::report::{SaleFigures, UnreadableSale};
use crate::domain::{SaleId, SaleState};
use crate::store::StoreError;

/// One sale's line in the list.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SaleSummary {
    pub sale_id: SaleId,
    pub state: SaleState,
    pub stock_total: u64,
    pub remaining: u64,
    /// The number of stock shards.
    pub shards: u32,
}

/// A sale's line: its summary, or (state `unreadable`) why its record cannot be read.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum SaleListing {
    Readable(SaleSummary),
    Unreadable(UnreadableSale),
}

impl SaleRegistry {
    /// Every stored sale, sorted by id. `Err` only when Redis itself failed.
    pub async fn list(&self, now: OffsetDateTime) -> Result<Vec<SaleListing>, StoreError> {
        let mut listing = Vec::new();
        for id in self.ids().await? {
            // A sale deleted since the ids were read is simply not listed.
            match self.figures(&id, now).await? {
                Some(SaleFigures::Readable(status)) => {
                    listing.push(SaleListing::Readable(SaleSummary {
                        shards: u32::try_from(status.shards.len()).unwrap_or(u32::MAX),
                        sale_id: status.sale_id,
                        state: status.state,
                        stock_total: status.stock_total,
                        remaining: status.remaining,
                    }));
                }
                Some(SaleFigures::Unreadable(unreadable)) => {
                    listing.push(SaleListing::Unreadable(unreadable));
                }
                None => {}
            }
        }
        Ok(listing)
    }
}
