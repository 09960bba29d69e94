//! The disk reserve: a file of [`RESERVE_BYTES`] beside the database (`<db>-reserve`), written
//! while the disk has room, so that a disk that fills up (not `storage.max_size`: the disk
//! itself) still leaves room for the operations that free space.
//!
//! When a write fails with `SQLITE_FULL` and the reserve is there, the writer deletes it and
//! runs the group again; while the reserve is missing, sends are refused (as a full database)
//! so that the room goes to receives, deletes, purges and checkpoints, and the reserve is written
//! again as soon as the disk has twice its size free, which lets sends through again (until
//! then, sends may use free pages inside the database file, leaving the reserve's size of them
//! for the others: deleting messages frees pages, not disk space). At start
//! an old reserve is deleted before the database is opened (so opening, recovery and the first
//! deletes have its room on a full disk) and written again once the disk has room.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::domain::error::chain;

/// The size of the reserve file.
pub(crate) const RESERVE_BYTES: u64 = 8 * 1024 * 1024;

/// The reserve file of one database.
#[derive(Debug)]
pub(crate) struct Reserve {
    path: PathBuf,
    present: AtomicBool,
}

impl Reserve {
    /// The reserve of the database at `db`, deleted if an old one is there.
    pub(crate) fn at_start(db: &Path) -> Reserve {
        let mut name = db.as_os_str().to_owned();
        name.push("-reserve");
        let reserve = Reserve {
            path: PathBuf::from(name),
            present: AtomicBool::new(true),
        };
        reserve.release();
        reserve
    }

    /// Whether the reserve is in place: writes it if it is missing and the disk has room.
    pub(crate) fn ensure(&self) -> bool {
        if self.present.load(Ordering::SeqCst) {
            return true;
        }
        let dir = self
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        // The field types are u64 on 64-bit Linux but not everywhere.
        #[allow(clippy::useless_conversion)]
        let room = nix::sys::statvfs::statvfs(dir)
            .map(|s| u64::from(s.blocks_available()) * u64::from(s.fragment_size()))
            .unwrap_or(0);
        if room < 2 * RESERVE_BYTES {
            return false;
        }
        let written = (|| {
            let mut file = std::fs::File::create(&self.path)?;
            let zeros = vec![0u8; 1024 * 1024];
            for _ in 0..RESERVE_BYTES / zeros.len() as u64 {
                file.write_all(&zeros)?;
            }
            file.sync_all()
        })();
        match written {
            Ok(()) => {
                self.present.store(true, Ordering::SeqCst);
                tracing::info!(path = %self.path.display(), "the disk reserve is in place; sends are taken again");
                true
            }
            Err(e) => {
                let _ = std::fs::remove_file(&self.path);
                tracing::debug!(path = %self.path.display(), error = %chain(&e), "the disk reserve could not be written yet");
                false
            }
        }
    }

    /// Deletes the reserve; whether it was in place.
    pub(crate) fn release(&self) -> bool {
        let was = self.present.swap(false, Ordering::SeqCst);
        match std::fs::remove_file(&self.path) {
            Ok(()) => was,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %chain(&e), "cannot delete the disk reserve");
                false
            }
        }
    }
}
