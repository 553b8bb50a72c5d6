//! Closed-loop purchase load with live reshards in the middle, for `scripts/bench-reshard.sh`:
//! CONNECTIONS workers each send one purchase after another (each by a distinct buyer, line
//! `i` of TOKEN_FILE from `examples/mint_tokens.rs`, `Idempotency-Key: rs-<i>`, body
//! `{"quantity":1}`) to `POST BASE/api/v1/sales/SALE/purchase` for SECONDS, while an operator
//! task reshards the sale as PLAN says (`5:64,12:8`: at 5 s to 64 shards, at 12 s to 8).
//!
//! Answers are counted in 100-ms buckets by the time they arrive. For each reshard the report
//! gives how long its request took, the throughput before it (median of the buckets of the
//! second before), the lowest bucket while it ran (and one second after), and for how long
//! the throughput stayed under 90 % of the one before (the dip). Every answer other than 202
//! is counted by status: a reshard must not cause any.
//!
//! Usage: `cargo run --release --example reshard_under_load -- BASE SALE TOKEN_FILE
//! ADMIN_TOKEN SECONDS CONNECTIONS PLAN`. Prints the buckets around each reshard, then one
//! line per reshard `reshard to=.. took_ms=.. state=.. before=.. lowest=.. dip_ms=..`, a
//! line `answers s202=.. other=..`, the whole run as `timeline bucket_ms=100 r0,r1,...`
//! (req/s per bucket) and one `reshard_window to=.. start_s=.. end_s=..` per reshard.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use reqwest::Client;

const BUCKET: Duration = Duration::from_millis(100);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// One reshard of the plan, and what became of it.
struct Step {
    at: Duration,
    shards: u32,
    started: Option<Duration>,
    took: Option<Duration>,
    state: String,
}

/// Answers per bucket.
struct Counts {
    accepted: Vec<AtomicU64>,
    other: AtomicU64,
}

fn main() -> ExitCode {
    match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(BoxError::from)
        .and_then(|rt| rt.block_on(run()))
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("reshard_under_load: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [base, sale, tokens, admin, seconds, connections, plan] = args.as_slice() else {
        return Err("usage: BASE SALE TOKEN_FILE ADMIN_TOKEN SECONDS CONNECTIONS PLAN".into());
    };
    let seconds: f64 = seconds.parse()?;
    let connections: usize = connections.parse()?;
    let tokens: Arc<Vec<String>> = Arc::new(
        std::fs::read_to_string(tokens)?
            .lines()
            .map(|l| l.split(' ').next().unwrap_or_default().to_owned())
            .collect(),
    );
    let mut steps = parse_plan(plan)?;
    let client = Client::builder()
        .pool_max_idle_per_host(connections)
        .build()?;
    let length = Duration::from_secs_f64(seconds);
    let buckets = (length.as_millis() / BUCKET.as_millis()) as usize + 1;
    let counts = Arc::new(Counts {
        accepted: (0..buckets).map(|_| AtomicU64::new(0)).collect(),
        other: AtomicU64::new(0),
    });
    let next = Arc::new(AtomicUsize::new(0));
    let t0 = Instant::now();
    let url = format!("{base}/api/v1/sales/{sale}/purchase");
    let workers: Vec<_> = (0..connections)
        .map(|_| {
            let (client, url, tokens) = (client.clone(), url.clone(), tokens.clone());
            let (counts, next) = (counts.clone(), next.clone());
            tokio::spawn(async move {
                while t0.elapsed() < length {
                    let i = next.fetch_add(1, Relaxed);
                    let Some(token) = tokens.get(i) else { return };
                    let answer = client
                        .post(&url)
                        .bearer_auth(token)
                        .header("Idempotency-Key", format!("rs-{i}"))
                        .header("Content-Type", "application/json")
                        .body(r#"{"quantity":1}"#)
                        .send()
                        .await;
                    let bucket = (t0.elapsed().as_millis() / BUCKET.as_millis()) as usize;
                    match answer {
                        Ok(r) if r.status().as_u16() == 202 => {
                            if let Some(b) = counts.accepted.get(bucket) {
                                b.fetch_add(1, Relaxed);
                            }
                        }
                        _ => {
                            counts.other.fetch_add(1, Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    for step in &mut steps {
        tokio::time::sleep_until((t0 + step.at).into()).await;
        let started = t0.elapsed();
        let answer: serde_json::Value = client
            .post(format!("{base}/admin/v1/sales/{sale}/reshard"))
            .bearer_auth(admin)
            .json(&serde_json::json!({ "shards": step.shards }))
            .send()
            .await?
            .json()
            .await?;
        step.started = Some(started);
        step.took = Some(t0.elapsed() - started);
        step.state = answer["change"]["state"]
            .as_str()
            .unwrap_or("refused")
            .to_owned();
    }
    for worker in workers {
        worker.await?;
    }
    report(&steps, &counts);
    Ok(())
}

fn parse_plan(plan: &str) -> Result<Vec<Step>, BoxError> {
    plan.split(',')
        .map(|part| {
            let (at, shards) = part
                .split_once(':')
                .ok_or("PLAN is at_seconds:shards,...")?;
            Ok(Step {
                at: Duration::from_secs_f64(at.parse()?),
                shards: shards.parse()?,
                started: None,
                took: None,
                state: String::new(),
            })
        })
        .collect()
}

fn report(steps: &[Step], counts: &Counts) {
    let per_sec: Vec<f64> = counts
        .accepted
        .iter()
        .map(|b| b.load(Relaxed) as f64 * 1000.0 / BUCKET.as_millis() as f64)
        .collect();
    let bucket = |d: Duration| (d.as_millis() / BUCKET.as_millis()) as usize;
    let mut total = 0;
    for step in steps {
        let (Some(started), Some(took)) = (step.started, step.took) else {
            continue;
        };
        let end = per_sec.len();
        let first = bucket(started).min(end);
        let window = (bucket(started + took) + 1 + bucket(Duration::from_secs(1))).min(end);
        let mut before: Vec<f64> = per_sec[first.saturating_sub(10)..first].to_vec();
        before.sort_by(f64::total_cmp);
        let baseline = before.get(before.len() / 2).copied().unwrap_or(0.0);
        let during = &per_sec[first..window];
        let lowest = during.iter().copied().fold(f64::INFINITY, f64::min);
        let dip = during.iter().filter(|&&r| r < 0.9 * baseline).count() as u128;
        println!("buckets (req/s per 100 ms) from {started:?}: {during:?}");
        println!(
            "reshard to={} took_ms={} state={} before={baseline:.0} lowest={lowest:.0} dip_ms={}",
            step.shards,
            took.as_millis(),
            step.state,
            dip * BUCKET.as_millis(),
        );
    }
    for b in &counts.accepted {
        total += b.load(Relaxed);
    }
    let timeline: Vec<String> = per_sec.iter().map(|r| format!("{r:.0}")).collect();
    println!(
        "timeline bucket_ms={} {}",
        BUCKET.as_millis(),
        timeline.join(",")
    );
    for step in steps {
        if let (Some(started), Some(took)) = (step.started, step.took) {
            let end = started + took;
            println!(
                "reshard_window to={} start_s={:.1} end_s={:.1}",
                step.shards,
                started.as_secs_f64(),
                end.as_secs_f64()
            );
        }
    }
    println!("answers s202={total} other={}", counts.other.load(Relaxed));
}
