//! The cluster's slot map as Redis tells it (`CLUSTER SLOTS`), and the reservation of a
//! new layout's shard indices placed by it (`domain::placement` decides which).

use redis::Value;
use redis::aio::ConnectionLike;

use super::{Keys, RedisTimeouts, StoreError};
use crate::domain::placement::{Placement, SlotMap};
use crate::domain::{SaleId, ShardSet};

/// The masters serving each slot, from `CLUSTER SLOTS` (any node answers it).
pub async fn slot_map(conn: &mut impl ConnectionLike) -> Result<SlotMap, StoreError> {
    let reply: Value = redis::cmd("CLUSTER").arg("SLOTS").query_async(conn).await?;
    let Value::Array(ranges) = &reply else {
        return Err(StoreError::unexpected("CLUSTER SLOTS", &reply));
    };
    let ranges = ranges
        .iter()
        .map(|range| {
            slot_range(range).ok_or_else(|| StoreError::unexpected("CLUSTER SLOTS", range))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(SlotMap::from_ranges(ranges)?)
}

/// The masters serving each slot, from `CLUSTER SLOTS` on a connection of its own to the
/// node at `url` (closed after the call).
pub async fn slot_map_from(url: &str, timeouts: RedisTimeouts) -> Result<SlotMap, StoreError> {
    let client = redis::Client::open(super::conn::no_delay(url)?)?;
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeouts.connect))
        .set_response_timeout(Some(timeouts.response));
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    slot_map(&mut conn).await
}

/// One entry of `CLUSTER SLOTS`: `[first, last, [host, port, id, ..], replicas..]`; the
/// master is named by its node id (by `host:port` if the reply has none).
fn slot_range(entry: &Value) -> Option<(u16, u16, String)> {
    let Value::Array(parts) = entry else {
        return None;
    };
    let (Value::Int(first), Value::Int(last), Value::Array(master)) =
        (parts.first()?, parts.get(1)?, parts.get(2)?)
    else {
        return None;
    };
    let name = match (master.first(), master.get(1), master.get(2)) {
        (_, _, Some(Value::BulkString(id))) => String::from_utf8_lossy(id).into_owned(),
        (Some(Value::BulkString(host)), Some(Value::Int(port)), _) => {
            format!("{}:{port}", String::from_utf8_lossy(host))
        }
        _ => return None,
    };
    Some((
        u16::try_from(*first).ok()?,
        u16::try_from(*last).ok()?,
        name,
    ))
}

/// Reserves `count` fresh shard indices for sale `id`, placed by `map`: indices are taken
/// from the sale's `next_shard` counter upward (`floor` for a record written before the
/// counter existed) and accepted while their master holds less than its share. The walk's
/// length is worked out first and reserved in one `HINCRBY`, so the indices it walks past
/// are never handed out again; if a concurrent reservation got there first, the walk goes
/// on from the range it got. `None` if the sale would go past its last shard index.
pub async fn reserve_placed(
    conn: &mut impl ConnectionLike,
    keys: &Keys,
    id: &SaleId,
    count: u32,
    floor: u32,
    map: &SlotMap,
) -> Result<Option<ShardSet>, StoreError> {
    let slot_of = |index| Keys::shard_slot(id, index);
    let mut placement = Placement::new(map, count);
    let mut start = next_unreserved(conn, keys, id).await?.unwrap_or(floor);
    while !placement.is_complete() {
        let Some(span) = placement.span_from(start, slot_of) else {
            return Ok(None);
        };
        let base = super::sales::reserve_shards(conn, keys, id, span, floor).await?;
        for index in base..base + span {
            placement.offer(index, slot_of(index));
        }
        start = base + span;
    }
    Ok(placement.into_set().ok())
}

/// The sale's `next_shard` counter, if it has one.
async fn next_unreserved(
    conn: &mut impl ConnectionLike,
    keys: &Keys,
    id: &SaleId,
) -> Result<Option<u32>, StoreError> {
    Ok(redis::cmd("HGET")
        .arg(keys.sale_meta(id))
        .arg("next_shard")
        .query_async(conn)
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    #[test]
    fn a_cluster_slots_entry_names_its_master_by_node_id() {
        let entry = Value::Array(vec![
            Value::Int(0),
            Value::Int(5460),
            Value::Array(vec![bulk("127.0.0.1"), Value::Int(7000), bulk("abc")]),
            Value::Array(vec![bulk("127.0.0.1"), Value::Int(7003), bulk("def")]),
        ]);
        assert_eq!(slot_range(&entry), Some((0, 5460, "abc".to_owned())));
        let old = Value::Array(vec![
            Value::Int(5461),
            Value::Int(16_383),
            Value::Array(vec![bulk("10.0.0.1"), Value::Int(7001)]),
        ]);
        assert_eq!(
            slot_range(&old),
            Some((5461, 16_383, "10.0.0.1:7001".to_owned()))
        );
        assert_eq!(slot_range(&Value::Int(1)), None);
    }
}
