//! Opening the database: typed connection options (WAL, `synchronous`, busy timeout, foreign
//! keys, `max_page_count` from `storage.max_size`), the single-writer and reader pools, and the
//! embedded migrations.
//!
//! An existing file is checked before anything may write to it, on a read-only connection (no
//! journal-mode switch, no migration, no checkpoint on close): it must be an SQLite file, pass
//! SQLite's `quick_check` (which reads it once, so a truncated or damaged file is found here rather than
//! by a later write), be esmd's (or empty), and carry no migration newer than this build knows.
//! Any of these failing refuses the start with an [`OpenError`] naming the file, and the file is
//! left byte for byte as it was. Then a write that is rolled back checks that the file can be
//! written at all (SQLite silently opens an immutable or read-only file read-only).

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::str::FromStr as _;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Connection as _, SqlitePool};

use super::hidden::{HiddenCap, DEFAULT_CAP};
use super::{health::Health, tally::Tally, wake::Wakers, writer, SqliteStore, StoreOptions};
use crate::clock::Clock;
use crate::config::{StorageConfig, Synchronous};
use crate::domain::error::chain;

/// How long a write waits for another process's lock before it is refused as retriable.
pub(super) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// SQLite's largest `max_page_count`.
const MAX_PAGE_COUNT: u64 = 4_294_967_294;

/// The first 16 bytes of every SQLite 3 database file.
const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// Why the database could not be opened. Each means esmd must not start; none of them has
/// modified the file.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The file could not be opened (permissions, a missing directory, I/O).
    #[error("cannot open database {}", path.display())]
    Open {
        /// The database file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: sqlx::Error,
    },
    /// The file is not an SQLite database, or it is damaged (truncated, overwritten).
    #[error(
        "database {} is corrupt or not an SQLite database ({detail}); esmd left it untouched: \
         restore it from a backup, or move it away to start with an empty one",
        path.display()
    )]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// What SQLite or the header check found.
        detail: String,
    },
    /// The file is an SQLite database of another program.
    #[error(
        "database {} is an SQLite database but not esmd's (it has tables and no esmd schema); \
         esmd left it untouched: point storage.path at another file",
        path.display()
    )]
    Foreign {
        /// The database file.
        path: PathBuf,
    },
    /// The file was written by a newer esmd, whose schema this build does not know.
    #[error(
        "database {} was written by a newer esmd (schema version {version}; this esmd knows up \
         to {known}); esmd left it untouched: run the newer esmd on it",
        path.display()
    )]
    Newer {
        /// The database file.
        path: PathBuf,
        /// The unknown migration version found in the file.
        version: i64,
        /// The newest migration version this build has.
        known: i64,
    },
    /// The file (or its directory, for the WAL) cannot be written: esmd would acknowledge
    /// nothing, so it does not start.
    #[error(
        "database {} cannot be written ({detail}); esmd left it untouched: make the file and its \
         directory writable by esmd (check permissions, `lsattr` for the immutable flag, a \
         read-only mount)",
        path.display()
    )]
    ReadOnly {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        detail: String,
    },
    /// `storage.url` could not be turned into PostgreSQL connect options.
    #[error("storage.url {url} is not a usable PostgreSQL URL")]
    Postgres {
        /// The URL, without its password.
        url: String,
        /// The cause.
        #[source]
        source: sqlx::Error,
    },
    /// The schema could not be brought up to date.
    #[error("cannot migrate database {}", path.display())]
    Migrate {
        /// The database file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: sqlx::migrate::MigrateError,
    },
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// SQLite's primary result codes that mean "this is not a usable database file".
fn is_corruption(e: &sqlx::Error) -> bool {
    const SQLITE_CORRUPT: i64 = 11;
    const SQLITE_NOTADB: i64 = 26;
    let code = match e {
        sqlx::Error::Database(d) => d.code().and_then(|c| c.parse::<i64>().ok()),
        _ => None,
    };
    matches!(code.map(|c| c & 0xff), Some(SQLITE_CORRUPT | SQLITE_NOTADB))
}

