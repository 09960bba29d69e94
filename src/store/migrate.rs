//! Bringing an opened database's schema and rows up to date: the embedded migrations, run with
//! foreign keys off, and the adoption of queues stored under the configured default region's
//! name into the default region (`region = ''`, docs/architecture.md §2.2).

use sqlx::migrate::{MigrateError, Migrator};
use sqlx::SqlitePool;

/// Applies the migrations the file lacks, with foreign keys off: a migration that rebuilds a
/// table (SQLite's way to change a column's constraints, as 0005 does to `queues`) drops the old
/// table, which with foreign keys on would cascade-delete every row referring to it. SQLite
/// ignores the pragma inside a transaction, and sqlx runs each migration in one, so it is set on
/// the connection around the whole run.
pub(super) async fn run(writer: &SqlitePool, migrator: &Migrator) -> Result<(), MigrateError> {
    let mut conn = writer.acquire().await?;
    sqlx::query("PRAGMA foreign_keys = OFF")
        .execute(&mut *conn)
        .await?;
    let result = migrator.run(&mut *conn).await;
    let restored = sqlx::query("PRAGMA foreign_keys = ON")
        .execute(&mut *conn)
        .await;
    result?;
    restored?;
    Ok(())
}

/// Queues stored under `region` by name (created while another region was the default, and
/// this one was named by requests) become the default region's, which is how they are named
/// now. One whose name the default region already has stays as it is, unreachable while
/// `region` is the default; it is logged.
pub(super) async fn adopt_default_region(
    writer: &SqlitePool,
    region: &str,
) -> Result<(), sqlx::Error> {
    let adopted = sqlx::query("UPDATE OR IGNORE queues SET region = '' WHERE region = ?")
        .bind(region)
        .execute(writer)
        .await?
        .rows_affected();
    if adopted > 0 {
        tracing::info!(
            region,
            queues = adopted,
            "queues of the configured default region, created while another region was the default, are now the default region's"
        );
    }
    let shadowed: Vec<(String,)> =
        sqlx::query_as("SELECT name FROM queues WHERE region = ? ORDER BY name")
            .bind(region)
            .fetch_all(writer)
            .await?;
    for (name,) in shadowed {
        tracing::warn!(
            region,
            queue = name,
            "a queue of this name was created in this region while another region was the default, and the default region has one too: it cannot be reached while this region is the default"
        );
    }
    Ok(())
}
