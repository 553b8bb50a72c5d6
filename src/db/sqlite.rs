//! SQLite specifics: the embedded default. One file, WAL journal, full fsync on commit (a
//! row is what makes an order safe to forget in Redis), a whole batch inserted in one
//! transaction, its rows keyed in the order Redis accepted them.

use std::path::Path;
use std::str::FromStr;
use std::sync::OnceLock;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use super::{DbError, DbTimeouts};
use crate::domain::{NewOrder, OrderId};

/// The SQLite order database: one connection that writes, a small pool that reads.
///
/// One writer because SQLite runs one write transaction at a time anyway, and because a
/// connection's page cache survives only while no *other* connection commits: with every
/// batch on the same connection, the B-tree pages each commit touches stay cached instead
/// of being read back from the file after each commit.
#[derive(Debug, Clone)]
pub struct SqliteDb {
    /// The only connection that inserts orders.
    pub(super) writes: SqlitePool,
    /// Lookups, listings, reconciliation and health checks.
    pub(super) reads: SqlitePool,
}

pub(super) async fn connect(url: &str, timeouts: DbTimeouts) -> Result<SqliteDb, DbError> {
    let options = SqliteConnectOptions::from_str(url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        // Statement journals (a multi-row INSERT keeps one) in memory, never in temp files.
        .pragma("temp_store", "memory")
        // A locked database is waited for within a statement's time, no longer.
        .busy_timeout(timeouts.statement);
    if let Some(dir) = Path::new(options.get_filename())
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir)
            .map_err(|e| DbError::SqliteDir(dir.display().to_string(), e))?;
    }
    let pool = |connections: u32| {
        SqlitePoolOptions::new()
            .max_connections(connections)
            .acquire_timeout(timeouts.acquire)
            .connect_with(options.clone())
    };
    Ok(SqliteDb {
        writes: pool(1).await?,
        reads: pool(4).await?,
    })
}

/// An order's primary key in the `orders` table, `(sale_id, entry_ms, entry_seq, shard)`:
/// the parts of its id with the stream entry before the shard, so that a sale's rows sort
/// in the order Redis accepted them and each batch appends where the last one ended.
pub(super) fn key(id: &OrderId) -> (&str, i64, i64, i64) {
    let (ms, seq) = id.entry().sql_parts();
    (id.sale().as_str(), ms, seq, i64::from(id.shard()))
}

/// The keys of `ids` as a JSON array of `[sale_id, entry_ms, entry_seq, shard]` arrays, for
/// a statement to read as `json_each(?1) AS k` and match by `key_is_k!`.
pub(super) fn keys_json(ids: &[OrderId]) -> Result<String, DbError> {
    let keys: Vec<_> = ids.iter().map(key).collect();
    serde_json::to_string(&keys).map_err(DbError::Encode)
}

/// The order id of an `orders` row, `<sale>.<shard>.<ms>-<seq>`, computed from its key: for
/// the statements that return ids. (Not a generated column of the table: SQLite computes
/// those, virtual ones too, on every insert.)
macro_rules! order_id {
    () => {
        "(sale_id || '.' || shard || '.' || entry_ms || '-' || entry_seq)"
    };
}
pub(super) use order_id;

/// "The `orders` row has the key `k`", `k` an element of [`keys_json`]'s array: a join on
/// the whole primary key, with the array as the outer loop, so each element is one lookup.
/// (`(sale_id, ...) IN (SELECT ... FROM json_each(?))` is not: the planner uses the key's
/// first column only and scans each sale's rows.)
macro_rules! key_is_k {
    () => {
        "orders.sale_id = k.value ->> 0 AND orders.entry_ms = k.value ->> 1 \
         AND orders.entry_seq = k.value ->> 2 AND orders.shard = k.value ->> 3"
    };
}
pub(super) use key_is_k;

/// Rows per `INSERT` statement: a batch goes as statements of 64 rows, then one each of 32,
/// 16, ..., 1 as its size needs (its remainder in binary), all in one transaction. So there
/// are seven statements in all, each prepared once and kept in the connection's cache; each
/// holds the SQLite thread for a few hundred microseconds at most, and between two of them
/// the thread is free for a moment (a batch as one statement ran 3-4 ms at a stretch, and the
/// purchases answered meanwhile waited for a core every ~50 ms).
const CHUNKS: [usize; 7] = [64, 32, 16, 8, 4, 2, 1];

/// The columns of an inserted row, in the order [`insert`] binds them.
const ROW: &str = "(?, ?, ?, ?, ?, ?, ?, ?)";

