//! The Lua scripts, compiled into the binary and invoked by SHA.
//!
//! `redis::Script` (and [`run`], for the commands built with [`evalsha`]) sends `EVALSHA`
//! and, on `NOSCRIPT` (e.g. after a Redis restart emptied the script cache), loads the script
//! and retries once, so callers never see a missing script.

use std::sync::LazyLock;

use redis::aio::ConnectionLike;
use redis::{Cmd, ErrorKind, FromRedisValue, RedisResult, Script, ServerErrorKind};

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
/// Moves an order the database keeps refusing from its stream to the shard's dead letters.
pub static DEAD_LETTER: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../lua/dead_letter.lua")));
/// Drops a dead letter on an operator's word, counting its units as dropped.
pub static DROP_DEAD_LETTER: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../lua/drop_dead_letter.lua")));
/// Spends a challenge and, when issuance is capped, counts the purchase token issued for it.
pub static ISSUE_TOKEN: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../lua/issue_token.lua")));
/// Changes a sale's record atomically, if it is as the caller read it.
pub static SALE_UPDATE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../lua/sale_update.lua")));
/// Creates a shard with its first units unless it exists.
pub static INIT_SHARD: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../lua/init_shard.lua")));
/// Hands buyers' records over from a draining shard, leaving tombstones.
pub static EXPORT_BUYER: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../lua/export_buyer.lua")));
/// Takes handed-over buyer records at their new home, unless already there.
pub static IMPORT_BUYERS: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../lua/import_buyers.lua")));
/// Adds units to a shard, or removes unsold ones, once per operator change.
pub static STOCK_CHANGE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../lua/stock_change.lua")));
/// Gives a cancelled or expired order's units back to its buyer's home shard, once.
pub static RETURN_UNITS: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../lua/return_units.lua")));
/// GCRA rate limit kept in Redis, shared by every gateway instance.
pub static GCRA: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../lua/gcra.lua")));

/// An `EVALSHA` of `script` over `keys` keys, to which the caller appends the keys, then the
/// arguments. Built straight into the command's one buffer: `ScriptInvocation` allocates a
/// buffer per key and per argument and copies them again into the command, and a batch of
/// purchases carries fourteen of them per purchase.
pub fn evalsha(script: &Script, keys: usize) -> Cmd {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(script.get_hash()).arg(keys);
    cmd
}

/// Runs `cmd`, an [`evalsha`] of `script`; on `NOSCRIPT` loads the script and runs `cmd` once
/// more, as `Script::invoke_async` does.
pub async fn run<T: FromRedisValue>(
    script: &Script,
    cmd: &Cmd,
    conn: &mut impl ConnectionLike,
) -> RedisResult<T> {
    match cmd.query_async(conn).await {
        Err(err) if err.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
            script.load_async(conn).await?;
            cmd.query_async(conn).await
        }
        other => other,
    }
}
