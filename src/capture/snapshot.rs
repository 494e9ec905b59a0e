//! Snapshots on demand: the latest recorded frame of a camera as a JPEG,
//! decoded by a one-shot ffmpeg from the end of the segment being written
//! (fragmented MP4 is readable while it grows), or from the newest indexed
//! one. Works whether or not a worker is online, and costs nothing between
//! requests. A scheduled snapshot (`stills.rs`) wants a fresh frame: from the
//! segment being written, else straight from the source.

use super::CameraStates;
use super::source::Source;
use crate::recording::index;
use crate::sampler::jpeg;
use crate::store::Store;
use crate::wallclock::UnixMs;
use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A one-shot decode that takes longer is abandoned.
const DECODE_TIMEOUT: Duration = Duration::from_secs(15);
/// Widest snapshot; larger sources are scaled down (aspect kept).
const MAX_WIDTH: u32 = 1920;
/// Tries before giving up: a segment just opened holds no frame until its first fragment.
const ATTEMPTS: u32 = 4;
/// Pause between tries.
const RETRY_AFTER: Duration = Duration::from_millis(700);

/// The camera has recorded nothing to take a snapshot from.
#[derive(Debug)]
pub struct NothingRecorded(String);

impl std::fmt::Display for NothingRecorded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "camera {} has recorded nothing yet", self.0)
    }
}

impl std::error::Error for NothingRecorded {}

/// One snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// Per camera, +1 with every snapshot since the service started.
    pub seq: u64,
    /// About when the frame was recorded (the segment's last write, or its end).
    pub ts: UnixMs,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// The JPEG.
    pub jpeg: Vec<u8>,
}

/// Takes snapshots; cheap to clone.
#[derive(Clone)]
pub struct Snapshots {
    /// The ffmpeg binary.
    pub ffmpeg: PathBuf,
    /// Root of the segments.
    pub recordings_dir: PathBuf,
    /// Where each camera's latest snapshot is kept (`<data_dir>/snapshots`).
    pub dir: PathBuf,
    /// Largest JPEG that may be published (the board's frame size).
    pub max_bytes: usize,
    seqs: Arc<Mutex<BTreeMap<String, u64>>>,
    temps: Arc<std::sync::atomic::AtomicU64>,
}

/// The ffmpeg arguments decoding the last frames of `source` into `out`, `width` at most.
pub fn decode_args(source: &Path, out: &Path, width: u32) -> Vec<String> {
    let input = ["-sseof".to_string(), "-3".into(), "-i".into(), source.display().to_string()];
    with_output(&input, out, width, false)
}

/// The ffmpeg arguments decoding one frame of a camera's `source` into `out`, `width` at
/// most; `None` for a V4L2 device (its recorder holds it).
pub fn grab_args(source: &Source, out: &Path, width: u32) -> Option<Vec<String>> {
    let input: Vec<String> = match source {
        Source::Rtsp(_) | Source::Http(_) => super::ffmpeg::network_input(source)?,
        Source::Lavfi(graph) => ["-f", "lavfi", "-i", graph].map(String::from).to_vec(),
        Source::V4l2(_) => return None,
    };
    Some(with_output(&input, out, width, true))
}

fn with_output(input: &[String], out: &Path, width: u32, one_frame: bool) -> Vec<String> {
    let mut args: Vec<String> = ["-nostdin", "-hide_banner", "-loglevel", "error", "-y"].map(String::from).to_vec();
    args.extend_from_slice(input);
    args.extend(["-map", "0:v:0", "-vf"].map(String::from));
    args.push(format!("scale='min({width},iw)':-2"));
    if one_frame {
        args.extend(["-frames:v", "1"].map(String::from));
    }
    // Every decoded frame overwrites the file: the last one stays.
    args.extend(["-q:v", "4", "-update", "1", "-f", "image2"].map(String::from));
    args.push(out.display().to_string());
    args
}

impl Snapshots {
    /// Snapshots decoded with `ffmpeg` and kept under `dir`.
    pub fn new(ffmpeg: PathBuf, recordings_dir: PathBuf, dir: PathBuf, max_bytes: usize) -> Self {
        Self { ffmpeg, recordings_dir, dir, max_bytes, seqs: Arc::default(), temps: Arc::default() }
    }

