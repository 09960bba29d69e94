//! Durability off the writer's path (docs/architecture.md §2, "Flushing the WAL beside the
//! writer"): with `storage.synchronous = "full"` the writer's transactions commit with SQLite's
//! `synchronous = NORMAL` (the WAL is written, not flushed) and this task flushes the WAL file
//! (`fdatasync`) while the writer goes on with the next group. The sends, deletes and
//! visibility changes of a group are answered only once a flush that began after their commit
//! has ended, so nothing is acknowledged before it is on disk, as with `FULL`; one flush covers
//! every group committed before it began. Receives are answered at their commit: a claim lost
//! to a power cut only makes its messages receivable again, as an expired visibility timeout
//! does. What a commit makes receivable wakes long polls at once, so a mapping may invoke a
//! message before its sender has the answer (a sender that never gets one retries, which SQS
//! allows to deliver twice).
//!
//! The flush opens the WAL by its path each time, so it always reaches the file SQLite writes.
//! SQLite itself still flushes the WAL before each checkpoint and the database after it, and
//! the WAL's header when it starts over (its `NORMAL` guarantees). A failed flush leaves writes
//! whose durability is unknown: the task panics, which fails the writer (`handle.rs`), so the
//! daemon stops serving and exits rather than acknowledge anything more.

use std::path::PathBuf;

use tokio::sync::mpsc;

use super::plan::{Op, Outcome};

/// Answers waiting for a flush of the WAL.
#[derive(Debug, Clone)]
pub(in crate::store) struct Syncer {
    tx: mpsc::UnboundedSender<Vec<(Op, Outcome)>>,
}

impl Syncer {
    /// The syncer for the database at `path` and the future that runs it; the future ends,
    /// after flushing for and answering what was handed to it, once every [`Syncer`] is
    /// dropped.
    pub(super) fn new(path: PathBuf) -> (Syncer, impl std::future::Future<Output = ()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut wal = path.into_os_string();
        wal.push("-wal");
        (Syncer { tx }, run(PathBuf::from(wal), rx))
    }

    /// Answers `answers` once the WAL is flushed past their commit.
    pub(super) fn after_flush(&self, answers: Vec<(Op, Outcome)>) {
        if let Err(mpsc::error::SendError(answers)) = self.tx.send(answers) {
            // Gone only if the task panicked on a failed flush: answering late would claim a
            // durability nobody checked.
            let refused = super::super::StoreError::writer_stopped(
                &"the write-ahead log could not be flushed".into(),
            );
            answers.into_iter().for_each(|(op, _)| op.fail(&refused));
        }
    }
}

async fn run(wal: PathBuf, mut rx: mpsc::UnboundedReceiver<Vec<(Op, Outcome)>>) {
    while let Some(mut answers) = rx.recv().await {
        while let Ok(more) = rx.try_recv() {
            answers.extend(more);
        }
        let path = wal.clone();
        let flushed =
            tokio::task::spawn_blocking(move || std::fs::File::open(&path)?.sync_data()).await;
        match flushed {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("could not flush the write-ahead log {}: {e}", wal.display()),
            Err(e) => panic!(
                "the flush of the write-ahead log {} failed: {e}",
                wal.display()
            ),
        }
        for (op, outcome) in answers {
            // Only receives release anything, and they are not deferred.
            if let Some(op) = op.answer(outcome) {
                op.fail(&super::plan::internal(
                    "a deferred answer released messages",
                ));
            }
        }
    }
}
