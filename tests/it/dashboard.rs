//! The operator dashboard in a real browser (headless Chromium): loaded against a running
//! gateway while buyers buy (a screenshot is saved under target/screenshots/ for a reviewer),
//! then once more after the storm, when every figure it shows must be the admin API's.

use std::time::Duration;

use serde_json::Value;

use crate::support::app::{ADMIN_TOKEN, TestApp, live_sale, spawn_single};
use crate::support::browser::{dom_of, screenshot};
use crate::support::scenarios::{Answer, tally};

/// The text of the element carrying `attribute` inside the section of `sale` in `dom`.
fn shown(dom: &str, sale: &str, attribute: &str) -> Option<String> {
    let section = &dom[dom.find(&format!("data-sale=\"{sale}\""))?..];
    let section = &section[..section.find("</section>").unwrap_or(section.len())];
    let at = section.find(attribute)?;
    let text = &section[at..];
    let text = &text[text.find('>')? + 1..];
    Some(text[..text.find('<')?].to_owned())
}

/// Every `(shard, stock)` bar of `sale`'s section, in order.
fn bars(dom: &str, sale: &str) -> Vec<(u64, u64)> {
    let start = dom.find(&format!("data-sale=\"{sale}\"")).unwrap();
    let section = &dom[start..];
    let section = &section[..section.find("</section>").unwrap_or(section.len())];
    section
        .split("data-shard=\"")
        .skip(1)
        .map(|rest| {
            let shard = rest[..rest.find('"').unwrap()].parse().unwrap();
            let stock = rest.split("data-stock=\"").nth(1).unwrap();
            (shard, stock[..stock.find('"').unwrap()].parse().unwrap())
        })
        .collect()
}

async fn storm(app: &TestApp, buyers: usize) -> Vec<Answer> {
    let calls = (0..buyers).map(|i| async move {
        tokio::time::sleep(Duration::from_millis(8) * i as u32).await;
        Answer::of(app.purchase("dash", &format!("viewer-{i}"), "k", 1).await).await
    });
    futures::future::join_all(calls).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_dashboard_shows_the_admin_apis_figures_in_a_real_browser() {
    let (_redis, app) = spawn_single().await;
    app.create_sale("dash", &live_sale(500, 8, 1, 1)).await;
    let url = format!("{}/admin/dashboard#token={ADMIN_TOKEN}", app.base);
    let during = {
        let url = url.clone();
        tokio::task::spawn_blocking(move || {
            std::thread::sleep(Duration::from_millis(1000));
            screenshot(&url, "dashboard")
        })
    };
    let answers = storm(&app, 1000).await;
    let shot = during.await.unwrap();
    let counts = tally(&answers);
    assert_eq!(counts.get("202"), Some(&500), "{counts:?}");
    app.flush().await;

    let (_, view): (_, Value) = app
        .get_json("/admin/v1/sales/dash", Some(ADMIN_TOKEN))
        .await;
    let dom = tokio::task::spawn_blocking(move || dom_of(&url))
        .await
        .unwrap();
    for field in [
        "state",
        "sold",
        "remaining",
        "pending",
        "persisted",
        "stock_total",
    ] {
        let expected = match &view[field] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        assert_eq!(
            shown(&dom, "dash", &format!("data-field=\"{field}\"")).as_deref(),
            Some(expected.as_str()),
            "{field} on the page differs from the admin API ({})",
            shot.display()
        );
    }
    assert_eq!(
        shown(&dom, "dash", "data-field=\"dead_letters\"").as_deref(),
        Some("0")
    );
    let api_bars: Vec<(u64, u64)> = view["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["shard"].as_u64().unwrap(), s["stock"].as_u64().unwrap()))
        .collect();
    assert_eq!(bars(&dom, "dash"), api_bars);
    // The page polled more than once (rates need two polls), and offers the operator's switches.
    assert!(
        dom.contains("data-rate=\"accepted units\""),
        "the page did not refresh"
    );
    for action in ["pause", "resume", "top up"] {
        assert!(
            dom.contains(&format!("data-action=\"{action}\"")),
            "no {action} button"
        );
    }
}

#[tokio::test]
async fn without_a_token_the_dashboard_asks_for_one_and_shows_nothing() {
    let (_redis, app) = spawn_single().await;
    app.create_sale("dash", &live_sale(5, 1, 1, 1)).await;
    let response = app
        .client
        .get(format!("{}/admin/dashboard", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["x-frame-options"].to_str().unwrap(),
        "DENY"
    );
    let url = format!("{}/admin/dashboard", app.base);
    let dom = tokio::task::spawn_blocking(move || dom_of(&url))
        .await
        .unwrap();
    assert!(dom.contains("Admin token"), "no login form");
    assert!(!dom.contains("data-sale="), "sales shown without a token");
}