    /// The latest frame of `camera`: from the segment it is writing, else its newest indexed
    /// one. A recorder that has just started has written no frame yet: asked again shortly.
    pub async fn take(&self, store: &Store, states: &CameraStates, camera: &str) -> Result<Snapshot> {
        // File work through tokio::fs (a blocking thread), and the decode in ffmpeg: the
        // runtime thread never waits on either.
        tokio::fs::create_dir_all(&self.dir).await.with_context(|| format!("creating {}", self.dir.display()))?;
        let out = self.dir.join(format!("{camera}.jpg"));
        let mut last_error = None;
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(RETRY_AFTER).await;
            }
            if let Some(file) = states.writing(camera) {
                let ts = tokio::fs::metadata(&file).await.and_then(|m| m.modified()).ok().map(unix_ms);
                match self.decode(&|w| decode_args(&file, &out, w), &out, MAX_WIDTH).await {
                    Ok(frame) => return Ok(self.numbered(camera, frame, ts.unwrap_or_else(UnixMs::now))),
                    Err(e) => last_error = Some(e),
                }
            }
            let id = camera.to_string();
            if let Some(row) = store.call(move |conn| index::latest_segment(conn, &id)).await? {
                let file = self.recordings_dir.join(&row.segment.path);
                match self.decode(&|w| decode_args(&file, &out, w), &out, MAX_WIDTH).await {
                    Ok(frame) => return Ok(self.numbered(camera, frame, row.segment.end)),
                    Err(e) => last_error = Some(e),
                }
            }
        }
        match last_error {
            Some(e) => Err(e.context("no frame could be decoded")),
            None => Err(NothingRecorded(camera.to_string()).into()),
        }
    }

    /// A fresh frame of `camera`, `width` at most, for a scheduled snapshot: from the segment
    /// its recorder writes (a recorder just started gets a few tries), else straight from
    /// `source` (not a V4L2 device, which only its recorder may hold).
    pub async fn take_fresh(
        &self,
        states: &CameraStates,
        camera: &str,
        source: Option<&Source>,
        width: u32,
    ) -> Result<Snapshot> {
        tokio::fs::create_dir_all(&self.dir).await.with_context(|| format!("creating {}", self.dir.display()))?;
        let out = self.dir.join(format!(".{camera}-{width}-{}.jpg", self.next_temp()));
        let taken = self.fresh_frame(states, camera, source, width, &out).await;
        let _ = tokio::fs::remove_file(&out).await;
        taken.map(|frame| self.numbered(camera, frame, UnixMs::now()))
    }

    async fn fresh_frame(
        &self,
        states: &CameraStates,
        camera: &str,
        source: Option<&Source>,
        width: u32,
        out: &Path,
    ) -> Result<(Vec<u8>, u32, u32)> {
        let mut last_error = None;
        for attempt in 0..ATTEMPTS {
            let Some(file) = states.writing(camera) else { break };
            if attempt > 0 {
                tokio::time::sleep(RETRY_AFTER).await;
            }
            match self.decode(&|w| decode_args(&file, out, w), out, width).await {
                Ok(frame) => return Ok(frame),
                Err(e) => last_error = Some(e),
            }
        }
        if let Some(source) = source.filter(|_| states.writing(camera).is_none()) {
            if grab_args(source, out, width).is_some() {
                let grab = |w| grab_args(source, out, w).unwrap_or_default();
                return self.decode(&grab, out, width).await.context("no frame from the source");
            }
            bail!("camera {camera} does not record now, and its V4L2 device is its recorder's");
        }
        Err(last_error.unwrap_or_else(|| NothingRecorded(camera.to_string()).into()))
    }

    fn next_temp(&self) -> u64 {
        self.temps.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// Runs `args(width)` and reads the JPEG it left in `out`, halving the width until it fits
    /// the board's frame size.
    async fn decode(
        &self,
        args: &(dyn Fn(u32) -> Vec<String> + Sync),
        out: &Path,
        width: u32,
    ) -> Result<(Vec<u8>, u32, u32)> {
        let _ = tokio::fs::remove_file(out).await;
        let mut width = width;
        loop {
            let run = tokio::process::Command::new(&self.ffmpeg)
                .args(args(width))
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .kill_on_drop(true)
                .output();
            let output = tokio::time::timeout(DECODE_TIMEOUT, run)
                .await
                .context("decoding took too long")?
                .with_context(|| format!("running {}", self.ffmpeg.display()))?;
            let jpeg_bytes = tokio::fs::read(out).await.unwrap_or_default();
            let Some((w, h)) = jpeg::dimensions(&jpeg_bytes) else {
                let said = String::from_utf8_lossy(&output.stderr);
                bail!("ffmpeg decoded no frame: {}", said.lines().next().unwrap_or_default().trim());
            };
            if jpeg_bytes.len() <= self.max_bytes {
                return Ok((jpeg_bytes, w, h));
            }
            if w <= 320 {
                bail!("a {w}x{h} snapshot is {} bytes, over the board's max_frame_bytes", jpeg_bytes.len());
            }
            // Too big for one MQTT message on this board: halve it.
            width = w / 2;
        }
    }

    fn numbered(&self, camera: &str, (jpeg, width, height): (Vec<u8>, u32, u32), ts: UnixMs) -> Snapshot {
        let mut seqs = self.seqs.lock().unwrap_or_else(|p| p.into_inner());
        let seq = seqs.entry(camera.to_string()).or_insert(0);
        *seq += 1;
        Snapshot { seq: *seq, ts, width, height, jpeg }
    }
}

fn unix_ms(time: std::time::SystemTime) -> UnixMs {
    UnixMs(time.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_last_seconds_keeping_the_last_frame() {
        let args = decode_args(Path::new("/r/a.mp4"), Path::new("/d/a.jpg"), 1920);
        assert!(args.windows(2).any(|w| w == ["-sseof", "-3"]));
        assert!(args.windows(2).any(|w| w == ["-update", "1"]));
        assert!(args.contains(&"scale='min(1920,iw)':-2".to_string()));
        assert_eq!(args.last().map(String::as_str), Some("/d/a.jpg"));
    }

    #[test]
    fn grabs_one_frame_of_a_source_but_never_a_v4l2_device() {
        let lavfi = grab_args(&Source::Lavfi("testsrc2".into()), Path::new("/d/a.jpg"), 160).expect("lavfi");
        assert!(lavfi.windows(4).any(|w| w == ["-f", "lavfi", "-i", "testsrc2"]));
        assert!(lavfi.windows(2).any(|w| w == ["-frames:v", "1"]));
        assert!(lavfi.contains(&"scale='min(160,iw)':-2".to_string()));
        let rtsp = grab_args(&Source::Rtsp("rtsp://h/s".into()), Path::new("/d/a.jpg"), 640).expect("rtsp");
        assert!(rtsp.windows(2).any(|w| w == ["-rtsp_transport", "tcp"]));
        assert_eq!(grab_args(&Source::V4l2("/dev/video0".into()), Path::new("/d/a.jpg"), 640), None);
    }
}
