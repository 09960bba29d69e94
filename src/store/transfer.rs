//! `esmd copy-storage`: everything an SQLite database holds, copied into an empty PostgreSQL
//! database, so that a team moving to `storage.backend = "postgres"` keeps its queues, its
//! messages in every state, deduplication entries, tombstones, mappings, move tasks and
//! asynchronous invocations (README "Outgrowing one machine", docs/postgres.md).
//!
//! The copy is table by table and column by column, by name: the PostgreSQL schema keeps the
//! SQLite schema's tables and columns (`migrations/postgres/`), so the copy needs no list of its
//! own and follows the schemas as they grow. Rows keep their ids, so foreign keys, FIFO order
//! (message ids are send order) and even receipt handles stay valid; each serial sequence then
//! continues after the highest id. What must not happen is a silent loss, so the copy refuses
//! (and writes nothing) when the PostgreSQL database already holds queues, when a table or
//! column with data has no counterpart there, or when a value does not fit its column; and it
//! compares the row counts of both sides before it commits.
//!
//! The SQLite side is read inside one `BEGIN IMMEDIATE` transaction: a daemon still running on
//! the file cannot commit anything during the copy (its writes wait, then are refused as
//! retriable), so the copy is one consistent moment. The PostgreSQL side is one transaction:
//! all or nothing.

use std::collections::BTreeMap;
use std::str::FromStr as _;

use futures_util::TryStreamExt as _;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteRow};
use sqlx::{Column as _, Connection as _, Postgres, QueryBuilder, Row as _};

use super::{PgOptions, PgStore, Store};
use crate::clock::Clock;
use crate::config::StorageConfig;

/// Rows inserted per statement (PostgreSQL takes at most 65,535 parameters in one).
const ROWS_PER_INSERT: usize = 500;

/// Tables never copied: each side's own migration bookkeeping.
const SKIPPED: &[&str] = &["_sqlx_migrations"];

/// SQLite columns that only index what other columns say, which PostgreSQL finds its own way
/// (`messages.is_head` marks a FIFO group's oldest message; PostgreSQL asks `DISTINCT ON`).
const DERIVED: &[(&str, &str)] = &[("messages", "is_head")];

/// Why a copy was refused or failed; nothing was written to PostgreSQL.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// The SQLite file could not be opened as esmd's database.
    #[error(transparent)]
    Open(#[from] super::OpenError),
    /// A database error, on the side named.
    #[error("{side}: {source}")]
    Database {
        /// `SQLite` or `PostgreSQL`.
        side: &'static str,
        /// The cause.
        #[source]
        source: sqlx::Error,
    },
    /// Something in the data or the schemas that would be lost or changed by the copy.
    #[error("{0}; nothing was copied")]
    Refused(String),
}

/// What was copied: rows per table, in copy order.
#[derive(Debug, Default)]
pub struct CopyReport {
    /// `(table, rows)`.
    pub tables: Vec<(String, u64)>,
}

fn sqlite_err(source: sqlx::Error) -> TransferError {
    TransferError::Database {
        side: "SQLite",
        source,
    }
}

fn pg_err(source: sqlx::Error) -> TransferError {
    TransferError::Database {
        side: "PostgreSQL",
        source,
    }
}

/// Copies the SQLite database `storage.path` into the (empty) PostgreSQL database at `url`.
///
/// # Errors
/// [`TransferError`]; PostgreSQL is then left as it was (apart from its schema, which is
/// brought up to date first, as `esmd run` would).
pub async fn copy_to_postgres(
    storage: &StorageConfig,
    url: &str,
) -> Result<CopyReport, TransferError> {
    // The URL first, so that a mistyped one leaves the SQLite file untouched; never echoed, as
    // it may carry the password.
    let pg_options = PgConnectOptions::from_str(url).map_err(|e| {
        TransferError::Refused(format!(
            "--to is not a PostgreSQL URL such as postgres://esmd@localhost:5432/esmd ({e})"
        ))
    })?;
    // Brings the file's schema up to date (and checks it is esmd's), as `esmd run` would.
    let store = Store::open(storage, Clock::System).await?;
    store.close().await;
    // Creates or migrates the PostgreSQL schema, as `esmd run` would.
    PgStore::connect(pg_options.clone(), Clock::System, PgOptions::default())
        .await
        .map_err(|e| TransferError::Refused(format!("cannot prepare PostgreSQL: {e}")))?
        .close()
        .await;

    let mut sqlite = SqliteConnection::connect_with(
        &SqliteConnectOptions::new()
            .filename(&storage.path)
            .busy_timeout(std::time::Duration::from_secs(10)),
    )
    .await
    .map_err(sqlite_err)?;
    let mut pg = PgConnection::connect_with(&pg_options)
        .await
        .map_err(pg_err)?;
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut sqlite)
        .await
        .map_err(sqlite_err)?;
    let result = copy_all(&mut sqlite, &mut pg).await;
    let _ = sqlx::query("ROLLBACK").execute(&mut sqlite).await;
    result
}

