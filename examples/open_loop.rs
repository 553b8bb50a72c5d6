//! Open-loop purchase load for `scripts/bench-persist.sh`: exactly RATE purchases per second
//! for SECONDS, request `i` due at `t0 + i / RATE` whatever the gateway's latency (a slow
//! answer never delays the next send), each by a distinct buyer (line `i` of TOKEN_FILE, from
//! `examples/mint_tokens.rs`) with `Idempotency-Key: lag-<i>` and body `{"quantity":1}`, to
//! `POST BASE/api/v1/sales/SALE/purchase`.
//!
//! At most CONNECTIONS requests are in flight (reqwest's HTTP/1.1 pool, one request per
//! connection). A request due while all of them are busy is *late*: it is sent as soon as one
//! frees, and the report says how many were and the worst delay. Sends that fell behind the
//! schedule for any other reason (this process short of CPU) show in the slip figures.
//!
//! It runs on one thread with everything per request built before the clock starts (URL,
//! header values, static body), so it needs a fraction of the CPU k6 needs for the same rate.
//!
//! Usage: `cargo run --release --example open_loop -- BASE SALE TOKEN_FILE RATE SECONDS
//! [CONNECTIONS]` (CONNECTIONS 256). Prints a report, then one line
//! `open_loop sent=.. seconds=.. rate=.. target=.. s202=.. s503=.. s4xx=.. s5xx=.. s0=..
//! other=.. p50_ms=.. p99_ms=.. max_ms=.. late=.. late_max_ms=.. behind=.. slip_max_ms=..`:
//! `rate` is requests sent per second of the sending window, `s4xx`/`s5xx` the other 4xx/5xx
//! answers, `s0` requests without an answer (errors, 10 s timeouts), latencies from send to
//! the end of the answer, `behind` the sends 10 ms or more after their due time.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderName, HeaderValue};
use reqwest::{Body, Client, Method, Request, Url};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

const DEFAULT_CONNECTIONS: usize = 256;
/// How long a request may take before it counts as unanswered.
const TIMEOUT: Duration = Duration::from_secs(10);
const BODY: &str = r#"{"quantity":1}"#;
const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// A send this far after its due time counts as behind schedule.
const BEHIND: Duration = Duration::from_millis(10);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The command line.
struct Args {
    url: Url,
    tokens: String,
    rate: f64,
    seconds: f64,
    connections: usize,
}

/// What the request tasks record, indexed by request; times in microseconds.
struct Record {
    /// Answer status; 0: no answer.
    status: Vec<AtomicU16>,
    /// Send to end of answer.
    latency_us: Vec<AtomicU32>,
    /// When it was sent, from t0.
    sent_us: Vec<AtomicU32>,
    /// Latest send and latest answer, from t0.
    last_send_us: AtomicU64,
    last_answer_us: AtomicU64,
    /// Sends `BEHIND` or more after their due time, and the worst delay.
    behind: AtomicU64,
    slip_max_us: AtomicU64,
}

/// What the scheduler saw: requests due while every connection was busy.
#[derive(Default)]
struct Lateness {
    count: u64,
    worst: Duration,
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("open_loop: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("open_loop: {error}");
            ExitCode::FAILURE
        }
    }
}

fn parse_args() -> Result<Args, String> {
    const USAGE: &str = "usage: open_loop BASE SALE TOKEN_FILE RATE SECONDS [CONNECTIONS]";
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (base, sale, tokens, rate, seconds, connections) = match args.as_slice() {
        [base, sale, tokens, rate, seconds] => (base, sale, tokens, rate, seconds, None),
        [base, sale, tokens, rate, seconds, c] => (base, sale, tokens, rate, seconds, Some(c)),
        _ => return Err(USAGE.to_owned()),
    };
    let url = format!(
        "{}/api/v1/sales/{sale}/purchase",
        base.trim_end_matches('/')
    );
    let url = Url::parse(&url).map_err(|e| format!("open_loop: bad URL {url}: {e}"))?;
    let positive = |what: &str, value: &str| match value.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!(
            "open_loop: {what} must be a positive number\n{USAGE}"
        )),
    };
    let connections = match connections {
        None => DEFAULT_CONNECTIONS,
        Some(c) => match c.parse::<usize>() {
            Ok(c) if (1..=Semaphore::MAX_PERMITS).contains(&c) && u32::try_from(c).is_ok() => c,
            _ => {
                return Err(format!(
                    "open_loop: CONNECTIONS must be a positive integer\n{USAGE}"
                ));
            }
        },
    };
    Ok(Args {
        url,
        tokens: tokens.clone(),
        rate: positive("RATE", rate)?,
        seconds: positive("SECONDS", seconds)?,
        connections,
    })
}

