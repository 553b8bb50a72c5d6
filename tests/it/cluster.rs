//! The purchase path against a real 3-master Redis Cluster: the shards of one sale live in
//! different slots (and so on different nodes), and the invariants hold all the same.

use flashgate::testing::store::RedisTarget;

use crate::support::app::spawn_app;
use crate::support::redis::RedisCluster;
use crate::support::scenarios;

/// One cluster for all scenarios (starting one takes seconds); each scenario has its own
/// gateway and key prefix.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_keeps_every_invariant() {
    let cluster = RedisCluster::start();
    let target = RedisTarget::Cluster(cluster.urls());

    let app = spawn_app(&target).await;
    scenarios::distinct_buyers_storm_sells_exactly_the_stock(&app, "c8", 100, 8, 10_000).await;
    scenarios::distinct_buyers_storm_sells_exactly_the_stock(&app, "c64", 100, 64, 10_000).await;
    scenarios::distinct_buyers_storm_sells_exactly_the_stock(&app, "c1", 100, 1, 2_000).await;
    scenarios::one_buyer_storm_respects_the_limit(&app, "climit", 8, 2, 50).await;
    scenarios::mixed_quantities_sell_every_unit(&app, "cmixed", 101, 8).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shards_of_one_sale_spread_over_the_cluster_nodes() {
    let cluster = RedisCluster::start();
    let app = spawn_app(&RedisTarget::Cluster(cluster.urls())).await;
    app.create_sale("spread", &crate::support::app::live_sale(64, 16, 1, 1))
        .await;
    let sale = flashgate::testing::domain::SaleId::parse("spread").unwrap();
    let mut nodes_with_shards = 0;
    for node in cluster.nodes() {
        let client = redis::Client::open(node.url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let mut holds = false;
        for shard in 0..16 {
            let key = app.keys.shard(&sale, shard).shard;
            let slot: u16 = redis::cmd("CLUSTER")
                .arg("KEYSLOT")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .unwrap();
            assert_eq!(slot, flashgate::testing::store::keys::hash_slot(&key));
            let count: u64 = redis::cmd("CLUSTER")
                .arg("COUNTKEYSINSLOT")
                .arg(slot)
                .query_async(&mut conn)
                .await
                .unwrap();
            holds |= count > 0;
        }
        nodes_with_shards += usize::from(holds);
    }
    assert_eq!(
        nodes_with_shards, 3,
        "16 shards should land on all 3 masters"
    );
}
