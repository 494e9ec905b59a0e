//! The `heldar-edge` command: its arguments, and what each command does and
//! prints.

pub mod args;
pub mod oneshot;
mod passwd;
mod progress;
mod summary;

pub use args::{Command, USAGE, parse};

use crate::backup::export::ExportRequest;
use crate::commands::client::{self, Call};
use crate::config::{self, LoadedConfig};
use crate::{logging, service};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// Runs `command` to its end; the process's exit code.
pub fn execute(command: Command) -> ExitCode {
    match command {
        Command::Help => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        Command::Passwd => passwd::passwd(),
        Command::Version => {
            println!("heldar-edge {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Check { config } => check(&config),
        Command::Sweep { config } => sweep(&config),
        Command::Backup { config, policy } => backup(&config, &policy),
        Command::Export { config, cameras, from, to, out, max_bytes, cut } => export(&config, |loaded| {
            let out = out
                .unwrap_or_else(|| loaded.data_dir.join("exports").join(crate::backup::export::archive_name(from, to)));
            ExportRequest { cameras, from, to, out, max_bytes, cut }
        }),
        Command::Call { config, name, words, json, key, secret_file, timeout_s } => {
            let key = key.zip(secret_file);
            call(&config, name, (&words, json.as_deref()), key, Duration::from_secs(timeout_s))
        }
        Command::Run { config, emit_test_events, stall_store_after_s } => {
            let stall_store_after = stall_store_after_s.map(Duration::from_secs);
            run(&config, service::RunOptions { emit_test_events, stall_store_after })
        }
    }
}

/// `heldar-edge check`: the config's summary, or every problem in it.
fn check(path: &Path) -> ExitCode {
    match config::load(path) {
        Ok(loaded) => {
            println!("{}", summary::summary(&loaded, crate::wallclock::UnixMs::now()));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// `heldar-edge sweep`: one retention pass; prints what it deleted.
fn sweep(path: &Path) -> ExitCode {
    logging::init();
    let Some(loaded) = load_or_report(path) else { return ExitCode::FAILURE };
    match runtime().and_then(|rt| rt.block_on(oneshot::sweep_once(loaded))) {
        Ok(report) => {
            println!(
                "deleted {} aged and {} segments for space, {} bytes freed{}",
                report.aged,
                report.for_space,
                report.freed,
                if report.short { "; storage still short: only locked or in-use footage is left" } else { "" }
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("heldar-edge sweep: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `heldar-edge backup POLICY`: one job now, with a progress bar on stderr.
fn backup(path: &Path, policy: &str) -> ExitCode {
    logging::init();
    let Some(loaded) = load_or_report(path) else { return ExitCode::FAILURE };
    let bar = progress::backup_bar();
    let report = |p: &crate::backup::job::JobProgress| progress::show(&bar, p);
    let done = runtime().and_then(|rt| rt.block_on(oneshot::backup_once(loaded, policy, &report)));
    bar.finish_and_clear();
    match done {
        Ok(done) if done.error.is_none() => {
            eprintln!("backup {}: {} files, {} bytes copied", done.policy, done.files_done, done.bytes_done);
            ExitCode::SUCCESS
        }
        Ok(done) => {
            eprintln!("backup {} failed: {}", done.policy, done.error.unwrap_or_default());
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("heldar-edge backup: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `heldar-edge export`: one archive of a window; prints its path, size and hash.
fn export(path: &Path, request: impl FnOnce(&LoadedConfig) -> ExportRequest) -> ExitCode {
    logging::init();
    let Some(loaded) = load_or_report(path) else { return ExitCode::FAILURE };
    let request = request(&loaded);
    match runtime().and_then(|rt| rt.block_on(oneshot::export_once(loaded, request))) {
        Ok(done) => {
            let (path, files, snapshots) = (done.path.display(), done.files, done.snapshots);
            println!("{path}: {files} segments, {snapshots} snapshots, {} bytes, sha256 {}", done.bytes, done.sha256);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("heldar-edge export: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `heldar-edge call`: sends one command and prints its reply; success when it is ok.
fn call(
    path: &Path,
    name: String,
    (words, json): (&[String], Option<&str>),
    key: Option<(String, PathBuf)>,
    timeout: Duration,
) -> ExitCode {
    let Some(loaded) = load_or_report(path) else { return ExitCode::FAILURE };
    match send_call(&loaded, name, (words, json), key, timeout) {
        Ok(reply) => {
            println!("{}", serde_json::to_string_pretty(&reply).unwrap_or_default());
            if reply["ok"] == true { ExitCode::SUCCESS } else { ExitCode::FAILURE }
        }
        Err(e) => {
            eprintln!("heldar-edge call: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Builds, signs and sends one command; its reply.
fn send_call(
    loaded: &LoadedConfig,
    name: String,
    (words, json): (&[String], Option<&str>),
    key: Option<(String, PathBuf)>,
    timeout: Duration,
) -> anyhow::Result<serde_json::Value> {
    use anyhow::Context;
    let args = client::args_from_words(words, json).map_err(anyhow::Error::msg)?;
    let key = match key {
        Some((id, file)) => Some((id, config::secret::read_secret(&file).context("--secret-file")?)),
        None => None,
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    runtime()?.block_on(client::call(loaded, &Call { name, args, key, timeout }))
}

/// `heldar-edge run`: the service, until SIGINT or SIGTERM.
fn run(path: &Path, options: service::RunOptions) -> ExitCode {
    logging::init();
    let loaded = match config::load(path) {
        Ok(loaded) => loaded,
        Err(e) => {
            for line in e.to_string().lines() {
                tracing::error!("{line}");
            }
            return ExitCode::FAILURE;
        }
    };
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(service::run(loaded, options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "heldar-edge failed");
            ExitCode::FAILURE
        }
    }
}

/// Loads the config, or prints every problem in it.
fn load_or_report(path: &Path) -> Option<LoadedConfig> {
    config::load(path).map_err(|e| eprintln!("{e}")).ok()
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}
