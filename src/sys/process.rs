//! Finding programs and spawning them as children that die with the service.

use std::os::fd::RawFd;
use std::path::PathBuf;

/// Finds `name` on `PATH`.
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|candidate| candidate.is_file())
}

/// Makes `command`'s child die with the service, and hands it `extra_fd` as its fd 3.
///
/// PDEATHSIG: if the service dies (even by SIGKILL) the kernel kills the child too, so a
/// restarted service never finds an orphan still writing its files.
pub fn dies_with_service(command: &mut tokio::process::Command, extra_fd: Option<RawFd>) {
    // SAFETY: prctl, dup2 and fcntl are async-signal-safe and only touch the child's
    // process state between fork and exec.
    unsafe {
        command.pre_exec(move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            if let Some(fd) = extra_fd {
                if fd == 3 {
                    libc::fcntl(3, libc::F_SETFD, 0);
                } else if libc::dup2(fd, 3) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_sh_and_not_nonsense() {
        assert!(find_program("sh").is_some());
        assert!(find_program("no-such-program-heldar").is_none());
    }
}