/// The copy itself, in one PostgreSQL transaction.
async fn copy_all(
    sqlite: &mut SqliteConnection,
    pg: &mut PgConnection,
) -> Result<CopyReport, TransferError> {
    let mut tx = pg.begin().await.map_err(pg_err)?;
    let (queues,): (i64,) = sqlx::query_as("SELECT count(*) FROM queues")
        .fetch_one(&mut *tx)
        .await
        .map_err(pg_err)?;
    if queues > 0 {
        return Err(TransferError::Refused(format!(
            "the PostgreSQL database already holds {queues} queue(s); copy-storage fills an empty database only"
        )));
    }
    let target = pg_tables(&mut tx).await?;
    let mut report = CopyReport::default();
    for table in sqlite_tables(sqlite).await? {
        let rows: (i64,) = sqlx::query_as(&format!("SELECT count(*) FROM \"{table}\""))
            .fetch_one(&mut *sqlite)
            .await
            .map_err(sqlite_err)?;
        let Some(columns) = target.get(&table) else {
            if rows.0 > 0 {
                return Err(TransferError::Refused(format!(
                    "table {table} holds {} row(s) and PostgreSQL has no such table",
                    rows.0
                )));
            }
            continue;
        };
        let copied = copy_table(sqlite, &mut tx, &table, columns).await?;
        let (landed,): (i64,) = sqlx::query_as(&format!("SELECT count(*) FROM \"{table}\""))
            .fetch_one(&mut *tx)
            .await
            .map_err(pg_err)?;
        if landed != rows.0 || copied != rows.0 as u64 {
            return Err(TransferError::Refused(format!(
                "table {table}: {} row(s) in SQLite, {landed} in PostgreSQL after the copy",
                rows.0
            )));
        }
        if columns.contains_key("id") && rows.0 > 0 {
            sqlx::query(&format!(
                "SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM \"{table}\"))"
            ))
            .execute(&mut *tx)
            .await
            .map_err(pg_err)?;
        }
        report.tables.push((table, copied));
    }
    // Tables PostgreSQL keeps from the others' rows (SQLite keeps the same in memory).
    if target.contains_key("queue_counts") {
        sqlx::query(
            "INSERT INTO queue_counts (queue_id, shard, total) \
             SELECT queue_id, 0, COUNT(*) FROM messages GROUP BY queue_id",
        )
        .execute(&mut *tx)
        .await
        .map_err(pg_err)?;
    }
    tx.commit().await.map_err(pg_err)?;
    Ok(report)
}

/// The SQLite file's tables, `queues` first (every other table refers to it), then by name.
async fn sqlite_tables(sqlite: &mut SqliteConnection) -> Result<Vec<String>, TransferError> {
    let names: Vec<(String,)> = sqlx::query_as(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
         ORDER BY name <> 'queues', name",
    )
    .fetch_all(&mut *sqlite)
    .await
    .map_err(sqlite_err)?;
    Ok(names
        .into_iter()
        .map(|(n,)| n)
        .filter(|n| !SKIPPED.contains(&n.as_str()))
        .collect())
}

/// PostgreSQL's tables in the current schema, each with its columns' types.
async fn pg_tables(
    tx: &mut PgConnection,
) -> Result<BTreeMap<String, BTreeMap<String, String>>, TransferError> {
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text, data_type::text FROM information_schema.columns \
         WHERE table_schema = current_schema()",
    )
    .fetch_all(&mut *tx)
    .await
    .map_err(pg_err)?;
    let mut tables: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (table, column, kind) in rows {
        tables.entry(table).or_default().insert(column, kind);
    }
    Ok(tables)
}

