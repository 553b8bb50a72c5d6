//! The loan calls between shards: `borrow.lua` on the donor, `credit.lua` on the recipient,
//! `settle.lua` on the donor again, and the listing of a donor's open loans for recovery.

use redis::aio::ConnectionLike;

use super::{RedisConn, ShardKeys, StoreError, scripts};

/// A loan of stock from a donor shard, to be credited to the borrower's home shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loan {
    /// Unique loan id.
    pub id: String,
    /// The shard that lent the units.
    pub donor: u32,
    /// Units lent.
    pub units: u64,
}

/// What `borrow.lua` answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BorrowReply {
    /// Units lent now (0 if the donor was empty).
    pub taken: u64,
    /// Units the donor still holds.
    pub stock_left: u64,
}

/// Runs `borrow.lua` on `donor_keys`: lends up to `want` units to shard `recipient`. Safe to
/// run twice with the same `loan_id`: a second run (a re-send) answers the first run's reply
/// and takes nothing, for as long as the connection's [`RedisConn::replay_window_ms`].
pub async fn borrow(
    conn: &mut RedisConn,
    donor_keys: &ShardKeys,
    loan_id: &str,
    want: u64,
    recipient: u32,
    now_ms: i64,
) -> Result<BorrowReply, StoreError> {
    let keep_ms = conn.replay_window_ms();
    let reply: (i64, i64, i64) = scripts::BORROW
        .key(&donor_keys.shard)
        .key(&donor_keys.loans)
        .key(donor_keys.loan_marker(loan_id))
        .arg(loan_id)
        .arg(want)
        .arg(recipient)
        .arg(now_ms)
        .arg(keep_ms)
        .invoke_async(conn)
        .await?;
    let (Ok(taken), Ok(stock_left)) = (u64::try_from(reply.0), u64::try_from(reply.1)) else {
        return Err(StoreError::unexpected("borrow.lua", &reply));
    };
    Ok(BorrowReply { taken, stock_left })
}

/// Runs `credit.lua`: credits `loan` to the recipient shard unless it already was.
pub async fn credit(
    conn: &mut impl ConnectionLike,
    recipient_keys: &ShardKeys,
    loan_id: &str,
    units: u64,
) -> Result<bool, StoreError> {
    let credited: i64 = scripts::CREDIT
        .key(&recipient_keys.shard)
        .key(&recipient_keys.credited)
        .arg(loan_id)
        .arg(units)
        .invoke_async(conn)
        .await?;
    Ok(credited == 1)
}

/// Runs `settle.lua` on the donor: closes the loan once its units are credited.
pub async fn settle(
    conn: &mut impl ConnectionLike,
    donor_keys: &ShardKeys,
    loan_id: &str,
) -> Result<bool, StoreError> {
    let settled: i64 = scripts::SETTLE
        .key(&donor_keys.shard)
        .key(&donor_keys.loans)
        .arg(loan_id)
        .invoke_async(conn)
        .await?;
    Ok(settled == 1)
}

/// The loans `donor_keys`' shard made and that are not settled yet, by id. An unreadable
/// record is logged and left out.
pub async fn open_loans(
    conn: &mut impl ConnectionLike,
    donor_keys: &ShardKeys,
) -> Result<Vec<(String, LoanRecord)>, StoreError> {
    let records: Vec<(String, String)> = redis::cmd("HGETALL")
        .arg(&donor_keys.loans)
        .query_async(conn)
        .await?;
    Ok(records
        .into_iter()
        .filter_map(|(id, record)| match LoanRecord::parse(&record) {
            Some(loan) => Some((id, loan)),
            None => {
                tracing::error!(key = %donor_keys.loans, loan = %id, record, "unreadable loan record");
                None
            }
        })
        .collect())
}

/// Units of the loan records of `keys`' shard (`<recipient>|<units>|<created ms>`), read
/// by `HSCAN` pages of about `page` fields.
pub async fn units_on_loan(
    conn: &mut impl ConnectionLike,
    keys: &ShardKeys,
    page: usize,
) -> Result<u64, StoreError> {
    let mut cursor = 0u64;
    let mut units = 0;
    loop {
        let (next, fields): (u64, Vec<(String, String)>) = redis::cmd("HSCAN")
            .arg(&keys.loans)
            .arg(cursor)
            .arg("COUNT")
            .arg(page)
            .query_async(conn)
            .await?;
        for (loan, record) in &fields {
            let loan_units = record.split('|').nth(1).and_then(|u| u.parse::<u64>().ok());
            units += loan_units.ok_or_else(|| StoreError::unexpected("loan record", loan))?;
        }
        if next == 0 {
            return Ok(units);
        }
        cursor = next;
    }
}

/// A loan record as stored by `borrow.lua`: `<recipient>|<units>|<created ms>`.
#[derive(Debug, PartialEq, Eq)]
pub struct LoanRecord {
    /// The shard the units were lent to.
    pub recipient: u32,
    /// Units lent.
    pub units: u64,
    /// When the loan was made, unix ms.
    pub created_ms: i64,
}

impl LoanRecord {
    fn parse(record: &str) -> Option<Self> {
        let mut parts = record.split('|');
        let loan = Self {
            recipient: parts.next()?.parse().ok()?,
            units: parts.next()?.parse().ok()?,
            created_ms: parts.next()?.parse().ok()?,
        };
        parts.next().is_none().then_some(loan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loan_records_parse_strictly() {
        assert_eq!(
            LoanRecord::parse("3|2|1700000000000"),
            Some(LoanRecord {
                recipient: 3,
                units: 2,
                created_ms: 1_700_000_000_000
            })
        );
        assert_eq!(LoanRecord::parse("3|2"), None);
        assert_eq!(LoanRecord::parse("3|x|1"), None);
        assert_eq!(LoanRecord::parse("3|2|1|9"), None);
    }
}
