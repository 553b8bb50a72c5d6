//! The order database under test — a real PostgreSQL server or a SQLite file — and how to
//! take it away and bring it back (an outage).

use std::time::Duration;

use sqlx::Connection;
use sqlx::postgres::PgConnection;
use sqlx::sqlite::SqliteConnection;

use super::postgres::PostgresServer;

/// A database the gateway writes orders to.
pub enum TestDb {
    /// A SQLite file in a temp dir; an outage holds an exclusive lock on it.
    Sqlite {
        dir: tempfile::TempDir,
        lock: Option<SqliteConnection>,
    },
    /// A PostgreSQL server with a fresh database; an outage kills the server.
    Postgres { server: PostgresServer, url: String },
}

impl TestDb {
    /// A fresh SQLite file.
    pub fn sqlite() -> Self {
        Self::Sqlite {
            dir: tempfile::tempdir().unwrap(),
            lock: None,
        }
    }

    /// A fresh PostgreSQL server and database.
    pub fn postgres() -> Self {
        let server = PostgresServer::start();
        let url = server.fresh_database();
        Self::Postgres { server, url }
    }

    /// The `database.url` for the gateway.
    pub fn url(&self) -> String {
        match self {
            Self::Sqlite { dir, .. } => format!("sqlite://{}/orders.db", dir.path().display()),
            Self::Postgres { url, .. } => url.clone(),
        }
    }

    /// Runs `sql` (one statement) on the database, as an operator would.
    pub async fn execute(&self, sql: &'static str) {
        let url = self.url();
        match self {
            Self::Sqlite { .. } => {
                let mut conn = SqliteConnection::connect(&url).await.unwrap();
                sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
            }
            Self::Postgres { .. } => {
                let mut conn = PgConnection::connect(&url).await.unwrap();
                sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
            }
        }
    }

    /// Black-holes a PostgreSQL server (connections stay open, nothing answers) until
    /// `restore`.
    pub fn black_hole(&self) {
        match self {
            Self::Postgres { server, .. } => server.pause(),
            Self::Sqlite { .. } => panic!("only a PostgreSQL server can be black-holed"),
        }
    }

    /// Ends a black hole.
    pub fn restore(&self) {
        if let Self::Postgres { server, .. } = self {
            server.resume();
        }
    }

    /// Makes the database refuse writes until `end_outage`.
    pub async fn start_outage(&mut self) {
        let url = self.url();
        match self {
            Self::Sqlite { lock, .. } => {
                let mut conn = SqliteConnection::connect(&url).await.unwrap();
                sqlx::query("BEGIN EXCLUSIVE")
                    .execute(&mut conn)
                    .await
                    .unwrap();
                *lock = Some(conn);
            }
            Self::Postgres { server, .. } => server.stop(),
        }
    }

    /// Ends the outage.
    pub async fn end_outage(&mut self) {
        match self {
            Self::Sqlite { lock, .. } => {
                if let Some(mut conn) = lock.take() {
                    sqlx::query("ROLLBACK").execute(&mut conn).await.unwrap();
                }
            }
            Self::Postgres { server, .. } => {
                server.start_again();
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}
