//! Hostile clients at the HTTP edge, driven over raw sockets with bytes written by hand:
//! connections that trickle their headers, a 200 KB header, buyers who stall their request
//! bodies, forged `X-Forwarded-For` lines, and buyers who ask for challenges too fast.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use flashgate::testing::auth::JwtKeys;
use flashgate::testing::config::LimitSettings;
use flashgate::testing::config::Settings;
use flashgate::testing::domain::UserId;
use flashgate::testing::startup::Application;
use flashgate::testing::store::RedisTarget;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::time::{sleep, timeout};

use crate::support::app::{
    ADMIN_TOKEN, JWT_SECRET, TestApp, live_sale, spawn_app_with, test_settings,
};
use crate::support::redis::RedisServer;

/// Longest any one step may take before the test gives up: a bound against hanging on a
/// slow machine, never an assertion about speed.
const PATIENCE: Duration = Duration::from_secs(60);

/// A response as read off the socket.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        let found = self.headers.iter().find(|(n, _)| n == name);
        found.map(|(_, v)| v.as_str())
    }
}

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(app.base.trim_start_matches("http://"))
        .await
        .expect("the gateway accepts TCP connections")
}

/// Reads one response (its head, then a `Content-Length` body); `None` if the connection
/// closes first.
async fn read_answer(stream: &mut (impl AsyncRead + Unpin)) -> Option<Answer> {
    let mut buf = Vec::new();
    let head_len = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        read_more(stream, &mut buf).await?;
    };
    let head = String::from_utf8(buf[..head_len].to_vec()).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let body_len = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map_or(0, |(_, v)| v.parse().unwrap());
    while buf.len() < head_len + body_len {
        read_more(stream, &mut buf).await?;
    }
    let body = serde_json::from_slice(&buf[head_len..]).unwrap_or(Value::Null);
    Some(Answer {
        status,
        headers,
        body,
    })
}

async fn read_more(stream: &mut (impl AsyncRead + Unpin), buf: &mut Vec<u8>) -> Option<()> {
    let mut chunk = [0u8; 8192];
    match stream.read(&mut chunk).await {
        Ok(0) | Err(_) => None,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Some(())
        }
    }
}

/// The next response on `stream`; panics if none comes.
async fn answered(stream: &mut (impl AsyncRead + Unpin)) -> Answer {
    timeout(PATIENCE, read_answer(stream))
        .await
        .expect("an answer in time")
        .expect("an answer before the connection closed")
}

/// Whether the gateway closes `stream` (reading and discarding whatever it sends).
async fn closed_by_gateway(stream: &mut (impl AsyncRead + Unpin)) -> bool {
    let mut sink = [0u8; 1024];
    let until_closed = async {
        while let Ok(n) = stream.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    };
    timeout(PATIENCE, until_closed).await.is_ok()
}

/// The head of a purchase by `buyer` announcing a body of `body_len` bytes, with `extra`
/// header lines (each ending in CRLF).
fn purchase_head(
    app: &TestApp,
    sale: &str,
    buyer: &str,
    key: &str,
    body_len: usize,
    extra: &str,
) -> String {
    format!(
        "POST /api/v1/sales/{sale}/purchase HTTP/1.1\r\nHost: gateway\r\n\
         Authorization: Bearer {}\r\nIdempotency-Key: {key}\r\n\
         Content-Type: application/json\r\nContent-Length: {body_len}\r\n{extra}\r\n",
        app.token(buyer)
    )
}

/// A whole purchase of one unit by `buyer`, on a fresh connection.
async fn purchase(app: &TestApp, sale: &str, buyer: &str, key: &str, extra: &str) -> Answer {
    let body = r#"{"quantity":1}"#;
    let request = purchase_head(app, sale, buyer, key, body.len(), extra) + body;
    let mut stream = connect(app).await;
    stream.write_all(request.as_bytes()).await.unwrap();
    answered(&mut stream).await
}

/// Checks a 429: its problem type and scope, and the `Retry-After`, `RateLimit` and
/// `RateLimit-Policy` headers every rate limit sends.
fn assert_rate_limited(answer: &Answer, scope: &str) {
    assert_eq!(answer.status, 429, "{answer:?}");
    assert_eq!(answer.body["type"], "/problems/rate-limited", "{answer:?}");
    assert_eq!(answer.body["scope"], scope, "{answer:?}");
    let retry_after: u64 = answer.header("retry-after").unwrap().parse().unwrap();
    assert!(retry_after >= 1);
    assert!(answer.header("ratelimit").unwrap().starts_with("limit="));
    assert!(answer.header("ratelimit-policy").is_some());
}

