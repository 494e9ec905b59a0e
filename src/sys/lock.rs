//! One process per data directory: an exclusive `flock` on `<dir>/lock`,
//! held for as long as the process runs, the holder's pid written inside.

use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The held lock; released when dropped (or when the process ends, however it ends).
#[derive(Debug)]
pub struct DirLock {
    _file: std::fs::File,
}

/// Why the lock was not taken.
#[derive(Debug)]
pub enum LockError {
    /// Another process holds it (its pid, when it wrote one).
    Held(Option<u32>),
    /// The lock file could not be opened or written.
    Io(std::io::Error),
}

impl std::fmt::Display for LockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Held(Some(pid)) => write!(f, "another heldar-edge (pid {pid}) uses this data directory"),
            Self::Held(None) => write!(f, "another heldar-edge uses this data directory"),
            Self::Io(e) => write!(f, "cannot take the data directory's lock: {e}"),
        }
    }
}

impl std::error::Error for LockError {}

/// Takes the lock of `dir` without waiting, writing this process's pid into it.
pub fn lock_dir(dir: &Path) -> Result<DirLock, LockError> {
    let path = dir.join("lock");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(LockError::Io)?;
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let error = std::io::Error::last_os_error();
        if error.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(LockError::Io(error));
        }
        let mut text = String::new();
        let _ = file.read_to_string(&mut text);
        return Err(LockError::Held(text.trim().parse().ok()));
    }
    file.set_len(0).map_err(LockError::Io)?;
    file.rewind().map_err(LockError::Io)?;
    writeln!(file, "{}", std::process::id()).map_err(LockError::Io)?;
    Ok(DirLock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time_and_the_second_learns_the_pid() {
        let dir = std::env::temp_dir().join(format!("heldar-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let held = lock_dir(&dir).expect("first");
        match lock_dir(&dir) {
            Err(LockError::Held(pid)) => assert_eq!(pid, Some(std::process::id())),
            other => panic!("second lock: {other:?}"),
        }
        drop(held);
        assert!(lock_dir(&dir).is_ok(), "free again once dropped");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
