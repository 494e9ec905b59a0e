//! Logs to stderr with `tracing`: lines without timestamps under journald (it
//! stamps them itself), with them elsewhere. Colour only on a terminal and
//! without `NO_COLOR`: a file or a pipe gets no escape codes, and neither does
//! a serial console with `NO_COLOR=1`.

use std::ffi::OsStr;
use std::io::IsTerminal;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::prelude::*;

/// Environment variable holding the log filter, e.g. `info` or `heldar_edge=debug,info`.
pub const LOG_ENV: &str = "HELDAR_LOG";

/// Environment variable that turns colour off when set to anything but the empty string
/// (<https://no-color.org>).
pub const NO_COLOR_ENV: &str = "NO_COLOR";

/// Whether log lines carry ANSI colour: only on a terminal, and not when `NO_COLOR` is set
/// to a non-empty value.
pub fn use_colour(no_color: Option<&OsStr>, stderr_is_terminal: bool) -> bool {
    stderr_is_terminal && no_color.is_none_or(OsStr::is_empty)
}

/// Installs the global subscriber; the filter comes from `HELDAR_LOG` (default `info`).
pub fn init() {
    let spec = std::env::var(LOG_ENV).unwrap_or_else(|_| "info".into());
    let filter: Targets = spec.parse().unwrap_or_else(|e| {
        eprintln!("{LOG_ENV}={spec:?} is not a log filter ({e}); using info");
        Targets::new().with_default(tracing::Level::INFO)
    });
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let colour = use_colour(std::env::var_os(NO_COLOR_ENV).as_deref(), std::io::stderr().is_terminal());
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(colour).with_target(false);
    let registry = tracing_subscriber::registry().with(filter);
    if journald {
        registry.with(layer.without_time()).init();
    } else {
        registry.with(layer).init();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(use_colour(None, true));
        assert!(!use_colour(None, false), "a file or a pipe gets no escape codes");
        assert!(!use_colour(Some(OsStr::new("1")), true), "NO_COLOR=1 on a terminal");
        assert!(!use_colour(Some(OsStr::new("0")), true), "any non-empty value counts, even 0");
        assert!(!use_colour(Some(OsStr::new("1")), false));
        assert!(use_colour(Some(OsStr::new("")), true), "NO_COLOR= (empty) is as if unset");
    }
}
