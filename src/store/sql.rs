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

use sqlx::{Sqlite, Transaction};

/// A write transaction.
pub(crate) type Tx<'c> = Transaction<'c, Sqlite>;

/// Most rows one multi-row statement takes. Every row count up to this is a distinct statement
/// text, each prepared once and kept (the writer's statement cache holds them all).
pub(crate) const CHUNK: usize = 64;
