//! Sell-out under a burst: the holders of a sold-out sale (the only buyers who may have an
//! order to replay) are loaded once per instance, in `HSCAN` pages, off the request path —
//! never one O(buyers) command per request — and then buyers who hold nothing are answered
//! from memory.

use std::collections::HashMap;

use reqwest::StatusCode;

use crate::support::app::{TestApp, live_sale, spawn_single};
use crate::support::scenarios::{self, tally};

/// `INFO commandstats` as command → calls.
async fn command_calls(app: &TestApp) -> HashMap<String, u64> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut app.redis.clone())
        .await
        .unwrap();
    info.lines()
        .filter_map(|line| {
            let (name, stats) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = stats
                .strip_prefix("calls=")?
                .split(',')
                .next()?
                .parse()
                .ok()?;
            Some((name.to_owned(), calls))
        })
        .collect()
}

fn buyers(prefix: &str, n: usize) -> Vec<(String, String, u32)> {
    (0..n)
        .map(|i| (format!("{prefix}{i}"), "k".to_owned(), 1))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sell_out_burst_loads_the_holders_once_off_the_request_path() {
    let (_redis, app) = spawn_single().await;
    // 200 holders over 4 shards: each buyer hash stays small enough for Redis to return
    // it in one HSCAN page, so one load is exactly one HSCAN per shard.
    app.create_sale("burst", &live_sale(200, 4, 1, 1)).await;
    let sold = scenarios::storm(&app, "burst", buyers("h", 200)).await;
    assert_eq!(tally(&sold).get("202"), Some(&200), "{:?}", tally(&sold));

    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut app.redis.clone())
        .await
        .unwrap();
    let late = scenarios::storm(&app, "burst", buyers("late", 400)).await;
    assert_eq!(
        tally(&late).get("409 sold-out"),
        Some(&400),
        "{:?}",
        tally(&late)
    );

    app.await_sold_out_holders("burst").await;
    // Every order is a row and acknowledged (`ack.lua`, an EVALSHA of the writer's), so
    // the scripts counted below are the purchases' alone.
    app.flush().await;
    let calls = command_calls(&app).await;
    assert_eq!(calls.get("hkeys"), None, "{calls:?}");
    assert_eq!(
        calls.get("hscan"),
        Some(&4),
        "one load, one page per shard: {calls:?}"
    );

    // Known holders: a new buyer is answered from memory, a holder's retry replays.
    let scripts_before = calls.get("evalsha").copied().unwrap_or(0);
    let response = app.purchase("burst", "newcomer", "k", 1).await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    let calls = command_calls(&app).await;
    assert_eq!(calls.get("evalsha").copied().unwrap_or(0), scripts_before);
    let retry = scenarios::Answer::of(app.purchase("burst", "h7", "k", 1).await).await;
    assert_eq!(retry.status, 202, "{:?}", retry.body);
    assert_eq!(retry.order_id, sold[7].order_id);
    assert_eq!(app.sold("burst", 4).await, 200);
}
