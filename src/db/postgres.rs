//! PostgreSQL specifics: a pool, and batch inserts as one `COPY … FROM STDIN` (the fastest
//! way PostgreSQL takes rows), falling back to one `INSERT … SELECT FROM UNNEST … ON CONFLICT
//! DO NOTHING` when the batch holds an order already in the table (COPY cannot skip a
//! duplicate: the whole COPY fails with a unique violation and writes nothing). Duplicates
//! are rare: an order is written twice only when its acknowledgement in Redis was lost after
//! the commit (a crash, a Redis outage) and recovery hands it to the writer again.
//!
//! Every connection is bounded: acquiring one (connecting included) by the acquire timeout,
//! each statement by the server's `statement_timeout`. sqlx offers no client-side TCP
//! keepalive, so a server that stops answering without closing the connection is caught by
//! the database's per-call deadline ([`super::DbTimeouts::call`]); the server's own keepalive
//! settings let it drop the gateway's side of such a connection.

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgDatabaseError, PgPoolOptions};
use sqlx::{PgConnection, PgPool};

use super::{DbError, DbTimeouts};
use crate::domain::NewOrder;

pub(super) async fn connect(url: &str, timeouts: DbTimeouts) -> Result<PgPool, DbError> {
    let statement_ms = timeouts.statement.as_millis().max(1).to_string();
    let options = PgConnectOptions::from_str(url)?.options([
        ("statement_timeout", statement_ms.as_str()),
        ("tcp_keepalives_idle", "10"),
        ("tcp_keepalives_interval", "5"),
        ("tcp_keepalives_count", "3"),
    ]);
    Ok(PgPoolOptions::new()
        .max_connections(8)
        .acquire_timeout(timeouts.acquire)
        .connect_with(options)
        .await?)
}

/// The columns both insert paths write, in order (a macro, so that statements stay
/// literals).
macro_rules! columns {
    () => {
        "order_id, sale_id, shard, user_id, quantity, created_at_ms, persisted_at_ms"
    };
}

/// SQLSTATE of a unique violation.
const UNIQUE_VIOLATION: &str = "23505";

pub(super) async fn insert(
    pool: &PgPool,
    orders: &[NewOrder],
    persisted_at_ms: i64,
) -> Result<u64, DbError> {
    let mut conn = pool.acquire().await?;
    match copy(&mut conn, orders, persisted_at_ms).await {
        Err(error) if is_unique_violation(&error) => {
            insert_skipping_present(&mut conn, orders, persisted_at_ms).await
        }
        result => Ok(result?),
    }
}

/// Whether `error` is PostgreSQL refusing a row because its key is taken.
fn is_unique_violation(error: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = error else {
        return false;
    };
    db.try_downcast_ref::<PgDatabaseError>()
        .is_some_and(|pg| pg.code() == UNIQUE_VIOLATION)
}

/// Writes `orders` with one `COPY` (text format, one statement, so all or nothing).
async fn copy(
    conn: &mut PgConnection,
    orders: &[NewOrder],
    persisted_at_ms: i64,
) -> Result<u64, sqlx::Error> {
    let data = copy_text(orders, persisted_at_ms);
    let mut copy = conn
        .copy_in_raw(concat!("COPY orders (", columns!(), ") FROM STDIN"))
        .await?;
    if let Err(error) = copy.send(data).await {
        // Leave the connection usable: end the COPY before reporting the failure.
        let _ = copy.abort("sending the rows failed").await;
        return Err(error);
    }
    copy.finish().await
}

/// The rows of `orders` in COPY's text format: tab-separated columns, one line per row.
/// Ids and user ids are restricted to characters that need no escaping (no tab, newline
/// or backslash), which [`push_text`] checks anyway.
fn copy_text(orders: &[NewOrder], persisted_at_ms: i64) -> Vec<u8> {
    use std::io::Write as _;
    let mut out = Vec::with_capacity(orders.len() * 96);
    for order in orders {
        let id = order.order_id.to_string();
        push_text(&mut out, &id);
        out.push(b'\t');
        push_text(&mut out, order.order_id.sale().as_str());
        let _ = write!(out, "\t{}\t", order.order_id.shard());
        push_text(&mut out, order.user.as_str());
        let _ = writeln!(
            out,
            "\t{}\t{}\t{}",
            order.quantity.get(),
            order.created_ms,
            persisted_at_ms
        );
    }
    out
}

/// `text` as a COPY text-format value: backslash, tab, newline and carriage return escaped.
fn push_text(out: &mut Vec<u8>, text: &str) {
    for &byte in text.as_bytes() {
        match byte {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            _ => out.push(byte),
        }
    }
}

/// Writes `orders` with one statement that skips the ids already present.
async fn insert_skipping_present(
    conn: &mut PgConnection,
    orders: &[NewOrder],
    persisted_at_ms: i64,
) -> Result<u64, DbError> {
    let mut ids = Vec::with_capacity(orders.len());
    let mut sales = Vec::with_capacity(orders.len());
    let mut shards = Vec::with_capacity(orders.len());
    let mut users = Vec::with_capacity(orders.len());
    let mut quantities = Vec::with_capacity(orders.len());
    let mut created = Vec::with_capacity(orders.len());
    for order in orders {
        ids.push(order.order_id.to_string());
        sales.push(order.order_id.sale().as_str().to_owned());
        shards.push(order.order_id.shard() as i32);
        users.push(order.user.as_str().to_owned());
        quantities.push(order.quantity.get() as i32);
        created.push(order.created_ms);
    }
    let result = sqlx::query(concat!(
        "INSERT INTO orders (",
        columns!(),
        ") SELECT o.*, $7 FROM UNNEST($1::TEXT[], $2::TEXT[], $3::INT4[], $4::TEXT[], $5::INT4[], $6::INT8[]) AS o \
         ON CONFLICT (order_id) DO NOTHING"
    ))
    .bind(&ids)
    .bind(&sales)
    .bind(&shards)
    .bind(&users)
    .bind(&quantities)
    .bind(&created)
    .bind(persisted_at_ms)
    .execute(conn)
    .await?;
    Ok(result.rows_affected())
}
