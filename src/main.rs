//! The `heldar-edge` command.

use heldar_edge::cli::{self, Command};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = match cli::parse(&args) {
        Ok(command) => command,
        Err(message) => {
            eprintln!("heldar-edge: {message}\n\n{}", cli::USAGE);
            return ExitCode::from(2);
        }
    };
    if !matches!(command, Command::Run { .. }) {
        // `heldar-edge check | head -1`: a closed stdout ends a one-shot command quietly,
        // as for any Unix tool. The service keeps ignoring SIGPIPE (its ffmpeg pipes).
        // SAFETY: restoring the default disposition of one signal before any thread starts.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    cli::execute(command)
}
