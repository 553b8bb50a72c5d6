//! The order streams: an accepted order's entry in its shard's stream, read back as an order
//! record, and `ack.lua`, which forgets the entries of orders that became rows.

use std::collections::BTreeMap;

use redis::aio::ConnectionLike;
use redis::streams::{StreamId, StreamRangeReply};

use super::{Keys, ShardKeys, StoreError, scripts};
use crate::domain::{EntryId, OrderId, OrderRecord, OrderStatus, Quantity, SaleId, UserId};

/// Looks an order up among those still pending in Redis: its entry in its shard's stream.
/// One round trip.
pub async fn find_pending(
    conn: &mut impl ConnectionLike,
    keys: &Keys,
    order_id: &OrderId,
) -> Result<Option<OrderRecord>, StoreError> {
    let keys = keys.shard(order_id.sale(), order_id.shard());
    read_entry(conn, &keys.orders, &order_id.entry().to_string())
        .await?
        .as_ref()
        .map(|e| {
            record_from_entry(order_id.sale(), order_id.shard(), e)
                .ok_or_else(|| StoreError::unexpected("order stream entry", &e.id))
        })
        .transpose()
}

/// A page of an order stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrderPage {
    /// Entries on the page, readable or not.
    pub entries: usize,
    /// The orders of the readable ones.
    pub orders: Vec<OrderRecord>,
    /// Where the next page starts (after the last entry), if the page was full.
    pub next: Option<String>,
}

/// Up to `count` entries of shard `shard`'s order stream from `from` (an id, `(`id for after
/// it, or `-`).
pub async fn order_page(
    conn: &mut impl ConnectionLike,
    keys: &ShardKeys,
    (sale, shard): (&SaleId, u32),
    from: &str,
    count: usize,
) -> Result<OrderPage, StoreError> {
    let page: StreamRangeReply = redis::cmd("XRANGE")
        .arg(&keys.orders)
        .arg(from)
        .arg("+")
        .arg("COUNT")
        .arg(count)
        .query_async(conn)
        .await?;
    Ok(OrderPage {
        entries: page.ids.len(),
        orders: page
            .ids
            .iter()
            .filter_map(|e| record_from_entry(sale, shard, e))
            .collect(),
        next: page
            .ids
            .last()
            .filter(|_| page.ids.len() == count)
            .map(|last| format!("({}", last.id)),
    })
}

/// Rebuilds a pending order from its stream entry (fields written by `purchase.lua`).
pub fn record_from_entry(sale: &SaleId, shard: u32, entry: &StreamId) -> Option<OrderRecord> {
    let text = |field: &str| entry.get::<String>(field);
    Some(OrderRecord {
        order_id: OrderId::new(sale.clone(), shard, EntryId::parse(&entry.id).ok()?),
        user: UserId::parse(&text("user_id")?).ok()?,
        quantity: Quantity::new(text("quantity")?.parse().ok()?).ok()?,
        created_ms: text("created_ms")?.parse().ok()?,
        status: OrderStatus::Pending,
    })
}

/// The orders of one shard to forget: its keys and (stream entry id, quantity) pairs.
#[derive(Debug, Clone)]
pub struct ShardAcks {
    pub keys: ShardKeys,
    pub orders: Vec<(EntryId, u32)>,
}

/// Most entry ids in one `XDEL` of `ack.lua`: the script hands a group to `XDEL` with
/// Lua's `unpack`, which cannot push more than ~8,000 values, and a cluster's call carries
/// all of a batch's orders on one shard however many they are.
const XDEL_IDS: usize = 1024;

