//! The Lua scripts, compiled into the binary and invoked by SHA.
//!
//! `redis::Script` sends `EVALSHA` and, on `NOSCRIPT` (e.g. after a Redis restart emptied the
//! script cache), loads the script and retries once, so callers never see a missing script.

use std::sync::LazyLock;

use redis::Script;

/// Takes stock for one order on one shard and appends the durable order record.
pub static PURCHASE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../lua/purchase.lua")));
/// Lends stock from a donor shard to a borrower's home shard.
pub static BORROW: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../lua/borrow.lua")));
/// Credits a loan to its recipient shard at most once (recovery path).
pub static CREDIT: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../lua/credit.lua")));
/// Closes a loan on its donor shard after the recipient was credited.
pub static SETTLE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../lua/settle.lua")));
/// Forgets orders that became database rows (ack, delete, pending count).
pub static ACK: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("../../lua/ack.lua")));
/// Spends a challenge and, when issuance is capped, counts the purchase token issued for it.
pub static ISSUE_TOKEN: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../lua/issue_token.lua")));
/// GCRA rate limit kept in Redis, shared by every gateway instance.
pub static GCRA: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../lua/gcra.lua")));
