//! The order table's batch insert on both databases: rows land as given, a batch that holds
//! orders already present writes only the others (PostgreSQL's COPY cannot skip a
//! duplicate, so it falls back to the skipping statement), and the count is of rows written.

use flashgate::testing::db::OrderDb;
use flashgate::testing::domain::{EntryId, OrderId, Quantity, SaleId, UserId};
use flashgate::testing::orders::NewOrder;

use crate::support::db::TestDb;

fn order(sale: &str, shard: u32, seq: u64, user: &str) -> NewOrder {
    NewOrder {
        order_id: OrderId::new(
            SaleId::parse(sale).unwrap(),
            shard,
            EntryId::parse(&format!("1700000000000-{seq}")).unwrap(),
        ),
        user: UserId::parse(user).unwrap(),
        quantity: Quantity::new(1 + (seq % 3) as u32).unwrap(),
        created_ms: 1_700_000_000_000 + seq as i64,
    }
}

async fn a_batch_with_orders_already_present_writes_only_the_others(db: TestDb) {
    let store = OrderDb::connect(&db.url()).await.unwrap();
    // User ids as the gateway makes them: short subs as they are, long ones hashed.
    let users = [
        "u-1",
        "Buyer_2",
        "hq0x3yLqtkR0cKq2a9xQmVYxq1sQ4vS0Wm7uBfW1o9aZ",
    ];
    let first: Vec<_> = (0..300)
        .map(|i| order("sale-a", (i % 7) as u32, i, users[(i % 3) as usize]))
        .collect();
    assert_eq!(store.insert(&first, 10).await.unwrap(), 300);

    // Half of this batch is already in the table.
    let second: Vec<_> = (150..450)
        .map(|i| order("sale-a", (i % 7) as u32, i, users[(i % 3) as usize]))
        .collect();
    assert_eq!(store.insert(&second, 20).await.unwrap(), 150);
    assert_eq!(store.insert(&second, 30).await.unwrap(), 0, "all present");

    let rows = store.list(&SaleId::parse("sale-a").unwrap()).await.unwrap();
    assert_eq!(rows.len(), 450);
    for expected in first.iter().chain(&second[150..]) {
        let row = store
            .find(&expected.order_id)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{} is in the table", expected.order_id));
        assert_eq!(row.user_id, expected.user.as_str(), "{}", expected.order_id);
        assert_eq!(
            row.quantity,
            expected.quantity.get(),
            "{}",
            expected.order_id
        );
        assert_eq!(
            row.created_at_ms, expected.created_ms,
            "{}",
            expected.order_id
        );
    }
    let early = store.find(&first[0].order_id).await.unwrap().unwrap();
    assert_eq!(early.persisted_at_ms, 10, "a present row is left as it was");
    let late = store.find(&second[299].order_id).await.unwrap().unwrap();
    assert_eq!(late.persisted_at_ms, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_batch_with_orders_already_present_writes_only_the_others() {
    a_batch_with_orders_already_present_writes_only_the_others(TestDb::postgres()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_batch_with_orders_already_present_writes_only_the_others() {
    a_batch_with_orders_already_present_writes_only_the_others(TestDb::sqlite()).await;
}