/// The cause of an error, for [`OpenError::Corrupt`]'s detail.
fn detail(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(d) => d.message().to_owned(),
        other => other.to_string(),
    }
}

/// Checks what can be checked without SQLite: a non-empty file must start with the SQLite
/// header. Returns whether the file exists with content (and so needs the SQLite checks too).
fn check_header(path: &Path) -> Result<bool, OpenError> {
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => {
            return Err(OpenError::Open {
                path: path.to_owned(),
                source: sqlx::Error::Io(e),
            })
        }
    };
    let mut header = Vec::with_capacity(100);
    if let Err(e) = file.by_ref().take(100).read_to_end(&mut header) {
        return Err(OpenError::Open {
            path: path.to_owned(),
            source: sqlx::Error::Io(e),
        });
    }
    let corrupt = |detail: &str| OpenError::Corrupt {
        path: path.to_owned(),
        detail: detail.to_owned(),
    };
    if header.is_empty() {
        // SQLite treats an empty file as an empty database.
        return Ok(false);
    }
    if !header.starts_with(SQLITE_MAGIC) {
        return Err(corrupt("the file does not start with the SQLite header"));
    }
    if header.len() < 100 {
        return Err(corrupt("the file is shorter than an SQLite header"));
    }
    Ok(true)
}

/// The checks of the module docs on an existing file, over a connection that writes nothing.
/// Returns the page size.
async fn check_existing(path: &Path, options: &SqliteConnectOptions) -> Result<u64, OpenError> {
    let sqlite_err = |source: sqlx::Error| {
        if is_corruption(&source) {
            OpenError::Corrupt {
                path: path.to_owned(),
                detail: detail(&source),
            }
        } else {
            OpenError::Open {
                path: path.to_owned(),
                source,
            }
        }
    };
    let mut conn = SqliteConnection::connect_with(options)
        .await
        .map_err(sqlite_err)?;
    let result = async {
        let problems: Vec<(String,)> = sqlx::query_as("PRAGMA quick_check")
            .fetch_all(&mut conn)
            .await
            .map_err(sqlite_err)?;
        if problems.first().is_none_or(|(p,)| p != "ok") {
            let first = problems
                .first()
                .map(|(p,)| p.replace('\n', " "))
                .unwrap_or_else(|| "quick_check returned nothing".to_owned());
            return Err(OpenError::Corrupt {
                path: path.to_owned(),
                detail: format!("SQLite's quick_check found: {}", first.trim()),
            });
        }
        let tables: Vec<(String,)> = sqlx::query_as(
            "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
        )
        .fetch_all(&mut conn)
        .await
        .map_err(sqlite_err)?;
        if tables.iter().any(|(t,)| t == "_sqlx_migrations") {
            let applied: Vec<(i64,)> = sqlx::query_as("SELECT version FROM _sqlx_migrations")
                .fetch_all(&mut conn)
                .await
                .map_err(sqlite_err)?;
            let known = MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
            if let Some((version,)) = applied
                .iter()
                .find(|(v,)| !MIGRATOR.iter().any(|m| m.version == *v))
            {
                if *version > known {
                    return Err(OpenError::Newer {
                        path: path.to_owned(),
                        version: *version,
                        known,
                    });
                }
                // An unknown older version: the migrator reports it below, untouched too.
            }
        } else if !tables.is_empty() {
            return Err(OpenError::Foreign {
                path: path.to_owned(),
            });
        }
        let (page_size,): (i64,) = sqlx::query_as("PRAGMA page_size")
            .fetch_one(&mut conn)
            .await
            .map_err(sqlite_err)?;
        Ok(u64::try_from(page_size).unwrap_or(4096))
    }
    .await;
    // Read-only: closing it writes nothing to the file, whatever the outcome.
    let _ = conn.close().await;
    result
}

impl SqliteStore {
    /// Opens (creating if needed) and migrates the database.
    ///
    /// # Errors
    /// [`OpenError`] if the file cannot be opened, is not an SQLite database or is damaged, is
    /// another program's database, or carries a schema this build does not know; the file is
    /// never modified in those cases.
    pub async fn open(cfg: &StorageConfig, clock: Clock) -> Result<SqliteStore, OpenError> {
        Self::open_with(cfg, clock, StoreOptions::default()).await
    }

