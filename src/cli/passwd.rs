//! `heldar-edge passwd`: an argon2id hash for `[[http.user]] password_hash`, from a
//! password typed without echo, or read from standard input when it is no terminal.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

/// Shortest password accepted.
const MIN_PASSWORD_CHARS: usize = 8;

/// Reads a password and prints its hash.
pub fn passwd() -> ExitCode {
    let password = match read_password() {
        Ok(password) => password,
        Err(why) => {
            eprintln!("passwd: {why}");
            return ExitCode::FAILURE;
        }
    };
    match crate::viewing::secrets::hash_password(&password) {
        Ok(hash) => {
            println!("{hash}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("passwd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn read_password() -> Result<String, String> {
    let stdin = std::io::stdin();
    let password = if stdin.is_terminal() {
        let first = prompt("password: ")?;
        if prompt("again: ")? != first {
            return Err("the two passwords differ".into());
        }
        first
    } else {
        let mut line = String::new();
        stdin.lock().read_line(&mut line).map_err(|e| format!("reading standard input: {e}"))?;
        line.trim_end_matches(['\r', '\n']).to_string()
    };
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(format!("a password has at least {MIN_PASSWORD_CHARS} characters"));
    }
    Ok(password)
}

/// Asks on standard error and reads a line from the terminal with echo off.
fn prompt(question: &str) -> Result<String, String> {
    eprint!("{question}");
    let _ = std::io::stderr().flush();
    let echo = EchoOff::new();
    let mut line = String::new();
    let read = std::io::stdin().lock().read_line(&mut line);
    drop(echo);
    eprintln!();
    read.map_err(|e| format!("reading the terminal: {e}"))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// Terminal echo off until dropped.
struct EchoOff(Option<libc::termios>);

impl EchoOff {
    fn new() -> Self {
        // SAFETY: tcgetattr/tcsetattr on fd 0 with a termios we own; failure leaves echo on.
        unsafe {
            let mut saved: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut saved) != 0 {
                return Self(None);
            }
            let mut quiet = saved;
            quiet.c_lflag &= !libc::ECHO;
            libc::tcsetattr(0, libc::TCSANOW, &quiet);
            Self(Some(saved))
        }
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        if let Some(saved) = &self.0 {
            // SAFETY: restores the settings read in `new`.
            unsafe { libc::tcsetattr(0, libc::TCSANOW, saved) };
        }
    }
}
