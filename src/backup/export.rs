//! Export: the segments of cameras in a time window as one tar archive with a
//! manifest (camera, start, end, sha256 per file), written under a temporary
//! name, with the sources read-locked while it runs. Optionally the segments at
//! the window's edges are cut to it with `ffmpeg -c copy` (no re-encoding).
//! The scheduled snapshots of the window go in too, with their own list.

use super::copy::hex;
use super::tar;
use crate::capture::stills::{StillRow, stills_between};
use crate::recording::index::{self, SegmentRow};
use crate::recording::sweeper::ReadLocks;
use crate::store::Store;
use crate::wallclock::UnixMs;
use anyhow::{Context, Result, bail};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Size limit of an archive unless told otherwise.
pub const DEFAULT_MAX_BYTES: u64 = 4 << 30;

/// What to export.
#[derive(Clone, Debug)]
pub struct ExportRequest {
    /// Cameras; empty = all.
    pub cameras: Vec<String>,
    /// Window start.
    pub from: UnixMs,
    /// Window end.
    pub to: UnixMs,
    /// The archive to write.
    pub out: PathBuf,
    /// Refuse windows larger than this.
    pub max_bytes: u64,
    /// Cut the first and last segments to the window (needs ffmpeg).
    pub cut: bool,
}

/// A written archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportResult {
    /// Where it is.
    pub path: PathBuf,
    /// Its size.
    pub bytes: u64,
    /// Its SHA-256.
    pub sha256: String,
    /// Segments in it.
    pub files: usize,
    /// Scheduled snapshots in it.
    pub snapshots: usize,
}

/// The window holds no footage of the cameras asked for.
#[derive(Debug)]
pub struct NoFootage(String);

impl std::fmt::Display for NoFootage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NoFootage {}

/// The file name of the archive of window `from..to`: `export-<from>-<to>.tar` without colons.
pub fn archive_name(from: UnixMs, to: UnixMs) -> String {
    format!("export-{}-{}.tar", from.to_rfc3339(), to.to_rfc3339()).replace(':', "")
}

/// Writes the archive of `request`: segments from `recordings_dir`, snapshots from `data_dir`.
pub async fn export(
    store: &Store,
    (recordings_dir, data_dir): (&Path, &Path),
    reads: &ReadLocks,
    request: ExportRequest,
) -> Result<ExportResult> {
    if request.to <= request.from {
        bail!("the window is empty: --to must be after --from");
    }
    let (cameras, from, to) = (request.cameras.clone(), request.from, request.to);
    let (rows, unsynced, stills): (Vec<SegmentRow>, Vec<i64>, Vec<StillRow>) = store
        .call(move |conn| {
            let rows = index::segments_overlapping(conn, &cameras, from, to)?;
            let unsynced = index::unsynced_among(conn, &rows.iter().map(|r| r.id).collect::<Vec<_>>())?;
            Ok((rows, unsynced, stills_between(conn, &cameras, from, to)?))
        })
        .await?;
    if rows.is_empty() && stills.is_empty() {
        return Err(NoFootage(format!("no footage of {} between {from} and {to}", describe(&request.cameras))).into());
    }
    let total: u64 = rows.iter().map(|r| r.segment.bytes).sum::<u64>() + stills.iter().map(|s| s.bytes).sum::<u64>();
    if total > request.max_bytes {
        bail!("the window holds {total} bytes, over the export limit of {}: narrow it", request.max_bytes);
    }
    let ffmpeg = match request.cut {
        true => Some(
            crate::sys::process::find_program("ffmpeg")
                .context("cutting to the window needs ffmpeg, which is not on PATH (apt-get install ffmpeg)")?,
        ),
        false => None,
    };
    let _reading = reads.hold(&rows.iter().map(|r| r.id).collect::<Vec<_>>());
    let dirs = (recordings_dir.to_path_buf(), data_dir.to_path_buf());
    let files = Files { rows, unsynced, stills };
    tokio::task::spawn_blocking(move || write_archive((&dirs.0, &dirs.1), &files, &request, ffmpeg.as_deref()))
        .await
        .context("export task")?
}

/// The part of a segment `[start, end)` inside the window `[from, to)`, as an offset into the
/// segment and a duration in milliseconds; `None` when the whole segment is inside.
pub fn cut_of(start: UnixMs, end: UnixMs, from: UnixMs, to: UnixMs) -> Option<(i64, i64)> {
    if start >= from && end <= to {
        return None;
    }
    let (cut_start, cut_end) = (start.0.max(from.0), end.0.min(to.0));
    Some((cut_start - start.0, (cut_end - cut_start).max(0)))
}

/// Writes the part `(offset_ms, duration_ms)` of `source` to `out` as fragmented MP4; the
/// stream is copied, so the cut starts at the key frame at or before the offset.
fn cut_segment(ffmpeg: &Path, source: &Path, (offset_ms, duration_ms): (i64, i64), out: &Path) -> Result<()> {
    let seconds = |ms: i64| format!("{}.{:03}", ms / 1000, ms % 1000);
    let output = std::process::Command::new(ffmpeg)
        .args(["-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-ss", &seconds(offset_ms), "-i"])
        .arg(source)
        .args(["-t", &seconds(duration_ms), "-map", "0:v:0", "-c", "copy"])
        .args(["-movflags", "+frag_keyframe+empty_moov+default_base_moof", "-f", "mp4"])
        .arg(out)
        .stdin(std::process::Stdio::null())
        .output()
        .with_context(|| format!("running {}", ffmpeg.display()))?;
    if !output.status.success() {
        let message = String::from_utf8_lossy(&output.stderr);
        bail!("ffmpeg could not cut {}: {}", source.display(), message.trim());
    }
    Ok(())
}

