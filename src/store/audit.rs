//! The audit trail of a sale: a Redis list of JSON entries, newest first, capped.

use redis::aio::ConnectionLike;

use super::{Keys, StoreError};
use crate::domain::{AuditEntry, SaleId};

/// Entries kept per sale; older ones are trimmed as new ones come.
pub const KEPT_ENTRIES: usize = 500;

/// Prepends `entry` to the audit list of `sale` and trims the list to [`KEPT_ENTRIES`].
///
/// Both commands go in one pipeline on the sale's own slot. They need not be atomic: a list
/// left one entry too long (a failure between them) is trimmed by the next append. A
/// re-sent append records the entry twice, which overstates nothing but the log's length.
pub async fn append(
    conn: &mut impl ConnectionLike,
    keys: &Keys,
    sale: &SaleId,
    entry: &AuditEntry,
) -> Result<(), StoreError> {
    let key = keys.sale_audit(sale);
    let json = serde_json::to_string(entry).map_err(|source| StoreError::Corrupt {
        what: "audit entry",
        source: source.into(),
    })?;
    redis::pipe()
        .cmd("LPUSH")
        .arg(&key)
        .arg(json)
        .ignore()
        .cmd("LTRIM")
        .arg(&key)
        .arg(0)
        .arg(KEPT_ENTRIES - 1)
        .ignore()
        .query_async::<()>(conn)
        .await?;
    Ok(())
}

/// The audit entries of `sale`, newest first. An entry that does not decode (written by
/// another version) is left out rather than hiding the others.
pub async fn list(
    conn: &mut impl ConnectionLike,
    keys: &Keys,
    sale: &SaleId,
) -> Result<Vec<AuditEntry>, StoreError> {
    let raw: Vec<String> = redis::cmd("LRANGE")
        .arg(keys.sale_audit(sale))
        .arg(0)
        .arg(KEPT_ENTRIES - 1)
        .query_async(conn)
        .await?;
    Ok(raw
        .iter()
        .filter_map(|json| serde_json::from_str(json).ok())
        .collect())
}
