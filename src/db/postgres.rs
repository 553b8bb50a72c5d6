//! PostgreSQL specifics: a pool, and batch inserts as one `INSERT … SELECT FROM UNNEST`
//! statement (one round trip and one plan for the whole batch).
//!
//! Every connection is bounded: acquiring one (connecting included) by the acquire timeout,
//! each statement by the server's `statement_timeout`. sqlx offers no client-side TCP
//! keepalive, so a server that stops answering without closing the connection is caught by
//! the database's per-call deadline ([`super::DbTimeouts::call`]); the server's own keepalive
//! settings let it drop the gateway's side of such a connection.

use std::str::FromStr;

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

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

pub(super) async fn insert(
    pool: &PgPool,
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
    let result = sqlx::query(
        "INSERT INTO orders (order_id, sale_id, shard, user_id, quantity, created_at_ms, persisted_at_ms) \
         SELECT o.*, $7 FROM UNNEST($1::TEXT[], $2::TEXT[], $3::INT4[], $4::TEXT[], $5::INT4[], $6::INT8[]) AS o \
         ON CONFLICT (order_id) DO NOTHING",
    )
    .bind(&ids)
    .bind(&sales)
    .bind(&shards)
    .bind(&users)
    .bind(&quantities)
    .bind(&created)
    .bind(persisted_at_ms)
    .execute(pool)
    .await?;
    Ok(result.rows_affected())
}