/// Inserts a batch in one transaction, skipping rows already present (an order persisted
/// twice is one row). Each row's eight values are bound as parameters of a multi-row
/// `VALUES`, which SQLite reads as they are: where the batch went as one JSONB array unpacked
/// by `jsonb_each`, each of the row's fields was a JSON lookup (`->>`) costing more than its
/// bind does, and SQLite's part of an insert was a third larger. The parameters are
/// anonymous (`?`), not numbered (`?NNN`): sqlx asks SQLite for the name of every numbered
/// parameter it binds, a search through all of them, so numbered ones cost time that grows
/// with the square of the statement's size.
pub(super) async fn insert(
    pool: &SqlitePool,
    orders: &[NewOrder],
    persisted_at_ms: i64,
) -> Result<u64, DbError> {
    let mut tx = pool.begin().await?;
    let mut inserted = 0;
    let mut rest = orders;
    for (size, sql) in CHUNKS.into_iter().zip(insert_statements()) {
        while rest.len() >= size {
            let (chunk, tail) = rest.split_at(size);
            let mut query = sqlx::query(sql.as_str());
            for order in chunk {
                let (sale, ms, seq, shard) = key(&order.order_id);
                query = query
                    .bind(sale)
                    .bind(ms)
                    .bind(seq)
                    .bind(shard)
                    .bind(order.user.as_str())
                    .bind(i64::from(order.quantity.get()))
                    .bind(order.created_ms)
                    .bind(persisted_at_ms);
            }
            inserted += query.execute(&mut *tx).await?.rows_affected();
            rest = tail;
        }
    }
    tx.commit().await?;
    Ok(inserted)
}

/// The `INSERT` statement of each size in [`CHUNKS`], built once.
fn insert_statements() -> &'static [String; CHUNKS.len()] {
    static STATEMENTS: OnceLock<[String; CHUNKS.len()]> = OnceLock::new();
    STATEMENTS.get_or_init(|| {
        CHUNKS.map(|rows| {
            format!(
                "INSERT INTO orders (sale_id, entry_ms, entry_seq, shard, user_id, quantity, \
                 created_at_ms, persisted_at_ms) VALUES {} ON CONFLICT DO NOTHING",
                vec![ROW; rows].join(", ")
            )
        })
    })
}

/// The ids of those of `ids` that are rows.
pub(super) async fn existing(
    exec: impl sqlx::SqliteExecutor<'_>,
    ids: &[OrderId],
) -> Result<Vec<OrderId>, DbError> {
    let found: Vec<String> = sqlx::query_scalar(concat!(
        "SELECT ",
        order_id!(),
        " FROM json_each(?1) AS k JOIN orders ON ",
        key_is_k!()
    ))
    .bind(keys_json(ids)?)
    .fetch_all(exec)
    .await?;
    found
        .into_iter()
        .map(super::reads::parse_stored_id)
        .collect()
}

#[cfg(test)]
mod tests {
    use sqlx::Row;

    use super::*;
    use crate::db::{Backend, OrderDb};

    async fn sqlite(dir: &tempfile::TempDir) -> SqliteDb {
        let url = format!("sqlite://{}/orders.db", dir.path().display());
        match OrderDb::connect(&url).await.unwrap().backend {
            Backend::Sqlite(db) => db,
            _ => unreachable!("a SQLite URL"),
        }
    }

    /// Inserting orders and writing their status build no ephemeral table per row. SQLite compiles a
    /// CHECK of the form `x IN (more than two values)` into one it fills, probes and clears
    /// for every row, which cost more than the rest of the insert together; the status
    /// CHECK is written as comparisons so that it does not.
    #[tokio::test]
    async fn sqlite_writes_build_no_ephemeral_table_per_row() {
        let dir = tempfile::tempdir().unwrap();
        let db = sqlite(&dir).await;
        // Any write of the status evaluates its CHECK, as settling and expiry do.
        let status_update = "UPDATE orders SET status = ?1 WHERE sale_id = ?2";
        for sql in insert_statements()
            .iter()
            .map(String::as_str)
            .chain([status_update])
        {
            // The statements are this module's own text, not input.
            let rows = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("EXPLAIN {sql}")))
                .fetch_all(&db.writes)
                .await
                .unwrap();
            let opcodes: Vec<String> = rows.iter().map(|row| row.get("opcode")).collect();
            assert!(
                opcodes.iter().any(|op| op == "Halt"),
                "a program: {opcodes:?}"
            );
            assert!(
                !opcodes.iter().any(|op| op == "OpenEphemeral"),
                "{sql}: {opcodes:?}"
            );
        }
    }

    /// The status CHECK still accepts exactly the four states.
    #[tokio::test]
    async fn sqlite_status_check_accepts_exactly_the_four_states() {
        let dir = tempfile::tempdir().unwrap();
        let db = sqlite(&dir).await;
        sqlx::query(
            "INSERT INTO orders (sale_id, entry_ms, entry_seq, shard, user_id, quantity, \
             created_at_ms, persisted_at_ms) VALUES ('s', 1, 0, 0, 'u', 1, 1, 1)",
        )
        .execute(&db.writes)
        .await
        .unwrap();
        let set = |status: &'static str| {
            sqlx::query("UPDATE orders SET status = ?1")
                .bind(status)
                .execute(&db.writes)
        };
        for status in ["paid", "cancelled", "expired", "confirmed"] {
            set(status).await.unwrap();
        }
        for status in ["bogus", "Paid", "", "confirmed "] {
            let error = set(status).await.expect_err(status);
            assert!(error.to_string().contains("CHECK"), "{status:?}: {error}");
        }
    }
}
