//! Room for the index on a full disk: a file of `RESERVE_BYTES` beside the
//! database, released when its file system runs out of space (so events,
//! unlocks and commands still commit while recordings fill the disk) and made
//! again once there is room.

use crate::sys::disk::disk_space;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Size of the reserve: many batches of events and segment rows, and a WAL checkpoint.
pub const RESERVE_BYTES: u64 = 4 << 20;
/// The reserve is made again once this much is free besides it.
const REMAKE_AT: u64 = 4 * RESERVE_BYTES;

/// The reserve file of one index.
pub struct IndexReserve {
    path: PathBuf,
}

/// What the reserve should do at a given free space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReserveStep {
    /// Nothing.
    Keep,
    /// Delete it: the index needs the room.
    Release,
    /// Write it again.
    Make,
}

/// Pure: whether a reserve that is `held` (or not) should change at `free` bytes free.
pub fn step(held: bool, free: u64) -> ReserveStep {
    match held {
        true if free < RESERVE_BYTES => ReserveStep::Release,
        false if free >= REMAKE_AT => ReserveStep::Make,
        _ => ReserveStep::Keep,
    }
}

impl IndexReserve {
    /// The reserve of the database at `db` (`<db dir>/index.reserve`).
    pub fn beside(db: &Path) -> Self {
        Self { path: db.with_file_name("index.reserve") }
    }

    fn held(&self) -> bool {
        std::fs::metadata(&self.path).is_ok_and(|m| m.len() >= RESERVE_BYTES)
    }

    /// Releases or makes the reserve as free space says; before every batch (a `statvfs`
    /// costs microseconds, and the disk can fill between two batches).
    pub fn keep(&mut self) {
        let Some(dir) = self.path.parent() else { return };
        let Ok((free, _)) = disk_space(dir) else { return };
        match step(self.held(), free) {
            ReserveStep::Keep => {}
            ReserveStep::Release => self.release(),
            ReserveStep::Make => self.make(),
        }
    }

    /// Deletes the reserve now (a commit found the disk full).
    pub fn release(&mut self) {
        match std::fs::remove_file(&self.path) {
            Ok(()) => tracing::warn!(path = %self.path.display(), "disk nearly full: the index reserve is released"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::error!(path = %self.path.display(), error = %e, "index reserve not released"),
        }
    }

    /// Writes the reserve with real blocks (zeros, synced), so it holds space on any file system.
    fn make(&mut self) {
        let made = (|| -> std::io::Result<()> {
            let mut file = std::fs::File::create(&self.path)?;
            let zeros = vec![0u8; 64 << 10];
            for _ in 0..RESERVE_BYTES / zeros.len() as u64 {
                file.write_all(&zeros)?;
            }
            file.sync_all()
        })();
        if let Err(e) = made {
            let _ = std::fs::remove_file(&self.path);
            tracing::warn!(path = %self.path.display(), error = %e, "index reserve not made");
        } else {
            tracing::info!(path = %self.path.display(), bytes = RESERVE_BYTES, "index reserve made");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn released_when_the_disk_is_nearly_full_and_made_again_with_room() {
        assert_eq!(step(true, RESERVE_BYTES - 1), ReserveStep::Release);
        assert_eq!(step(true, RESERVE_BYTES), ReserveStep::Keep);
        assert_eq!(step(false, REMAKE_AT - 1), ReserveStep::Keep, "no flapping just above the release point");
        assert_eq!(step(false, REMAKE_AT), ReserveStep::Make);
    }

    #[test]
    fn the_reserve_file_is_made_beside_the_index() {
        let dir = std::env::temp_dir().join(format!("heldar-reserve-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let mut reserve = IndexReserve::beside(&dir.join("index.db"));
        reserve.keep();
        assert_eq!(std::fs::metadata(dir.join("index.reserve")).expect("made").len(), RESERVE_BYTES);
        reserve.release();
        assert!(!dir.join("index.reserve").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
