//! Free space of a file system.

use anyhow::{Context, Result};
use std::path::Path;

/// Free and total bytes of the file system holding `dir`.
pub fn disk_space(dir: &Path) -> Result<(u64, u64)> {
    let c_path = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).context("path with a NUL byte")?;
    // SAFETY: statvfs writes into the zeroed struct we own; the path is NUL-terminated.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) } != 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("statvfs {}", dir.display()));
    }
    let unit = stat.f_frsize as u64;
    Ok((stat.f_bavail as u64 * unit, stat.f_blocks as u64 * unit))
}

/// Commits the file system holding `dir` (`syncfs`): after deletions, so the blocks they
/// freed show in `statvfs` at once and the next measure does not see space still taken.
pub fn sync_fs(dir: &Path) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let handle = std::fs::File::open(dir)?;
    // SAFETY: syncfs takes a file descriptor we hold open.
    if unsafe { libc::syncfs(handle.as_raw_fd()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_space_reads_the_file_system() {
        let (free, total) = disk_space(Path::new("/")).expect("statvfs");
        assert!(total > 0 && free <= total);
    }
}
