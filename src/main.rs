//! The `heldar-edge` command.

use heldar_edge::cli::{self, Command};
use heldar_edge::config::{self, LoadedConfig};
use heldar_edge::{logging, service};
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
    match command {
        Command::Help => {
            print!("{}", cli::USAGE);
            ExitCode::SUCCESS
        }
        Command::Version => {
            println!("heldar-edge {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Check { config } => match config::load(&config) {
            Ok(loaded) => {
                println!("{}", summary(&loaded));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
        Command::Sweep { config } => {
            logging::init();
            let Some(loaded) = load_or_report(&config) else { return ExitCode::FAILURE };
            match runtime().and_then(|rt| rt.block_on(service::sweep_once(loaded))) {
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
        Command::Backup { config, policy } => {
            logging::init();
            let Some(loaded) = load_or_report(&config) else { return ExitCode::FAILURE };
            match runtime().and_then(|rt| rt.block_on(service::backup_once(loaded, &policy))) {
                Ok(done) if done.error.is_none() => {
                    eprintln!("\nbackup {}: {} files, {} bytes copied", done.policy, done.files_done, done.bytes_done);
                    ExitCode::SUCCESS
                }
                Ok(done) => {
                    eprintln!("\nbackup {} failed: {}", done.policy, done.error.unwrap_or_default());
                    ExitCode::FAILURE
                }
                Err(e) => {
                    eprintln!("heldar-edge backup: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Export { config, cameras, from, to, out, max_bytes, cut } => {
            logging::init();
            let Some(loaded) = load_or_report(&config) else { return ExitCode::FAILURE };
            let out = out.unwrap_or_else(|| {
                loaded.data_dir.join("exports").join(heldar_edge::backup::export::archive_name(from, to))
            });
            let request = heldar_edge::backup::export::ExportRequest { cameras, from, to, out, max_bytes, cut };
            match runtime().and_then(|rt| rt.block_on(service::export_once(loaded, request))) {
                Ok(done) => {
                    println!(
                        "{}: {} segments, {} bytes, sha256 {}",
                        done.path.display(),
                        done.files,
                        done.bytes,
                        done.sha256
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("heldar-edge export: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Call { config, name, words, json, key, secret_file, timeout_s } => {
            let Some(loaded) = load_or_report(&config) else { return ExitCode::FAILURE };
            match call(&loaded, name, (&words, json.as_deref()), key.zip(secret_file), timeout_s) {
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
        Command::Run { config, emit_test_events, stall_store_after_s } => {
            logging::init();
            let loaded = match config::load(&config) {
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
            match runtime.block_on(service::run(
                loaded,
                service::RunOptions {
                    emit_test_events,
                    stall_store_after: stall_store_after_s.map(std::time::Duration::from_secs),
                },
            )) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = format!("{e:#}"), "heldar-edge failed");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// `heldar-edge call`: builds the request, sends it and waits for the reply.
fn call(
    config: &LoadedConfig,
    name: String,
    (words, json): (&[String], Option<&str>),
    key: Option<(String, std::path::PathBuf)>,
    timeout_s: u64,
) -> anyhow::Result<serde_json::Value> {
    use anyhow::Context;
    let args = heldar_edge::commands::client::args_from_words(words, json).map_err(anyhow::Error::msg)?;
    let key = match key {
        Some((id, file)) => {
            let secret = heldar_edge::config::secret::read_secret(&file).context("--secret-file")?;
            Some((id, secret))
        }
        None => None,
    };
    let call =
        heldar_edge::commands::client::Call { name, args, key, timeout: std::time::Duration::from_secs(timeout_s) };
    let _ = rustls::crypto::ring::default_provider().install_default();
    runtime()?.block_on(heldar_edge::commands::client::call(config, &call))
}

/// Loads the config, or prints every problem in it.
fn load_or_report(path: &std::path::Path) -> Option<LoadedConfig> {
    config::load(path).map_err(|e| eprintln!("{e}")).ok()
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}

fn summary(loaded: &LoadedConfig) -> String {
    let c = &loaded.config;
    let mut lines = vec![
        format!("{}: valid", loaded.path.display()),
        format!("  node      {} (board {}: {})", loaded.node_id, c.node.board, loaded.board.description),
        format!("  broker    {} as {}, topics under {}/", c.mqtt.url, loaded.client_id(), loaded.topic_root()),
        format!("  data      {}", loaded.data_dir.display()),
        format!("  footage   {}", loaded.recordings_dir.display()),
        format!("  cameras   {} of at most {}", c.cameras.len(), loaded.board.limits.max_cameras),
    ];
    for camera in &c.cameras {
        let kind = camera.source.split(':').next().unwrap_or("?");
        lines.push(format!(
            "    {:<16} {kind}, record {}, {} s segments, {} zones, sample {} fps",
            camera.id,
            camera.record.name(),
            camera.segment_s,
            camera.zones.len(),
            camera.sample_fps
        ));
    }
    lines.push(format!(
        "  backup    {} destinations, {} policies",
        c.backup.destinations.len(),
        c.backup.policies.len()
    ));
    lines.push(format!("  commands  auth {}, {} keys", c.commands.auth.name(), c.commands.keys.len()));
    lines.join("\n")
}
