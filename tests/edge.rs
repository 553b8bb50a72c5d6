//! Edge protection against a real Redis: the in-flight cap on the purchase path.

mod support;

use std::process::Command;
use std::time::Duration;

use flashgate::store::RedisTarget;
use support::app::{live_sale, spawn_app_with, test_settings};
use support::redis::RedisServer;
use support::scenarios;

fn signal(pid: u32, sig: &str) {
    let sent = Command::new("kill").args([sig, &pid.to_string()]).status();
    assert!(sent.is_ok_and(|s| s.success()), "kill {sig} failed");
}

/// 500 concurrent purchases against a cap of 64, with Redis frozen so that every admitted
/// handler stays busy: exactly 64 handlers ever run at once, the other 436 requests are
/// shed with 503 without waiting, and the 64 finish normally once Redis thaws.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn in_flight_cap_bounds_concurrent_purchase_handlers_and_sheds_the_rest() {
    let redis = RedisServer::start();
    let mut settings = test_settings(&RedisTarget::Single(redis.url()));
    settings.http.max_in_flight = 64;
    let app = spawn_app_with(settings).await;
    app.create_sale("cap", &live_sale(10_000, 8, 1, 1)).await;
    let pid = redis.pid().expect("redis runs");
    signal(pid, "-STOP");
    let requests = (0..500)
        .map(|i| (format!("b{i}"), format!("k{i}"), 1))
        .collect();
    let storm = scenarios::storm(&app, "cap", requests);
    let thaw = async {
        // Thaw once every request not admitted has been shed (bounded wait).
        for _ in 0..600 {
            if app.state.in_flight.shed() >= 436 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        signal(pid, "-CONT");
    };
    let (answers, ()) = tokio::join!(storm, thaw);
    let shed = answers
        .iter()
        .filter(|a| a.body["detail"] == "too many purchases in flight")
        .count();
    assert_eq!(
        app.state.in_flight.peak(),
        64,
        "{:?}",
        scenarios::tally(&answers)
    );
    assert_eq!(shed, 436, "{:?}", scenarios::tally(&answers));
    assert_eq!(app.state.in_flight.shed(), 436);
    let accepted = answers.iter().filter(|a| a.status == 202).count();
    assert_eq!(accepted, 64, "{:?}", scenarios::tally(&answers));
    assert_eq!(app.sold("cap", 8).await, 64, "a shed request took stock");
}