/// Polls `done` until it holds (bounded by `PATIENCE`).
async fn eventually(what: &str, done: impl Fn() -> bool) {
    let waited = timeout(PATIENCE, async {
        while !done() {
            sleep(Duration::from_millis(20)).await;
        }
    });
    assert!(waited.await.is_ok(), "never: {what}");
}

async fn gateway(tweak: impl FnOnce(&mut Settings)) -> (RedisServer, TestApp) {
    let redis = RedisServer::start();
    let mut settings = test_settings(&RedisTarget::Single(redis.url()));
    tweak(&mut settings);
    (redis, spawn_app_with(settings).await)
}

/// A slowloris client: sends a request line, then one header byte every 50 ms, for as long
/// as the gateway keeps the connection open. Returns whether the gateway closed it.
async fn trickle_until_closed(stream: TcpStream, trickling: Arc<AtomicUsize>) -> bool {
    let (mut reader, mut writer) = stream.into_split();
    let trickle = async move {
        let _ = writer
            .write_all(b"POST /api/v1/sales/s/purchase HTTP/1.1\r\nHost: g\r\nX-")
            .await;
        trickling.fetch_add(1, Ordering::Relaxed);
        while writer.write_all(b"a").await.is_ok() {
            sleep(Duration::from_millis(50)).await;
        }
        // The write side failing means the gateway reset the connection: closed too.
        std::future::pending::<()>().await;
    };
    tokio::select! {
        closed = closed_by_gateway(&mut reader) => closed,
        () = trickle => unreachable!("the trickle never ends by itself"),
    }
}

/// 60 slowloris connections against a cap of 50: the gateway never holds more than 50
/// connections, closes every trickler once its header time is up (those first held back in
/// the listen backlog included), and then serves a real client that queued behind them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn trickling_connections_are_capped_then_closed_and_a_real_client_is_served() {
    let (_redis, app) = gateway(|s| {
        s.http.max_connections = 50;
        s.http.header_read_timeout_ms = 2000;
    })
    .await;
    let trickling = Arc::new(AtomicUsize::new(0));
    let mut stallers = Vec::new();
    for _ in 0..50 {
        let stream = connect(&app).await;
        stallers.push(tokio::spawn(trickle_until_closed(
            stream,
            trickling.clone(),
        )));
    }
    let connections = app.state.connections.clone();
    eventually("the first 50 tricklers fill the cap", || {
        connections.open() == 50
    })
    .await;
    for _ in 0..10 {
        let stream = connect(&app).await;
        stallers.push(tokio::spawn(trickle_until_closed(
            stream,
            trickling.clone(),
        )));
    }
    eventually("every trickler has started", || {
        trickling.load(Ordering::Relaxed) == 60
    })
    .await;

    let mut client = connect(&app).await;
    client
        .write_all(b"GET /health/live HTTP/1.1\r\nHost: gateway\r\n\r\n")
        .await
        .unwrap();
    let answer = answered(&mut client).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.body["status"], "ok");

    for staller in stallers {
        assert!(staller.await.unwrap(), "a trickler was never closed");
    }
    assert_eq!(
        connections.peak(),
        50,
        "the tricklers filled the cap and never exceeded it"
    );
}

/// A connection that never sends a byte, and a kept-alive one that went quiet after a
/// request, are closed by the header read timeout too: neither holds its place forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn silent_and_idle_connections_are_closed_by_the_header_timeout() {
    let (_redis, app) = gateway(|s| s.http.header_read_timeout_ms = 1000).await;
    let mut silent = connect(&app).await;
    let mut idle = connect(&app).await;
    idle.write_all(b"GET /health/live HTTP/1.1\r\nHost: gateway\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(answered(&mut idle).await.status, 200);
    assert!(
        closed_by_gateway(&mut silent).await,
        "the silent one stays open"
    );
    assert!(
        closed_by_gateway(&mut idle).await,
        "the idle one stays open"
    );
    let connections = app.state.connections.clone();
    eventually("no connection is left open", || connections.open() == 0).await;
}

