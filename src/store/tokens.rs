//! The one Redis call of purchase-token issuance: spend the challenge, within the issuance
//! cap. The call is keyed by the challenge and the token id, so running it twice answers the
//! same.

use redis::Value;

use super::{Keys, RedisConn, StoreError, scripts};
use crate::domain::{Challenge, PurchaseToken, SaleId};

/// What became of a request to exchange an answered challenge for a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Issue {
    /// The challenge is spent; the token may be handed out.
    Issued,
    /// The challenge was exchanged for another token before. (A re-send of this very call
    /// answers `Issued` again: the spent marker names the token.)
    ChallengeUsed,
    /// As many unexpired tokens as the cap allows are out; the oldest expires in `wait_ms`.
    Capped { wait_ms: u64 },
}

/// The inputs of one `issue_token.lua` call.
#[derive(Debug, Clone, Copy)]
pub struct IssueCall<'a> {
    pub sale: &'a SaleId,
    pub challenge: &'a Challenge,
    pub token: &'a PurchaseToken,
    pub now_ms: i64,
    /// Most unexpired tokens out for the sale (0 = no cap).
    pub cap: u64,
    /// How long past an expiry its record is kept (instances' clocks may disagree).
    pub margin_ms: u64,
}

/// Runs `issue_token.lua` in the sale's slot.
pub async fn issue(
    conn: &mut RedisConn,
    keys: &Keys,
    call: &IssueCall<'_>,
) -> Result<Issue, StoreError> {
    let reply: Vec<Value> = scripts::ISSUE_TOKEN
        .key(keys.spent_challenge(call.sale, call.challenge.id))
        .key(keys.issued_tokens(call.sale))
        .arg(call.now_ms)
        .arg(call.challenge.expires_ms)
        .arg(call.token.id.to_hex())
        .arg(call.token.expires_ms)
        .arg(call.cap)
        .arg(call.margin_ms)
        .invoke_async(conn)
        .await?;
    decode(&reply).ok_or_else(|| StoreError::unexpected("issue_token.lua", &reply))
}

fn decode(reply: &[Value]) -> Option<Issue> {
    let text: String = redis::from_redis_value_ref(reply.first()?).ok()?;
    Some(match text.as_str() {
        "ok" => Issue::Issued,
        "used" => Issue::ChallengeUsed,
        "capped" => {
            let wait: i64 = redis::from_redis_value_ref(reply.get(1)?).ok()?;
            Issue::Capped {
                wait_ms: u64::try_from(wait).ok()?,
            }
        }
        _ => return None,
    })
}
