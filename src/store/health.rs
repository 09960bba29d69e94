//! Whether the store can still keep what it acknowledges: the database file at `storage.path`
//! must be the file esmd opened (same device and inode: a file deleted from under the daemon,
//! `rm esmd.db*`, would otherwise take every later write into an unlinked file that a restart
//! never sees) and must be writable (a failing checkpoint means it is not).
//!
//! The identity is checked before every group the writer commits (one `stat`), after a write
//! the database refused, and periodically by the daemon's sweeper. Once broken, the store stays
//! broken: every write is refused as retriable (`StoreError::WriterStopped` with the cause), one
//! ERROR line names the file, and [`Store::failed`](super::Store::failed) resolves so that the
//! owner stops serving and exits non-zero (a restart opens the file anew).

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::watch;

/// The shared health of one store (cheap to clone).
#[derive(Debug, Clone)]
pub(super) struct Health {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    /// The device and inode of the file esmd opened; `None` when it could not be read at open
    /// (then only write failures can break the store).
    identity: Option<(u64, u64)>,
    /// The cause, once broken.
    broken: watch::Sender<Option<Arc<str>>>,
}

fn identity(path: &Path) -> std::io::Result<(u64, u64)> {
    std::fs::metadata(path).map(|m| (m.dev(), m.ino()))
}

impl Health {
    /// Records the identity of the file now at `path` (call it right after opening it).
    pub(super) fn new(path: &Path) -> Health {
        Health {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                identity: identity(path).ok(),
                broken: watch::Sender::new(None),
            }),
        }
    }

    /// The database file.
    pub(super) fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The cause, if the store is broken.
    pub(super) fn broken(&self) -> Option<Arc<str>> {
        self.inner.broken.borrow().clone()
    }

    /// Checks that the file at the path is still the one esmd opened. Returns the cause if the
    /// store is (now) broken.
    pub(super) fn check(&self) -> Option<Arc<str>> {
        if let Some(cause) = self.broken() {
            return Some(cause);
        }
        let opened = self.inner.identity?;
        let path = self.inner.path.display();
        match identity(&self.inner.path) {
            Ok(now) if now == opened => None,
            Ok(_) => Some(self.fail(format!(
                "the database file {path} was replaced by another file while esmd had it open; \
                 what esmd acknowledged since is in the file it opened, not at this path"
            ))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(self.fail(format!(
                "the database file {path} was deleted while esmd had it open; writes would go to \
                 a file a restart never sees"
            ))),
            Err(e) => {
                tracing::warn!(path = %path, error = %e, "cannot check the database file's identity");
                None
            }
        }
    }

    /// Marks the store broken with `cause` (the first cause wins) and logs it once as an ERROR.
    /// Returns the cause in force.
    pub(super) fn fail(&self, cause: String) -> Arc<str> {
        let mut first = false;
        let cause: Arc<str> = cause.into();
        self.inner.broken.send_if_modified(|b| {
            if b.is_none() {
                *b = Some(cause.clone());
                first = true;
            }
            first
        });
        let now = self.broken().unwrap_or(cause);
        if first {
            tracing::error!(
                path = %self.inner.path.display(),
                cause = %now,
                "the store is broken: every write is refused from now on; esmd stops so that it can be restarted"
            );
        }
        now
    }

    /// Resolves with the cause once the store is broken.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub(super) async fn failed(&self) -> Arc<str> {
        let mut rx = self.inner.broken.subscribe();
        let cause = match rx.wait_for(Option::is_some).await {
            Ok(cause) => cause.clone(),
            // The sender lives as long as `self`.
            Err(_) => None,
        };
        match cause {
            Some(cause) => cause,
            None => std::future::pending().await,
        }
    }
}
