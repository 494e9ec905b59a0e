//! The segment files the native recorder writes: named like ffmpeg's
//! (`<camera>/<day>/<HHMMSS>-<run>.mp4`, UTC), the init part first, each
//! fragment written out at once so a cut file plays to its last second.

use crate::recording::layout;
use crate::wallclock::UnixMs;
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;

/// The segment file being written.
pub struct SegmentFile {
    /// Its full path.
    pub path: PathBuf,
    file: tokio::fs::File,
}

/// Creates the segment of `camera` opened at `now` for the run `run`, and writes `init`.
/// A name already on disk (two segments opened within a second, at a resolution change)
/// takes a token of this millisecond instead of the run's.
pub async fn create(
    recordings_dir: &Path,
    camera: &str,
    run: &str,
    now: UnixMs,
    init: &[u8],
) -> std::io::Result<SegmentFile> {
    let (_, _, _, hour, minute, second, _) = now.civil();
    let dir = recordings_dir.join(layout::day_dir(camera, now));
    tokio::fs::create_dir_all(&dir).await?;
    let mut path = dir.join(format!("{hour:02}{minute:02}{second:02}-{run}.mp4"));
    if tokio::fs::try_exists(&path).await? {
        path = dir.join(format!("{hour:02}{minute:02}{second:02}-{}.mp4", layout::run_token(now)));
    }
    let mut file = tokio::fs::OpenOptions::new().write(true).create_new(true).open(&path).await?;
    file.write_all(init).await?;
    file.flush().await?;
    Ok(SegmentFile { path, file })
}

impl SegmentFile {
    /// Appends a fragment and hands it to the kernel.
    pub async fn append(&mut self, fragment: &[u8]) -> std::io::Result<()> {
        self.file.write_all(fragment).await?;
        self.file.flush().await
    }

    /// The file's name, as the segment list gives it.
    pub fn name(&self) -> String {
        self.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    }
}