/// A request whose headers run to 200 KB is answered 431 once it passes
/// `http.max_header_bytes`, and its connection closed: the rest is never read.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_with_a_200_kb_header_is_answered_431_and_closed() {
    let (_redis, app) = gateway(|s| s.http.max_header_bytes = 16 * 1024).await;
    let (mut reader, mut writer) = connect(&app).await.into_split();
    let request = format!(
        "GET /health/live HTTP/1.1\r\nHost: gateway\r\nX-Filler: {}\r\n\r\n",
        "a".repeat(200 * 1024)
    );
    // The gateway stops reading long before the end: the write may fail, and that is fine.
    let writing = tokio::spawn(async move {
        let _ = writer.write_all(request.as_bytes()).await;
        writer
    });
    let answer = answered(&mut reader).await;
    assert_eq!(answer.status, 431, "{answer:?}");
    assert!(closed_by_gateway(&mut reader).await);
    drop(writing.await.unwrap());

    // An ordinary request is still served.
    let mut stream = connect(&app).await;
    stream
        .write_all(b"GET /health/live HTTP/1.1\r\nHost: gateway\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(answered(&mut stream).await.status, 200);
}

/// One buyer opens ten purchases that send their headers and never their body, against a
/// global cap of four handlers: two hold their buyer's slots (until the body timeout answers
/// them 408), the other eight are refused at once with 429, and other buyers are still
/// served while the two stall. (The body timeout is the window the checks in between must fit
/// in, the ten connections' set-up included, so it is generous.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_buyer_stalling_bodies_cannot_hold_the_in_flight_cap() {
    let (_redis, app) = gateway(|s| {
        s.http.max_in_flight = 4;
        s.http.max_in_flight_per_buyer = 2;
        s.http.body_read_timeout_ms = 20_000;
        // Well past the body timeout: the request timeout starts first (when the request
        // enters the stack, before its body is read), so at the same length it fires first
        // whenever the two land in different timer ticks, and answers 503 instead of 408.
        s.http.request_timeout_ms = 40_000;
    })
    .await;
    app.create_sale("stall", &live_sale(100, 2, 1, 1)).await;
    let in_flight = app.state.in_flight.clone();
    let mut stalled = Vec::new();
    for i in 0..10 {
        let mut stream = connect(&app).await;
        let head = purchase_head(&app, "stall", "stalling", &format!("k{i}"), 14, "");
        stream.write_all(head.as_bytes()).await.unwrap();
        stalled.push(stream);
        // One at a time: each request is running or refused (and out of the global cap)
        // before the next comes. Sent together, a refusal still on its way out could fill
        // the global cap for a moment, and the next request be shed by it (503) instead of
        // refused by the buyer's cap.
        let (running, refused) = if i < 2 { (i + 1, 0) } else { (2, i - 1) };
        eventually("each stalled request runs or is refused", || {
            in_flight.running() == running && in_flight.refused_per_buyer() == refused
        })
        .await;
    }

    assert_eq!(
        purchase(&app, "stall", "patient", "p", "").await.status,
        202
    );
    assert_eq!(purchase(&app, "stall", "other", "o", "").await.status, 202);
    assert_eq!(in_flight.shed(), 0, "nobody met the global cap");

    let mut statuses = Vec::new();
    for stream in &mut stalled {
        let answer = answered(stream).await;
        match answer.status {
            429 => assert_rate_limited(&answer, "user-in-flight"),
            408 => assert_eq!(
                answer.body["type"], "/problems/request-timeout",
                "{answer:?}"
            ),
            _ => panic!("unexpected answer to a stalled purchase: {answer:?}"),
        }
        statuses.push(answer.status);
    }
    statuses.sort_unstable();
    assert_eq!(statuses, [408, 408, 429, 429, 429, 429, 429, 429, 429, 429]);
    assert_eq!(
        app.sold("stall", 2).await,
        2,
        "only the two patient buyers bought"
    );
}

/// Behind a trusted proxy that appends its own `X-Forwarded-For` line, a client who writes a
/// different first line on every request is still limited by the address the proxy saw.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_forwarded_for_line_is_read_so_a_forged_first_line_evades_nothing() {
    let (_redis, app) = gateway(|s| {
        s.limits.ip = LimitSettings {
            rate_per_sec: 1,
            burst: 2,
        };
        s.http.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    })
    .await;
    app.create_sale("xff", &live_sale(100, 2, 1, 1)).await;
    let mut answers = Vec::new();
    for i in 0..5 {
        let lines =
            format!("X-Forwarded-For: 10.9.9.{i}\r\nX-Forwarded-For: 198.51.100.7, 127.0.0.1\r\n");
        answers.push(purchase(&app, "xff", &format!("b{i}"), "k", &lines).await);
    }
    let limited: Vec<&Answer> = answers.iter().filter(|a| a.status == 429).collect();
    assert!(
        !limited.is_empty(),
        "five requests at once from one client exceed 1/s with a burst of 2: {answers:?}"
    );
    for answer in limited {
        assert_rate_limited(answer, "ip");
    }
    // Another client behind the same proxy has its own allowance, whatever its first line.
    let lines = "X-Forwarded-For: 10.9.9.1\r\nX-Forwarded-For: 203.0.113.9\r\n";
    assert_eq!(purchase(&app, "xff", "fresh", "k", lines).await.status, 202);
}

