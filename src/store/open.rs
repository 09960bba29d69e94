//! Opening the database: typed connection options (WAL, `synchronous`, busy timeout, foreign
//! keys), the single-writer and reader pools, and the embedded migrations.

use std::path::PathBuf;
use std::str::FromStr as _;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use sqlx::SqlitePool;

use super::writer::Writer;
use super::{wake::Wakers, Store};
use crate::clock::Clock;
use crate::config::{StorageConfig, Synchronous};
use crate::metrics::Metrics;

/// Why the database could not be opened. Each means esmd must not start.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The file could not be opened or is not a database.
    #[error("cannot open database {path}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: sqlx::Error,
    },
    /// The schema could not be brought up to date, or is newer than this esmd.
    #[error("cannot migrate database {path} (is it from a newer esmd, or corrupt?)")]
    Migrate {
        /// The database file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: sqlx::migrate::MigrateError,
    },
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

impl Store {
    /// Opens (creating if needed) and migrates the database.
    ///
    /// # Errors
    /// [`OpenError`] if the file cannot be opened, is not a database, or carries a schema this
    /// build does not know; the file is never modified in that case.
    pub async fn open(cfg: &StorageConfig, clock: Clock) -> Result<Store, OpenError> {
        let path = cfg.path.clone();
        let open_err = |source| OpenError::Open {
            path: path.clone(),
            source,
        };
        let base = SqliteConnectOptions::from_str("sqlite:")
            .map_err(open_err)?
            .filename(&cfg.path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match cfg.synchronous {
                Synchronous::Full => SqliteSynchronous::Full,
                Synchronous::Normal => SqliteSynchronous::Normal,
            })
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            .pragma("cache_size", "-16384")
            .pragma("temp_store", "memory");
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(base.clone())
            .await
            .map_err(open_err)?;
        // Refuse a file whose schema is newer than ours before touching it.
        let applied: Vec<(i64,)> = sqlx::query_as("SELECT version FROM _sqlx_migrations")
            .fetch_all(&writer)
            .await
            .unwrap_or_default();
        if let Some((v,)) = applied
            .iter()
            .find(|(v,)| !MIGRATOR.iter().any(|m| m.version == *v))
        {
            return Err(OpenError::Migrate {
                path,
                source: sqlx::migrate::MigrateError::VersionMissing(*v),
            });
        }
        MIGRATOR
            .run(&writer)
            .await
            .map_err(|source| OpenError::Migrate {
                path: path.clone(),
                source,
            })?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(base.read_only(true))
            .await
            .map_err(open_err)?;
        Ok(Self::assemble(
            writer,
            reader,
            clock,
            Arc::new(Metrics::new()),
        ))
    }

    fn assemble(
        writer: SqlitePool,
        reader: SqlitePool,
        clock: Clock,
        metrics: Arc<Metrics>,
    ) -> Store {
        let wake = Wakers::default();
        let (ops, rx) = tokio::sync::mpsc::channel(4096);
        let task = Writer {
            pool: writer.clone(),
            clock: clock.clone(),
            wake: wake.clone(),
            metrics: metrics.clone(),
        };
        // The writer task ends when the last Store clone (the last sender) is dropped.
        tokio::spawn(task.run(rx));
        Store {
            writer,
            reader,
            clock,
            wake,
            metrics,
            ops,
        }
    }

    /// Records queue counters on `metrics` from now on.
    pub fn with_metrics(self, metrics: Arc<Metrics>) -> Self {
        Self::assemble(self.writer, self.reader, self.clock, metrics)
    }

    /// Closes both pools, waiting for open statements to finish.
    pub async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
    }
}
