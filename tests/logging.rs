//! Log lines carry ANSI colour on a terminal only: not into a pipe or a file,
//! and not on a terminal with `NO_COLOR` set (a serial console). The real
//! binary's `sweep` logs the index migrations of a fresh data directory; its
//! stderr is a pipe or a pseudo terminal.

mod support;

use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use support::TempDir;

const ESCAPE: &str = "\x1b[";

/// A config with no camera and a fresh data directory, so `sweep` logs the migrations.
fn fresh_config(dir: &TempDir) -> PathBuf {
    let config = dir.join("config.toml");
    std::fs::write(&config, "[node]\nid = \"log\"\ndata_dir = \"data\"\n").expect("config");
    std::fs::create_dir_all(dir.join("data/recordings")).expect("recordings");
    config
}

fn sweep(config: &Path, env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_heldar-edge"));
    command.args(["sweep", "-c"]).arg(config).env_remove("NO_COLOR").env_remove("JOURNAL_STREAM");
    command.env("HELDAR_LOG", "info").envs(env.iter().copied()).stdin(Stdio::null()).stdout(Stdio::null());
    command
}

/// What `sweep` writes to stderr when stderr is a pseudo terminal.
fn on_a_terminal(config: &Path, env: &[(&str, &str)]) -> String {
    let (mut master, mut slave) = (-1, -1);
    // SAFETY: openpty writes two descriptors into the ints we own; name, termios and size may be null.
    let rc =
        unsafe { libc::openpty(&mut master, &mut slave, std::ptr::null_mut(), std::ptr::null(), std::ptr::null()) };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: two fresh descriptors nothing else owns.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    let mut command = sweep(config, env);
    command.stderr(Stdio::from(slave));
    let mut child = command.spawn().expect("heldar-edge sweep");
    // Our copy of the slave goes with the command: once the child is gone, reads end.
    drop(command);
    let mut master = std::fs::File::from(master);
    let (mut out, mut buf) = (Vec::new(), [0u8; 4096]);
    // EIO, not 0, is how a pseudo terminal's master reads the end.
    while let Ok(n @ 1..) = master.read(&mut buf) {
        out.extend_from_slice(&buf[..n]);
    }
    let status = child.wait().expect("wait");
    let out = String::from_utf8_lossy(&out).into_owned();
    assert!(status.success(), "sweep failed: {out}");
    assert!(out.contains("migrated"), "sweep logged nothing: {out:?}");
    out
}

#[test]
fn no_colour_into_a_pipe() {
    let dir = TempDir::new("log-pipe");
    let out = sweep(&fresh_config(&dir), &[]).stderr(Stdio::piped()).output().expect("sweep");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("migrated"), "sweep logged nothing: {stderr:?}");
    assert!(!stderr.contains(ESCAPE), "escape codes in piped logs: {stderr:?}");
}

#[test]
fn colour_on_a_terminal_unless_no_color() {
    let dir = TempDir::new("log-tty");
    assert!(on_a_terminal(&fresh_config(&dir), &[]).contains(ESCAPE), "a terminal gets colour");
    let dir = TempDir::new("log-no-color");
    let out = on_a_terminal(&fresh_config(&dir), &[("NO_COLOR", "1")]);
    assert!(!out.contains(ESCAPE), "NO_COLOR=1, yet escape codes: {out:?}");
}