impl ShardAcks {
    /// The shard's entry ids grouped by their orders' quantity, as `ack.lua` takes them: at
    /// most [`XDEL_IDS`] ids a group (a quantity with more gets several groups).
    fn by_quantity(&self) -> Vec<(u32, Vec<EntryId>)> {
        let mut by_quantity: BTreeMap<u32, Vec<EntryId>> = BTreeMap::new();
        for &(entry, quantity) in &self.orders {
            by_quantity.entry(quantity).or_default().push(entry);
        }
        by_quantity
            .into_iter()
            .flat_map(|(quantity, entries)| {
                entries
                    .chunks(XDEL_IDS)
                    .map(|group| (quantity, group.to_vec()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

/// Runs `ack.lua` once for `shards`: forgets their orders, which must already be database
/// rows. Returns how many were still in their streams. Several shards in one call only on a
/// single node (in a cluster their keys live in different slots). Each shard's orders go as
/// groups of one quantity, so Redis forgets a group with one `XDEL`.
pub async fn ack(conn: &mut impl ConnectionLike, shards: &[ShardAcks]) -> Result<u64, StoreError> {
    let groups: Vec<_> = shards.iter().map(ShardAcks::by_quantity).collect();
    let mut cmd = scripts::evalsha(&scripts::ACK, 2 * shards.len());
    for shard in shards {
        cmd.arg(&shard.keys.shard).arg(&shard.keys.orders);
    }
    for groups in &groups {
        cmd.arg(groups.len());
    }
    // Each id written into one reused buffer, which the command copies.
    let mut id = String::with_capacity(41);
    for (quantity, entries) in groups.iter().flatten() {
        cmd.arg(*quantity).arg(entries.len());
        for entry in entries {
            id.clear();
            entry.push_to(&mut id);
            cmd.arg(id.as_str());
        }
    }
    Ok(scripts::run(&scripts::ACK, &cmd, conn).await?)
}

/// The entry `entry` of the stream `stream`, if it is still there (one `XRANGE`).
pub(super) async fn read_entry(
    conn: &mut impl ConnectionLike,
    stream: &str,
    entry: &str,
) -> Result<Option<StreamId>, StoreError> {
    let reply: StreamRangeReply = redis::cmd("XRANGE")
        .arg(stream)
        .arg(entry)
        .arg(entry)
        .query_async(conn)
        .await?;
    Ok(reply.ids.into_iter().next())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn entry(id: &str, fields: &[(&str, &str)]) -> StreamId {
        let map: HashMap<String, redis::Value> = fields
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    redis::Value::BulkString(v.as_bytes().to_vec()),
                )
            })
            .collect();
        StreamId {
            id: id.into(),
            map,
            ..StreamId::default()
        }
    }

    #[test]
    fn stream_entries_rebuild_their_order_strictly() {
        let sale = SaleId::parse("s").unwrap();
        let good = entry(
            "17-3",
            &[
                ("user_id", "bob"),
                ("quantity", "2"),
                ("created_ms", "1700"),
            ],
        );
        let rec = record_from_entry(&sale, 4, &good).unwrap();
        assert_eq!(rec.order_id.to_string(), "s.4.17-3");
        assert_eq!(
            (rec.user.as_str(), rec.quantity.get(), rec.created_ms),
            ("bob", 2, 1700)
        );
        let zero = entry(
            "17-3",
            &[("user_id", "bob"), ("quantity", "0"), ("created_ms", "1")],
        );
        assert!(record_from_entry(&sale, 4, &zero).is_none());
        let missing = entry("17-3", &[("user_id", "bob"), ("quantity", "1")]);
        assert!(record_from_entry(&sale, 4, &missing).is_none());
        let bad_user = entry(
            "17-3",
            &[("user_id", "b b"), ("quantity", "1"), ("created_ms", "1")],
        );
        assert!(record_from_entry(&sale, 4, &bad_user).is_none());
    }

    #[test]
    fn acks_group_by_quantity_and_no_group_outgrows_one_xdel() {
        let sale = SaleId::parse("s").unwrap();
        let entry = |ms: usize| EntryId::parse(&format!("{ms}-0")).unwrap();
        let mut orders: Vec<(EntryId, u32)> = (0..XDEL_IDS + 3).map(|i| (entry(i), 1)).collect();
        orders.insert(5, (entry(XDEL_IDS + 10), 3));
        orders.push((entry(XDEL_IDS + 11), 2));
        let acks = ShardAcks {
            keys: crate::store::Keys::new("t").shard(&sale, 0),
            orders,
        };
        let groups = acks.by_quantity();
        let shape: Vec<(u32, usize)> = groups.iter().map(|(q, ids)| (*q, ids.len())).collect();
        assert_eq!(shape, [(1, XDEL_IDS), (1, 3), (2, 1), (3, 1)]);
        // Every order once, under its own quantity.
        let mut seen: Vec<(EntryId, u32)> = groups
            .iter()
            .flat_map(|(q, ids)| ids.iter().map(|id| (*id, *q)))
            .collect();
        let mut expected = acks.orders.clone();
        seen.sort();
        expected.sort();
        assert_eq!(seen, expected);
    }
}
