//! Turning a segment the recorder closed into an index row: where the file
//! is, its wall-clock times, its size.

use super::ffmpeg::ListedSegment;
use crate::recording::index::{self, ClockStamp, NewSegment};
use crate::recording::layout;
use crate::store::Store;
use crate::sys::clock::{max_slew_ms, slew};
use crate::wallclock::UnixMs;
use rusqlite::OptionalExtension;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};

/// Files the recorder said it opened, remembered to find a listed file's directory.
const OPENED_MEMORY: usize = 16;

/// The codec and size of the recorder's video stream.
pub type VideoFormat = (String, u32, u32);

/// Indexes the segments of one recorder run.
pub struct SegmentIndexer {
    camera: String,
    recordings_dir: PathBuf,
    store: Store,
    /// Which recorder writes the run (`native`, `ffmpeg`), noted in each row.
    recorder: &'static str,
    /// Wall time (ms) of the run's stream time 0: set at its first segment, then moved
    /// toward the wall clock at each segment by at most `MAX_SLEW_PPM` of its duration.
    anchor_ms: Option<i64>,
    /// End of the last segment this run indexed.
    last_end: Option<UnixMs>,
    opened: VecDeque<String>,
    /// Paths this run indexed lately: ffmpeg names segments by the second they open in, so
    /// a segment shorter than a second (the first of an RTSP run, say) is overwritten by
    /// the next one under the same name, which this run then indexes again.
    indexed: VecDeque<String>,
}

impl SegmentIndexer {
    /// An indexer for a new run of `camera`'s recorder, `recorder` (`native`, `ffmpeg`).
    pub fn new(camera: &str, recordings_dir: &Path, store: Store, recorder: &'static str) -> Self {
        Self {
            camera: camera.to_string(),
            recordings_dir: recordings_dir.to_path_buf(),
            store,
            recorder,
            anchor_ms: None,
            last_end: None,
            opened: VecDeque::new(),
            indexed: VecDeque::new(),
        }
    }

    /// Remembers that the recorder opened `path`.
    pub fn opened(&mut self, path: String) {
        self.opened.push_back(path);
        if self.opened.len() > OPENED_MEMORY {
            self.opened.pop_front();
        }
    }

    /// Syncs a closed segment and its directory, then indexes it; returns its row (also when
    /// the index refused it), or `None` when its file is not on disk or could not be synced.
    pub async fn index(&mut self, listed: ListedSegment, video: Option<&VideoFormat>) -> Option<NewSegment> {
        let (start, end) = self.times(&listed, UnixMs::now());
        let Some(relative) = self.resolve(&listed.file, start) else {
            tracing::error!(camera = %self.camera, file = %listed.file, "closed segment not found on disk");
            return None;
        };
        // Write ordering: the file and its directory reach the disk before the index names
        // them, so a power cut can never leave a row pointing at data the disk took back.
        let full = self.recordings_dir.join(&relative);
        let bytes = match tokio::task::spawn_blocking(move || sync_file_and_dir(&full)).await {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(e)) => {
                tracing::error!(camera = %self.camera, path = %relative, error = %e, "segment not synced: not indexed");
                return None;
            }
            Err(e) => {
                tracing::error!(camera = %self.camera, error = %e, "segment sync task lost");
                return None;
            }
        };
        let (codec, width, height) = match video {
            Some((codec, w, h)) => (Some(codec.clone()), Some(*w), Some(*h)),
            None => (None, None, None),
        };
        let segment =
            NewSegment { camera: self.camera.clone(), path: relative, start, end, bytes, codec, width, height };
        let overwritten = self.indexed.contains(&segment.path);
        if overwritten {
            // The disk holds the later segment now: the row follows it (never a row of another run).
            tracing::warn!(camera = %self.camera, path = %segment.path, "ffmpeg reused a name within one second: the earlier, sub-second segment was overwritten");
        } else {
            self.indexed.push_back(segment.path.clone());
            if self.indexed.len() > OPENED_MEMORY {
                self.indexed.pop_front();
            }
        }
        let stored = self.store.call({
            let (segment, stamp, recorder) = (segment.clone(), ClockStamp::now(), self.recorder);
            move |conn| {
                if overwritten {
                    index::replace_segment(conn, &segment)?;
                } else if index::insert_segment(conn, &segment).optional()?.is_none() {
                    // Refused (a row of another run has this path): its stamp stays too.
                    return Err(rusqlite::Error::QueryReturnedNoRows);
                }
                index::stamp_close(conn, &segment.path, &stamp, recorder)
            }
        });
        let (camera, path, duration_ms) = (&self.camera, &segment.path, end.0 - start.0);
        match stored.await {
            Ok(_) => tracing::debug!(camera = %camera, path = %path, bytes, duration_ms, "segment indexed"),
            Err(e) => tracing::error!(camera = %camera, path = %path, error = %e, "segment not indexed"),
        }
        Some(segment)
    }

    /// The wall-clock times of a listed segment closed at `now`: the stream clock mapped
    /// through the run's anchor, which follows the wall clock with bounded slew, so a
    /// camera's drift is corrected and the segments of a run stay contiguous.
    fn times(&mut self, listed: &ListedSegment, now: UnixMs) -> (UnixMs, UnixMs) {
        let (start_ms, end_ms) = ((listed.start_s * 1000.0).round() as i64, (listed.end_s * 1000.0).round() as i64);
        let target = now.0 - end_ms;
        let anchor = match self.anchor_ms {
            Some(anchor) => slew(anchor, target, end_ms - start_ms),
            None => target,
        };
        self.anchor_ms = Some(anchor);
        let (mut start, end) = (UnixMs(anchor + start_ms), UnixMs(anchor + end_ms));
        if let Some(last) = self.last_end
            && (start.0 - last.0).abs() <= max_slew_ms(end_ms - start_ms)
        {
            start = last;
        }
        self.last_end = Some(end);
        (start, end.max(start))
    }

    /// The relative path of a listed file: from the files opened, else by its date.
    fn resolve(&mut self, file: &str, start: UnixMs) -> Option<String> {
        while let Some(opened) = self.opened.pop_front() {
            if Path::new(&opened).file_name().is_some_and(|name| name == file) {
                let relative = Path::new(&opened).strip_prefix(&self.recordings_dir).ok()?;
                return Some(relative.to_string_lossy().into_owned());
            }
        }
        [start, UnixMs(start.0 - 86_400_000), UnixMs(start.0 + 86_400_000)]
            .into_iter()
            .map(|day| format!("{}/{file}", layout::day_dir(&self.camera, day)))
            .find(|relative| self.recordings_dir.join(relative).is_file())
    }
}

/// Syncs the file at `path` and then its directory; returns the file's size.
pub fn sync_file_and_dir(path: &Path) -> std::io::Result<u64> {
    let file = std::fs::File::open(path)?;
    file.sync_all()?;
    let bytes = file.metadata()?.len();
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(bytes)
}

/// Makes today's and tomorrow's segment directories of `camera`, which ffmpeg cannot make.
pub fn ensure_day_dirs(recordings_dir: &Path, camera: &str) {
    let now = UnixMs::now();
    for day in [now, UnixMs(now.0 + 86_400_000)] {
        let dir = recordings_dir.join(layout::day_dir(camera, day));
        if let Err(e) = std::fs::create_dir_all(&dir) {
            tracing::error!(camera = %camera, dir = %dir.display(), error = %e, "cannot create segment directory");
        }
    }
}
