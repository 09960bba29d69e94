//! The store's SQL, grouped by operation. Every function here runs inside a transaction or on a
//! pool it is given, binds every value, and reports what it did through its return value or the
//! group's [`Effects`](super::report::Effects); none of them knows about the writer, waiting,
//! or the public [`Store`](super::Store).
//!
//! - `send`: storing messages (standard multi-row inserts; FIFO deduplication and sequence numbers)
//! - `claim`: receives, redrive to dead-letter queues, the next visibility time
//! - `settle`: deletes by receipt handle and visibility changes
//! - `retention`: expiry, the periodic sweep, counts by state
//! - `fifo`: group heads and sequence numbers
//! - `queues`: queue rows
//! - `mappings`: event source mappings created through Lambda's API
//! - `moves`: message move tasks (a dead-letter queue's redrive) and the move itself
//! - `events`: asynchronous invocations (the Invoke API's `Event` type)
//! - `tombstones`: what became of messages no longer stored
//! - `peek`: reading messages and tombstones without changing them (peek and explain)

pub(crate) mod claim;
pub(crate) mod events;
pub(crate) mod fifo;
pub(crate) mod mappings;
pub(crate) mod moves;
pub(crate) mod peek;
pub(crate) mod queues;
pub(crate) mod retention;
pub(crate) mod send;
pub(crate) mod settle;
pub(crate) mod tombstones;

/// The connection of a write transaction: a `sqlx::Transaction` (which dereferences to it), or
/// the writer's own connection inside the transaction it manages (`writer.rs`).
pub(crate) type Tx<'c> = sqlx::SqliteConnection;

/// Most rows one multi-row statement takes.
pub(crate) const CHUNK: usize = 64;

/// Most statements of [`CHUNK`] rows sent to SQLite's thread as one statement list (one round
/// trip): a group's deletes. (Sends too were measured so, padded with rows of NULLs that a
/// `WHERE` drops: no faster, BENCHMARKS.md session 8.)
pub(crate) const CHUNKS_PER_TRIP: usize = 8;

/// The row count a multi-row statement list is padded to, with rows that change nothing: a
/// power of two up to [`CHUNK`], whole chunks past it. So a statement list has one of 14 texts
/// (1, 2, 4 … 64 rows, then 2 … 8 chunks of 64), each prepared once and kept in the writer's
/// statement cache, however many rows a group brings.
pub(crate) fn padded(rows: usize) -> usize {
    if rows <= CHUNK {
        rows.next_power_of_two()
    } else {
        rows.div_ceil(CHUNK) * CHUNK
    }
}