/// Copies one table's rows in rowid order; the number copied.
async fn copy_table(
    sqlite: &mut SqliteConnection,
    tx: &mut PgConnection,
    table: &str,
    target: &BTreeMap<String, String>,
) -> Result<u64, TransferError> {
    let info: Vec<SqliteRow> = sqlx::query(&format!("PRAGMA table_info(\"{table}\")"))
        .fetch_all(&mut *sqlite)
        .await
        .map_err(sqlite_err)?;
    let mut columns = Vec::new();
    for row in &info {
        let name: String = row.try_get("name").map_err(sqlite_err)?;
        if target.contains_key(&name) {
            columns.push(name);
        } else if !DERIVED.contains(&(table, name.as_str())) {
            let (used,): (i64,) = sqlx::query_as(&format!(
                "SELECT count(*) FROM \"{table}\" WHERE \"{name}\" IS NOT NULL"
            ))
            .fetch_one(&mut *sqlite)
            .await
            .map_err(sqlite_err)?;
            if used > 0 {
                return Err(TransferError::Refused(format!(
                    "column {table}.{name} holds data and PostgreSQL's {table} has no such column"
                )));
            }
        }
    }
    let list = columns
        .iter()
        .map(|c| format!("\"{c}\""))
        .collect::<Vec<_>>()
        .join(", ");
    // Streamed, a statement's worth of rows at a time: a queue may hold millions.
    let select = format!("SELECT {list} FROM \"{table}\"");
    let mut rows = sqlx::query(&select).fetch(&mut *sqlite);
    let mut chunk: Vec<SqliteRow> = Vec::with_capacity(ROWS_PER_INSERT);
    let mut copied = 0u64;
    loop {
        let row = rows.try_next().await.map_err(sqlite_err)?;
        let end = row.is_none();
        chunk.extend(row);
        if chunk.len() == ROWS_PER_INSERT || (end && !chunk.is_empty()) {
            insert(tx, table, &list, &columns, target, &chunk).await?;
            copied += chunk.len() as u64;
            chunk.clear();
        }
        if end {
            return Ok(copied);
        }
    }
}

/// Inserts `chunk` into `table` in one statement.
async fn insert(
    tx: &mut PgConnection,
    table: &str,
    list: &str,
    columns: &[String],
    target: &BTreeMap<String, String>,
    chunk: &[SqliteRow],
) -> Result<(), TransferError> {
    let mut insert: QueryBuilder<Postgres> =
        QueryBuilder::new(format!("INSERT INTO \"{table}\" ({list}) "));
    let mut bad = None;
    insert.push_values(chunk, |mut b, row| {
        for (i, column) in columns.iter().enumerate() {
            match value(row, i, &target[column]) {
                Ok(Value::Int(v)) => b.push_bind(v),
                Ok(Value::Bool(v)) => b.push_bind(v),
                Ok(Value::Text(v)) => b.push_bind(v),
                Ok(Value::Bytes(v)) => b.push_bind(v),
                Err(why) => {
                    bad.get_or_insert(format!("{table}.{column}: {why}"));
                    b.push_bind(None::<i64>)
                }
            };
        }
    });
    if let Some(why) = bad {
        return Err(TransferError::Refused(why));
    }
    insert.build().execute(&mut *tx).await.map_err(pg_err)?;
    Ok(())
}

/// One value, as PostgreSQL's column type takes it.
enum Value {
    Int(Option<i64>),
    Bool(Option<bool>),
    Text(Option<String>),
    Bytes(Option<Vec<u8>>),
}

/// Reads column `i` of an SQLite row for a PostgreSQL column of type `kind`.
fn value(row: &SqliteRow, i: usize, kind: &str) -> Result<Value, String> {
    let name = row.column(i).name().to_owned();
    let err = |e: sqlx::Error| format!("{name}: {e}");
    Ok(match kind {
        "bigint" | "integer" | "smallint" => Value::Int(row.try_get(i).map_err(err)?),
        "boolean" => Value::Bool(
            row.try_get::<Option<i64>, _>(i)
                .map_err(err)?
                .map(|v| v != 0),
        ),
        "text" | "character varying" => Value::Text(row.try_get(i).map_err(err)?),
        "bytea" => Value::Bytes(row.try_get(i).map_err(err)?),
        other => {
            return Err(format!(
                "PostgreSQL column type {other} is not one esmd copies"
            ))
        }
    })
}
