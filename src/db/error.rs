//! Failures of the order database, and the one distinction the writer needs: did the
//! database *reject the data* (a constraint or a trigger refused a row: retrying the same
//! rows fails the same way), or did the call fail for a reason that passes (connection
//! lost, timeout, pool exhausted: retrying later succeeds)?

use std::time::Duration;

use sqlx::error::DatabaseError;
use sqlx::postgres::PgDatabaseError;
use sqlx::sqlite::SqliteError;

/// Why the database could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database url must start with postgres:// or sqlite://, got {0:?}")]
    UnsupportedUrl(String),
    #[error("cannot prepare the SQLite directory {0}")]
    SqliteDir(String, #[source] std::io::Error),
    #[error("database query failed")]
    Query(#[from] sqlx::Error),
    #[error("database call `{what}` did not finish within {after:?}")]
    Timeout { what: &'static str, after: Duration },
    #[error("database migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("cannot encode the rows for the database")]
    Encode(#[source] serde_json::Error),
    #[error("stored order {0} is invalid")]
    BadRow(String),
}

impl DbError {
    /// Whether the database refused the data itself: a constraint, a trigger, a value it
    /// cannot store. Such a failure repeats for as long as the same rows are sent, so the
    /// writer isolates the row instead of retrying it forever. Everything else (no
    /// connection, a timeout, the pool, a missing table, a permission) is about the
    /// database, not the rows, and passes once the database is fixed.
    pub fn rejects_data(&self) -> bool {
        let Self::Query(sqlx::Error::Database(db)) = self else {
            return false;
        };
        rejection(db.as_ref()).is_some()
    }

    /// The database's own words for a rejection (`<code> <message>`), kept with a dead
    /// letter; `None` unless [`Self::rejects_data`].
    pub fn rejection_reason(&self) -> Option<String> {
        let Self::Query(sqlx::Error::Database(db)) = self else {
            return None;
        };
        rejection(db.as_ref())
    }
}

/// `<code> <message>` when `db` is a rejection of the data.
fn rejection(db: &dyn DatabaseError) -> Option<String> {
    let code = if let Some(pg) = db.try_downcast_ref::<PgDatabaseError>() {
        postgres_rejects(pg.code()).then(|| pg.code().to_owned())
    } else if let Some(sqlite) = db.try_downcast_ref::<SqliteError>() {
        let code = sqlite.code()?.parse::<i32>().ok()?;
        sqlite_rejects(code).then(|| code.to_string())
    } else {
        None
    }?;
    Some(format!("{code} {}", db.message()))
}

/// SQLSTATE classes that judge the data: 22 data exception, 23 integrity constraint
/// violation, 44 WITH CHECK OPTION violation, P0 PL/pgSQL `RAISE` (a trigger refusing a
/// row). Connection (08), resources (53), operator intervention (57, e.g. a statement
/// timeout), transaction rollback (40) and schema or permission errors (42) are not.
fn postgres_rejects(sqlstate: &str) -> bool {
    matches!(sqlstate.get(..2), Some("22" | "23" | "44" | "P0"))
}

/// SQLite primary result codes that judge the data: TOOBIG (18), CONSTRAINT (19: also a
/// trigger's `RAISE(ABORT, ...)`) and MISMATCH (20). The extended code carries the primary
/// one in its low byte.
fn sqlite_rejects(extended: i32) -> bool {
    matches!(extended & 0xff, 18..=20)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_data_classes_count_as_rejections_on_postgres() {
        for code in ["23505", "23514", "22003", "P0001", "44000"] {
            assert!(postgres_rejects(code), "{code}");
        }
        for code in [
            "08006", "57014", "53300", "40001", "42P01", "42501", "XX000", "",
        ] {
            assert!(!postgres_rejects(code), "{code}");
        }
    }

    #[test]
    fn only_data_codes_count_as_rejections_on_sqlite() {
        // SQLITE_CONSTRAINT_TRIGGER, _CHECK, _UNIQUE, plain CONSTRAINT, MISMATCH, TOOBIG.
        for code in [1811, 275, 2067, 19, 20, 18] {
            assert!(sqlite_rejects(code), "{code}");
        }
        // BUSY, LOCKED, IOERR_FSYNC, FULL, CANTOPEN, ERROR.
        for code in [5, 6, 1034, 13, 14, 1] {
            assert!(!sqlite_rejects(code), "{code}");
        }
    }

    #[test]
    fn timeouts_and_pool_failures_are_not_rejections() {
        let timeout = DbError::Timeout {
            what: "insert",
            after: Duration::from_secs(1),
        };
        assert!(!timeout.rejects_data());
        assert!(!DbError::Query(sqlx::Error::PoolTimedOut).rejects_data());
        assert_eq!(timeout.rejection_reason(), None);
    }
}