    /// Opens like [`Store::open`], with the writer task on the owner's tracker and token and an
    /// observer for the store's events.
    ///
    /// # Errors
    /// As [`Store::open`].
    pub async fn open_with(
        cfg: &StorageConfig,
        clock: Clock,
        opts: StoreOptions,
    ) -> Result<SqliteStore, OpenError> {
        let path = cfg.path.clone();
        // Deleted before anything opens the file, so that a full disk leaves room to start.
        let reserve = std::sync::Arc::new(super::reserve::Reserve::at_start(&path));
        let open_err = |source| OpenError::Open {
            path: path.clone(),
            source,
        };
        let plain = SqliteConnectOptions::from_str("sqlite:")
            .map_err(open_err)?
            .filename(&cfg.path)
            .busy_timeout(BUSY_TIMEOUT);
        // A hot rollback journal (a start killed while SQLite first switched the file to WAL)
        // can only be rolled back by a writer: leave that file to SQLite's own recovery.
        let hot_journal =
            std::fs::metadata(format!("{}-journal", path.display())).is_ok_and(|m| m.len() > 0);
        let page_size = if !hot_journal && check_header(&path)? {
            // Read-only: it never checkpoints a WAL into the file, even when it closes last.
            check_existing(&path, &plain.clone().read_only(true)).await?
        } else {
            // A new (or empty) file: SQLite's default page size, which esmd never changes.
            4096
        };
        let mut base = plain
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match cfg.synchronous {
                Synchronous::Full => SqliteSynchronous::Full,
                Synchronous::Normal => SqliteSynchronous::Normal,
            })
            .foreign_keys(true)
            .pragma("cache_size", "-8192")
            .pragma("temp_store", "memory");
        let max_pages = cfg
            .max_size
            .map(|bytes| (bytes / page_size.max(512)).clamp(1, MAX_PAGE_COUNT));
        if let Some(pages) = max_pages {
            base = base.pragma("max_page_count", pages.to_string());
        }
        // The writer prepares each shape of multi-row statement list once (`sql::padded`: 14
        // per kind); keep them all prepared. A local
        // SQLite connection does not go stale, so no ping before each group either.
        let full = cfg.synchronous == Synchronous::Full;
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .test_before_acquire(false)
            .acquire_timeout(Duration::from_secs(30))
            .idle_timeout(None)
            .max_lifetime(None)
            .after_release(move |conn, _| {
                Box::pin(async move {
                    // After an error SQLite may have rolled back by itself (SQLITE_FULL does),
                    // so sqlx's ROLLBACK fails and the connection stays marked as in a
                    // transaction: the ping runs after the queued ROLLBACK, and a connection
                    // still marked is replaced.
                    if conn.is_in_transaction() {
                        conn.ping().await?;
                        if conn.is_in_transaction() {
                            tracing::warn!("the database connection was left inside a transaction after an error; replacing it");
                            return Ok(false);
                        }
                    }
                    // The writer task commits with NORMAL and flushes beside (`writer/sync.rs`).
                    if full {
                        sqlx::query("PRAGMA synchronous = FULL")
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(true)
                })
            })
            .connect_with(
                base.clone()
                    .statement_cache_capacity(512)
                    // A claim returns the rows of every receive in the group; let SQLite's
                    // thread hand them all over without waiting for the writer task to drain.
                    .row_buffer_size(4096),
            )
            .await
            .map_err(open_err)?;
        check_writable(&writer, &path).await?;
        let health = Health::new(&path);
        super::migrate::run(&writer, &MIGRATOR)
            .await
            .map_err(|source| OpenError::Migrate {
                path: path.clone(),
                source,
            })?;
        if let Some(region) = &opts.default_region {
            super::migrate::adopt_default_region(&writer, region)
                .await
                .map_err(open_err)?;
        }
        if let Some(pages) = max_pages {
            writer::room::warn_if_over(&writer, &path, pages, page_size).await;
        }
        // Readers (counts, listings, wake-up checks): a small page cache each, no ping.
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(30))
            .test_before_acquire(false)
            .connect_with(base.read_only(true).pragma("cache_size", "-2048"))
            .await
            .map_err(open_err)?;
        let tally = Tally::load(&writer).await.map_err(open_err)?;
        let wake = Wakers::default();
        let send_limit = max_pages.map(|pages| writer::room::send_limit(pages, page_size));
        let tasks = opts.tasks.unwrap_or_default();
        let ops = writer::Handle::start(writer::Start {
            pool: writer.clone(),
            clock: clock.clone(),
            wake: wake.clone(),
            observer: opts.observer.clone(),
            fault: opts.writer_fault,
            health: health.clone(),
            tally: tally.clone(),
            tasks: tasks.clone(),
            stop: opts.stop.unwrap_or_default(),
            send_limit,
            reserve: reserve.clone(),
            tombstones: !cfg.tombstone_retention.is_zero(),
            flush_beside: (cfg.synchronous == Synchronous::Full).then(|| path.clone()),
        });
        if !reserve.ensure() {
            tracing::warn!(path = %path.display(), "the disk has no room for esmd's disk reserve: sends are refused (as a full database) until it has; receives, deletes and purges go on");
        }
        Ok(SqliteStore {
            writer,
            reader,
            clock,
            wake,
            observer: opts.observer,
            ops,
            queues: Default::default(),
            health,
            max_queues: cfg.max_queues,
            tally,
            reserve,
            receivers: Default::default(),
            moves: Default::default(),
            events: Default::default(),
            hidden: HiddenCap::new(DEFAULT_CAP),
            tasks,
            sweep_policy: super::sql::retention::SweepPolicy {
                tombstone_retention_ms: super::rows::to_ms(cfg.tombstone_retention),
                send_limit,
            },
        })
    }

    /// Stops the writer once it has answered what is queued (later operations are refused
    /// with `StoreError::WriterStopped`), then closes both pools, waiting for open statements to finish. Before that the WAL is
    /// checkpointed into the database file and emptied, so that after a clean shutdown the file
    /// alone holds everything (a copy of it is a complete backup). The readers close first, so
    /// that the last connection to close is the writer, which removes the WAL file.
    pub async fn close(&self) {
        self.ops.close().await;
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&self.writer)
            .await
        {
            tracing::debug!(error = %chain(&e), "the final checkpoint did not run; the WAL stays beside the file");
        }
        self.reader.close().await;
        self.writer.close().await;
    }
}

