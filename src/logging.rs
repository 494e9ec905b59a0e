//! Logs to stderr with `tracing`: plain lines without timestamps under
//! journald (it stamps them itself), timestamps and colour on a terminal.

use std::io::IsTerminal;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::prelude::*;

/// Environment variable holding the log filter, e.g. `info` or `heldar_edge=debug,info`.
pub const LOG_ENV: &str = "HELDAR_LOG";

/// Installs the global subscriber; the filter comes from `HELDAR_LOG` (default `info`).
pub fn init() {
    let spec = std::env::var(LOG_ENV).unwrap_or_else(|_| "info".into());
    let filter: Targets = spec.parse().unwrap_or_else(|e| {
        eprintln!("{LOG_ENV}={spec:?} is not a log filter ({e}); using info");
        Targets::new().with_default(tracing::Level::INFO)
    });
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let terminal = std::io::stderr().is_terminal();
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(terminal).with_target(false);
    let registry = tracing_subscriber::registry().with(filter);
    if journald {
        registry.with(layer.without_time()).init();
    } else {
        registry.with(layer).init();
    }
}