/// Challenges and purchase tokens share one per-buyer limit: past it, both are refused 429
/// with the usual headers, a token request before its body is even sent; other buyers are
/// not affected.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn challenges_and_tokens_beyond_the_issuance_limit_get_429() {
    let (_redis, app) = gateway(|s| {
        s.limits.issue = LimitSettings {
            rate_per_sec: 1,
            burst: 3,
        };
    })
    .await;
    app.create_sale("iss", &live_sale(100, 2, 1, 1)).await;
    let ask = |buyer: &'static str| {
        let request = format!(
            "POST /api/v1/sales/iss/challenge HTTP/1.1\r\nHost: gateway\r\n\
             Authorization: Bearer {}\r\nContent-Length: 0\r\n\r\n",
            app.token(buyer)
        );
        let app = &app;
        async move {
            let mut stream = connect(app).await;
            stream.write_all(request.as_bytes()).await.unwrap();
            answered(&mut stream).await
        }
    };
    let mut answers = Vec::new();
    for _ in 0..6 {
        answers.push(ask("eager").await);
    }
    assert!(answers[..3].iter().all(|a| a.status == 200), "{answers:?}");
    let limited: Vec<&Answer> = answers.iter().filter(|a| a.status == 429).collect();
    assert!(
        !limited.is_empty(),
        "six at once exceed 1/s with a burst of 3: {answers:?}"
    );
    for answer in limited {
        assert_rate_limited(answer, "issue");
    }

    // A token request announcing a body it never sends is refused from its headers alone.
    let mut stream = connect(&app).await;
    let head = format!(
        "POST /api/v1/sales/iss/tokens HTTP/1.1\r\nHost: gateway\r\n\
         Authorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n",
        app.token("eager")
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    assert_rate_limited(&answered(&mut stream).await, "issue");

    assert_eq!(
        ask("calm").await.status,
        200,
        "another buyer has their own allowance"
    );
}

/// Graceful shutdown with the connections served by hand: a purchase whose body is still on
/// its way when the signal comes is finished and answered, an idle kept-alive connection is
/// closed, and the server then stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_finishes_the_request_in_progress_and_closes_idle_connections() {
    let redis = RedisServer::start();
    let db_dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(&RedisTarget::Single(redis.url()));
    settings.database.url = format!("sqlite://{}/orders.db", db_dir.path().display());
    let app = Application::build(settings).await.unwrap();
    let (port, state) = (app.port(), app.state().clone());
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    let created = reqwest::Client::new()
        .put(format!("http://127.0.0.1:{port}/admin/v1/sales/bye"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&live_sale(10, 1, 1, 1))
        .send()
        .await
        .unwrap();
    assert!(created.status().is_success());

    let connect = || TcpStream::connect(("127.0.0.1", port));
    let mut idle = connect().await.unwrap();
    idle.write_all(b"GET /health/live HTTP/1.1\r\nHost: gateway\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(answered(&mut idle).await.status, 200);

    let exp = time::OffsetDateTime::now_utc().unix_timestamp() + 3600;
    let jwt = JwtKeys::new(JWT_SECRET.as_bytes()).mint(&UserId::parse("late").unwrap(), exp);
    let body = r#"{"quantity":1}"#;
    let head = format!(
        "POST /api/v1/sales/bye/purchase HTTP/1.1\r\nHost: gateway\r\n\
         Authorization: Bearer {jwt}\r\nIdempotency-Key: k\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut purchasing = connect().await.unwrap();
    purchasing.write_all(head.as_bytes()).await.unwrap();
    eventually("the purchase handler runs", || {
        state.in_flight.running() == 1
    })
    .await;

    stop.send(()).unwrap();
    purchasing.write_all(body.as_bytes()).await.unwrap();
    let answer = answered(&mut purchasing).await;
    assert_eq!(answer.status, 202, "{answer:?}");
    assert!(closed_by_gateway(&mut idle).await);
    let stopped = timeout(PATIENCE, server).await.expect("the server stops");
    stopped.unwrap().expect("a clean stop");
}