/// Starts a write and rolls it back (`BEGIN IMMEDIATE`, a write of the header's `user_version`
/// to its own value, `ROLLBACK`), which leaves the file as it was: SQLite opens a file it may
/// not write (immutable, read-only mount, permissions) read-only without a word, and only a
/// write says so.
async fn check_writable(writer: &SqlitePool, path: &Path) -> Result<(), OpenError> {
    let read_only = |e: sqlx::Error| OpenError::ReadOnly {
        path: path.to_owned(),
        detail: detail(&e),
    };
    let mut conn = writer.acquire().await.map_err(|source| OpenError::Open {
        path: path.to_owned(),
        source,
    })?;
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut *conn)
        .await
        .map_err(read_only)?;
    // On a file opened read-only SQLite makes BEGIN IMMEDIATE a read transaction; setting the
    // header's user_version to itself is a write, and the ROLLBACK undoes it.
    let wrote = async {
        let (version,): (i64,) = sqlx::query_as("PRAGMA user_version")
            .fetch_one(&mut *conn)
            .await?;
        sqlx::query(&format!("PRAGMA user_version = {version}"))
            .execute(&mut *conn)
            .await
    }
    .await;
    let rolled_back = sqlx::query("ROLLBACK").execute(&mut *conn).await;
    wrote.map_err(read_only)?;
    rolled_back.map_err(read_only)?;
    Ok(())
}
