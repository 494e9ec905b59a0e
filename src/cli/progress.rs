//! The progress bar of `heldar-edge backup`, on standard error.

use crate::backup::job::JobProgress;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A bar of bytes copied, with the files done; hidden when stderr is not a terminal.
pub fn backup_bar() -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template("[{bar:30}] {msg}, {bytes}/{total_bytes} ({bytes_per_sec}, {eta})")
        .map(|style| style.progress_chars("#>."))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}

/// Moves `bar` to where `progress` is.
pub fn show(bar: &ProgressBar, progress: &JobProgress) {
    bar.set_length(progress.bytes_total);
    bar.set_position(progress.bytes_done);
    bar.set_message(format!("{}/{} files", progress.files_done, progress.files_total));
}