fn describe(cameras: &[String]) -> String {
    if cameras.is_empty() { "any camera".to_string() } else { cameras.join(", ") }
}

/// What an archive holds.
struct Files {
    /// Segments.
    rows: Vec<SegmentRow>,
    /// The ids of those recorded on an unsynchronised clock.
    unsynced: Vec<i64>,
    /// Scheduled snapshots.
    stills: Vec<StillRow>,
}

/// Appends `source` to the archive as `name`; its size and SHA-256.
fn append(out: &mut impl Write, name: &str, source: &Path, (buf, mtime): (&mut [u8], u64)) -> Result<(u64, String)> {
    let mut input = std::fs::File::open(source).with_context(|| format!("opening {}", source.display()))?;
    let size = input.metadata()?.len();
    tar::header(out, name, size, mtime)?;
    let mut hasher = Sha256::new();
    let mut copied = 0u64;
    loop {
        let n = input.read(buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])?;
        copied += n as u64;
    }
    if copied != size {
        bail!("{name} changed while it was exported");
    }
    tar::pad(out, size)?;
    Ok((size, hex(&hasher.finalize())))
}

/// Writes the archive of `files`.
fn write_archive(
    (recordings_dir, data_dir): (&Path, &Path),
    files: &Files,
    request: &ExportRequest,
    ffmpeg: Option<&Path>,
) -> Result<ExportResult> {
    let (rows, unsynced) = (&files.rows, &files.unsynced);
    if let Some(dir) = request.out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let partial = super::copy::partial_name(&request.out);
    let file = std::fs::File::create(&partial).with_context(|| format!("creating {}", partial.display()))?;
    let mut out = HashingWriter { inner: std::io::BufWriter::new(file), hasher: Sha256::new(), bytes: 0 };
    let mtime = (UnixMs::now().0 / 1000).max(0) as u64;
    let mut manifest = Vec::with_capacity(rows.len());
    let mut buf = vec![0u8; 256 * 1024];
    let cut_file = partial.with_extension("cut.mp4");
    for row in rows {
        let s = &row.segment;
        let mut source = recordings_dir.join(&s.path);
        let (mut start, mut end) = (s.start, s.end);
        if let Some((ffmpeg, cut)) = ffmpeg.zip(cut_of(s.start, s.end, request.from, request.to)) {
            cut_segment(ffmpeg, &source, cut, &cut_file)?;
            (start, end) = (UnixMs(s.start.0 + cut.0), UnixMs(s.start.0 + cut.0 + cut.1));
            source = cut_file.clone();
        }
        let (size, sha256) = append(&mut out, &s.path, &source, (&mut buf, mtime))?;
        manifest.push(json!({
            "path": s.path, "camera": s.camera, "start": start.to_rfc3339(), "end": end.to_rfc3339(),
            "bytes": size, "sha256": sha256, "cut": source == cut_file,
            "clock_unsynchronised": unsynced.contains(&row.id),
        }));
    }
    let _ = std::fs::remove_file(&cut_file);
    let mut snapshots = Vec::with_capacity(files.stills.len());
    for still in &files.stills {
        let (size, sha256) = append(&mut out, &still.path, &data_dir.join(&still.path), (&mut buf, mtime))?;
        snapshots.push(json!({
            "path": still.path, "camera": still.camera, "ts": still.ts.to_rfc3339(), "bytes": size,
            "sha256": sha256, "width": still.width, "height": still.height,
        }));
    }
    let manifest = serde_json::to_vec_pretty(&json!({
        "v": 1,
        "cameras": request.cameras,
        "from": request.from.to_rfc3339(),
        "to": request.to.to_rfc3339(),
        "files": manifest,
        "snapshots": snapshots,
    }))?;
    tar::header(&mut out, "manifest.json", manifest.len() as u64, mtime)?;
    out.write_all(&manifest)?;
    tar::pad(&mut out, manifest.len() as u64)?;
    tar::finish(&mut out)?;
    out.flush()?;
    let (bytes, sha256) = (out.bytes, hex(&out.hasher.finalize_reset()));
    out.inner.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    std::fs::rename(&partial, &request.out).with_context(|| format!("renaming {}", partial.display()))?;
    if let Some(dir) = request.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir).and_then(|d| d.sync_all()).with_context(|| format!("syncing {}", dir.display()))?;
    }
    Ok(ExportResult { path: request.out.clone(), bytes, sha256, files: rows.len(), snapshots: snapshots.len() })
}

/// Counts and hashes what goes through.
struct HashingWriter<W: Write> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(data)?;
        self.hasher.update(&data[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_segments_crossing_the_window_edges_are_cut() {
        let (from, to) = (UnixMs(10_000), UnixMs(30_000));
        assert_eq!(cut_of(UnixMs(10_000), UnixMs(20_000), from, to), None, "inside, touching the start");
        assert_eq!(cut_of(UnixMs(20_000), UnixMs(30_000), from, to), None, "inside, touching the end");
        assert_eq!(cut_of(UnixMs(5_000), UnixMs(15_000), from, to), Some((5_000, 5_000)), "across the start");
        assert_eq!(cut_of(UnixMs(25_000), UnixMs(35_000), from, to), Some((0, 5_000)), "across the end");
        assert_eq!(cut_of(UnixMs(0), UnixMs(40_000), from, to), Some((10_000, 20_000)), "around the window");
    }
}