async fn run(args: Args) -> Result<(), BoxError> {
    let requests = (args.rate * args.seconds).round() as usize;
    // Per request, before the clock starts: the Authorization and Idempotency-Key values.
    let text = std::fs::read_to_string(&args.tokens)
        .map_err(|e| format!("cannot read {}: {e}", args.tokens))?;
    let mut headers = Vec::with_capacity(requests);
    for (i, token) in text
        .lines()
        .filter(|l| !l.is_empty())
        .take(requests)
        .enumerate()
    {
        let auth = HeaderValue::try_from(format!("Bearer {token}"))
            .map_err(|_| format!("line {} of {} is not a header value", i + 1, args.tokens))?;
        let key = HeaderValue::try_from(format!("lag-{i}"))?;
        headers.push((auth, key));
    }
    drop(text);
    if headers.len() < requests {
        return Err(format!(
            "{} holds {} tokens, {requests} needed (one per request)",
            args.tokens,
            headers.len()
        )
        .into());
    }

    let client = Client::builder()
        .pool_max_idle_per_host(args.connections)
        .pool_idle_timeout(None)
        .tcp_nodelay(true)
        .timeout(TIMEOUT)
        .build()?;
    let record = Arc::new(Record {
        status: (0..requests).map(|_| AtomicU16::new(0)).collect(),
        latency_us: (0..requests).map(|_| AtomicU32::new(0)).collect(),
        sent_us: (0..requests).map(|_| AtomicU32::new(0)).collect(),
        last_send_us: AtomicU64::new(0),
        last_answer_us: AtomicU64::new(0),
        behind: AtomicU64::new(0),
        slip_max_us: AtomicU64::new(0),
    });
    let slots = Arc::new(Semaphore::new(args.connections));
    let url = &args.url;
    eprintln!(
        "open_loop: POST {url}, {}/s for {} s = {requests} requests, at most {} in flight",
        args.rate, args.seconds, args.connections
    );

    let interval = Duration::from_secs_f64(1.0 / args.rate);
    let t0 = Instant::now();
    let t0_unix = std::time::SystemTime::now();
    let mut late = Lateness::default();
    for (i, (auth, key)) in headers.into_iter().enumerate() {
        let due = t0 + interval.mul_f64(i as f64);
        if Instant::now() < due {
            tokio::time::sleep_until(due.into()).await;
        }
        let permit = match Arc::clone(&slots).try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                let permit = Arc::clone(&slots).acquire_owned().await?;
                late.count += 1;
                late.worst = late.worst.max(due.elapsed());
                permit
            }
        };
        let mut request = Request::new(Method::POST, url.clone());
        let map = request.headers_mut();
        map.reserve(3);
        map.insert(AUTHORIZATION, auth);
        map.insert(IDEMPOTENCY_KEY, key);
        map.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        *request.body_mut() = Some(Body::from(BODY));
        tokio::spawn(send(
            client.clone(),
            request,
            i,
            t0,
            due,
            Arc::clone(&record),
            permit,
        ));
    }
    // Every answer in: all the slots back.
    let all = u32::try_from(args.connections)?;
    let _all = slots.acquire_many(all).await?;
    report(&args, requests, &record, &late);
    if let Some(path) = std::env::var_os("OPEN_LOOP_LATENCIES") {
        write_latencies(&path, t0_unix, &record)?;
    }
    Ok(())
}

/// Writes `send_us latency_us status` per request to `path`, after a first line
/// `# t0_unix_us <microseconds>`: the wall-clock time send times count from.
fn write_latencies(
    path: &std::ffi::OsStr,
    t0: std::time::SystemTime,
    record: &Record,
) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    let t0_us = t0
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros());
    writeln!(out, "# t0_unix_us {t0_us}")?;
    for ((sent, latency), status) in record
        .sent_us
        .iter()
        .zip(&record.latency_us)
        .zip(&record.status)
    {
        let (sent, latency) = (sent.load(Relaxed), latency.load(Relaxed));
        writeln!(out, "{sent} {latency} {}", status.load(Relaxed))?;
    }
    out.flush()
}

