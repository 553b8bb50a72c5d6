//! A buyer's record on their home shard, as `purchase.lua` writes it: the units they hold,
//! then one line per accepted order,
//! `<held>("\n<key> <order id> <quantity> <fingerprint>"[" #<token id>"][" ~"])*`, where
//! `" ~"` marks an order whose units `return_units.lua` gave back to the sale; once handed
//! over to a new home by a live reshard, the old shard keeps `>` and the record (a
//! tombstone). Read by the buyer's own order listing, by the sold-out holder load and by
//! reconciliation; only the scripts write it.

use crate::domain::{IdempotencyKey, OrderId, Quantity};

/// One accepted order in a buyer's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedOrder {
    /// The idempotency key it was accepted under.
    pub key: IdempotencyKey,
    pub order_id: OrderId,
    pub quantity: Quantity,
    /// Whether the order's units were given back to the sale (it was cancelled or expired).
    pub returned: bool,
}

/// A buyer's record, parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuyerRecord {
    /// Units the buyer holds in the sale.
    pub held: u64,
    /// Their accepted orders, oldest first.
    pub orders: Vec<RecordedOrder>,
}

/// Why a stored record could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed buyer record: {0:?}")]
pub struct MalformedRecord(pub String);

impl BuyerRecord {
    /// Parses the text `purchase.lua` stored.
    pub fn parse(text: &str) -> Result<Self, MalformedRecord> {
        let bad = || MalformedRecord(text.to_owned());
        let mut lines = text.split('\n');
        let held = lines
            .next()
            .and_then(|held| held.parse().ok())
            .ok_or_else(bad)?;
        let orders = lines
            .map(|line| parse_line(line).ok_or_else(bad))
            .collect::<Result<_, _>>()?;
        Ok(Self { held, orders })
    }

    /// Parses a buyer hash's value: a record, or the tombstone of one that was handed over
    /// to the buyer's home in a newer layout (`handed_over`).
    pub fn parse_stored(text: &str) -> Result<(Self, bool), MalformedRecord> {
        match text.strip_prefix(super::migration::TOMBSTONE) {
            Some("") => Ok((Self::default(), true)),
            Some(record) => Ok((Self::parse(record)?, true)),
            None => Ok((Self::parse(text)?, false)),
        }
    }

    /// Units of the recorded orders not given back; equal to `held` unless something
    /// outside the scripts changed the record.
    pub fn ordered_units(&self) -> u64 {
        self.orders
            .iter()
            .filter(|order| !order.returned)
            .map(|order| u64::from(order.quantity.get()))
            .sum()
    }
}

/// The last field of an order's line once its units were given back (`lua/return_units.lua`).
const RETURNED: &str = "~";

fn parse_line(line: &str) -> Option<RecordedOrder> {
    let mut fields = line.split(' ');
    let key = IdempotencyKey::parse(fields.next()?).ok()?;
    let order_id = OrderId::parse(fields.next()?).ok()?;
    let quantity = Quantity::new(fields.next()?.parse().ok()?).ok()?;
    let _fingerprint = fields.next()?;
    let mut next = fields.next();
    if let Some(token) = next.filter(|field| field.starts_with('#')) {
        token.strip_prefix('#')?;
        next = fields.next();
    }
    let returned = match next {
        None => false,
        Some(RETURNED) => true,
        Some(_) => return None,
    };
    fields.next().is_none().then_some(RecordedOrder {
        key,
        order_id,
        quantity,
        returned,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_lists_its_orders_in_order() {
        let record =
            BuyerRecord::parse("3\nk1 s.0.1-0 1 ab12\nk2 s.0.2-5 2 cd34").expect("well formed");
        assert_eq!(record.held, 3);
        assert_eq!(record.ordered_units(), 3);
        let ids: Vec<String> = record
            .orders
            .iter()
            .map(|o| o.order_id.to_string())
            .collect();
        assert_eq!(ids, ["s.0.1-0", "s.0.2-5"]);
        assert_eq!(record.orders[1].key.as_str(), "k2");
    }

    #[test]
    fn spent_tokens_and_tombstones_are_read() {
        let text = "2\nk1 s.0.1-0 1 ab #00ff\nk2 s.0.2-0 1 cd";
        assert_eq!(BuyerRecord::parse(text).unwrap().held, 2);
        let (record, handed_over) = BuyerRecord::parse_stored(&format!(">{text}")).unwrap();
        assert!(handed_over);
        assert_eq!(record.orders.len(), 2);
        assert_eq!(
            BuyerRecord::parse_stored(">").unwrap(),
            (BuyerRecord::default(), true)
        );
        assert!(!BuyerRecord::parse_stored(text).unwrap().1);
    }

    #[test]
    fn returned_orders_are_read_and_hold_nothing() {
        let record =
            BuyerRecord::parse("1\nk1 s.0.1-0 1 ab #00ff ~\nk2 s.0.2-0 2 cd ~\nk3 s.0.3-0 1 ef")
                .expect("well formed");
        let returned: Vec<bool> = record.orders.iter().map(|o| o.returned).collect();
        assert_eq!(returned, [true, true, false]);
        assert_eq!(record.ordered_units(), 1);
        assert!(BuyerRecord::parse("1\nk1 s.0.1-0 1 ab ~ #00ff").is_err());
        assert!(BuyerRecord::parse("1\nk1 s.0.1-0 1 ab ~ ~").is_err());
    }

    #[test]
    fn a_record_without_orders_holds_what_it_says() {
        assert_eq!(
            BuyerRecord::parse("0").unwrap(),
            BuyerRecord {
                held: 0,
                orders: vec![]
            }
        );
    }

    #[test]
    fn malformed_records_are_refused() {
        for text in [
            "",
            "x",
            "1\nk1 s.0.1-0",
            "1\nk1 s.0.1-0 0 fp",
            "1\nk1 bad 1 fp",
            "1\n",
            "1\nk1 s.0.1-0 1 fp tok",
            "1\nk1 s.0.1-0 1 fp #tok x",
        ] {
            assert!(BuyerRecord::parse(text).is_err(), "{text:?}");
        }
    }
}
