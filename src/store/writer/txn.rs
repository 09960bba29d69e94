//! The writer's transactions, which it runs itself rather than through `sqlx::Transaction`, so
//! that a group's commit and the next group's `BEGIN IMMEDIATE` go to SQLite's thread as one
//! statement list when the next group is already waiting: under load each group then costs one
//! round trip less (docs/architecture.md §2, "One round trip per statement list").
//!
//! [`Writer::open`](super::Writer) says whether SQLite is inside a transaction of the writer's.
//! Every way out of a group that did not commit rolls back ([`Writer::roll_back`]), and the
//! writer rolls back before the connection goes back to the pool, so a pooled connection is
//! never inside a transaction. A rollback that fails for any reason other than SQLite having
//! rolled back already leaves the connection in doubt: it is closed instead of pooled
//! ([`Writer::discard`](super::Writer)).

use futures_util::StreamExt as _;
use sqlx::{Executor as _, SqliteConnection};

use super::Writer;

// Statements go through `Executor`'s methods (boxed futures): `RawSql::execute` makes the
// writer's task fail rustc's `Send` check ("not general enough").

impl Writer {
    /// Begins a transaction unless the previous commit began it already.
    pub(super) async fn begin(&mut self, conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
        if !self.open {
            conn.execute(sqlx::raw_sql("BEGIN IMMEDIATE")).await?;
            self.open = true;
        }
        Ok(())
    }

    /// Commits the group's transaction; with `chain`, begins the next group's in the same
    /// round trip. An error is the commit's: had the commit gone through and only the next
    /// `BEGIN` failed, the group stands and the next one begins on its own.
    pub(super) async fn commit(
        &mut self,
        conn: &mut SqliteConnection,
        chain: bool,
    ) -> Result<(), sqlx::Error> {
        if !chain {
            conn.execute(sqlx::raw_sql("COMMIT")).await?;
            self.open = false;
            return Ok(());
        }
        let mut steps = conn.execute_many(sqlx::raw_sql("COMMIT; BEGIN IMMEDIATE"));
        match steps.next().await {
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e),
            None => return Err(sqlx::Error::Protocol("COMMIT returned nothing".into())),
        }
        self.open = false;
        match steps.next().await {
            Some(Ok(_)) => self.open = true,
            Some(Err(e)) => {
                tracing::debug!(error = %e, "the next transaction did not begin with the commit; it begins on its own");
            }
            None => {}
        }
        Ok(())
    }

    /// Rolls back the writer's transaction, if one is open.
    pub(super) async fn roll_back(&mut self, conn: &mut SqliteConnection) {
        if !self.open {
            return;
        }
        self.open = false;
        if let Err(e) = conn.execute(sqlx::raw_sql("ROLLBACK")).await {
            // SQLite rolls some failures back by itself (a full disk, say): nothing to undo.
            let done_already = e
                .as_database_error()
                .is_some_and(|d| d.message().contains("no transaction is active"));
            if !done_already {
                tracing::warn!(error = %e, "a failed group could not be rolled back: the write connection is replaced");
                self.discard = true;
            }
        }
    }

    /// Whether the connection can take the next transaction after a failed one: it was rolled
    /// back ([`Writer::roll_back`]) and is not in doubt. (The writer never holds a
    /// `sqlx::Transaction`, so sqlx has nothing of its own to roll back.)
    pub(super) fn usable(&self) -> bool {
        !self.discard
    }
}