/// Sends request `i` (due at `due`) and records its answer.
async fn send(
    client: Client,
    request: Request,
    i: usize,
    t0: Instant,
    due: Instant,
    record: Arc<Record>,
    _permit: OwnedSemaphorePermit,
) {
    let start = Instant::now();
    let slip = start.saturating_duration_since(due);
    if slip >= BEHIND {
        record.behind.fetch_add(1, Relaxed);
    }
    record.slip_max_us.fetch_max(micros(slip), Relaxed);
    record.last_send_us.fetch_max(micros(start - t0), Relaxed);
    let sent = u32::try_from(micros(start - t0)).unwrap_or(u32::MAX);
    record.sent_us[i].store(sent, Relaxed);
    let status = match client.execute(request).await {
        // Read the whole answer so the connection goes back to the pool.
        Ok(response) => {
            let status = response.status().as_u16();
            response.bytes().await.map_or(0, |_| status)
        }
        Err(_) => 0,
    };
    let end = Instant::now();
    record.status[i].store(status, Relaxed);
    let latency = u32::try_from(micros(end - start)).unwrap_or(u32::MAX);
    record.latency_us[i].store(latency, Relaxed);
    record.last_answer_us.fetch_max(micros(end - t0), Relaxed);
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn report(args: &Args, requests: usize, record: &Record, late: &Lateness) {
    let mut counts = [0u64; 6]; // 202, 503, other 4xx, other 5xx, none, other
    for status in &record.status {
        let bucket = match status.load(Relaxed) {
            202 => 0,
            503 => 1,
            0 => 4,
            400..=499 => 2,
            500..=599 => 3,
            _ => 5,
        };
        counts[bucket] += 1;
    }
    let mut latencies: Vec<u32> = record.latency_us.iter().map(|l| l.load(Relaxed)).collect();
    latencies.sort_unstable();
    let quantile_ms = |q: f64| {
        let rank = ((q * latencies.len() as f64).ceil() as usize).clamp(1, latencies.len().max(1));
        latencies
            .get(rank - 1)
            .map_or(0.0, |&us| f64::from(us) / 1000.0)
    };
    let (p50, p99) = (quantile_ms(0.5), quantile_ms(0.99));
    let max = latencies.last().map_or(0.0, |&us| f64::from(us) / 1000.0);
    // The sending window: from t0 to the last send, plus the interval that send owns.
    let window = record.last_send_us.load(Relaxed) as f64 / 1e6 + 1.0 / args.rate;
    let rate = requests as f64 / window;
    let answered_by = record.last_answer_us.load(Relaxed) as f64 / 1e6;
    let behind = record.behind.load(Relaxed);
    let slip_max = record.slip_max_us.load(Relaxed) as f64 / 1000.0;
    let late_max = late.worst.as_secs_f64() * 1000.0;
    let [s202, s503, s4xx, s5xx, s0, other] = counts;
    println!(
        "sent {requests} in {window:.3} s: {rate:.1}/s (target {}/s); last answer at {answered_by:.3} s",
        args.rate
    );
    println!(
        "answers: 202 {s202}, 503 {s503}, other 4xx {s4xx}, other 5xx {s5xx}, none {s0}, other {other}"
    );
    println!("latency (send to answer): p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms");
    println!(
        "late (due with all {} connections busy): {}, worst {late_max:.2} ms; \
         sends >= {} ms behind schedule: {behind}, worst {slip_max:.2} ms",
        args.connections,
        late.count,
        BEHIND.as_millis()
    );
    println!(
        "open_loop sent={requests} seconds={window:.3} rate={rate:.1} target={} s202={s202} \
         s503={s503} s4xx={s4xx} s5xx={s5xx} s0={s0} other={other} p50_ms={p50:.2} \
         p99_ms={p99:.2} max_ms={max:.2} late={} late_max_ms={late_max:.2} behind={behind} \
         slip_max_ms={slip_max:.2}",
        args.rate, late.count
    );
}
