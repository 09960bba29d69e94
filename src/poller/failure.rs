//! How a poll's calls to its source fail: the whole call ([`PollError`]: the store, or the
//! remote SQS queue) or one entry of a batch call ([`EntryFailed`]). A leaf that both the
//! source and the remote queue use (`source.rs`, `remote.rs`).

use crate::store::StoreError;

/// Why a poll (or one step of it) failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PollError {
    /// The store could not do it (a local queue).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The remote SQS queue could not be reached, or refused the call.
    #[error("remote queue {url}: {operation} failed: {reason}")]
    Remote {
        /// The queue's URL.
        url: String,
        /// The SQS operation (`ReceiveMessage`...).
        operation: &'static str,
        /// What the SDK said, with its causes.
        reason: String,
    },
}

/// Why one entry of a batch call (a delete, a visibility change) did not go through.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub(in crate::poller) struct EntryFailed(pub String);

/// One result per entry of a batch call, in the entries' order.
pub(in crate::poller) type Entries = Vec<Result<(), EntryFailed>>;
