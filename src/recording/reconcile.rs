//! Start-up reconciliation of the disk and the index: files without rows are
//! probed and indexed (a segment cut by a crash included, its half-written
//! last fragment trimmed off), removed when they hold no frame, or
//! quarantined when they do not play; rows without files are dropped, rows of
//! files shorter than the row probed again; deletions a crash left in the
//! `garbage` table are finished first. Runs before any
//! recorder starts, one day directory at a time so memory stays small.

use super::fragments;
use super::garbage;
use super::index::{self, NewSegment};
use super::layout;
use crate::store::Store;
use crate::wallclock::UnixMs;
use anyhow::{Context, Result};
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Where unplayable files go, under the recordings directory.
pub const QUARANTINE_DIR: &str = ".quarantine";

/// What reconciliation did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Files found without a row, probed and indexed.
    pub indexed: usize,
    /// Files found without a row that do not play, moved to quarantine.
    pub quarantined: usize,
    /// Files found without a row that hold no frame at all (a header written just before a
    /// failure), removed.
    pub removed: usize,
    /// Files whose half-written last fragment (a power cut) was trimmed off.
    pub trimmed: usize,
    /// Rows whose file is gone, dropped.
    pub rows_dropped: usize,
    /// Files shorter than their row (data a power cut took back): probed and indexed again.
    pub shrunk: usize,
    /// Deletions a crash left half-done, finished.
    pub garbage: usize,
}

/// What ffprobe says of a segment.
#[derive(Clone, Debug, PartialEq)]
pub struct Probe {
    /// Playable duration in seconds.
    pub duration_s: f64,
    /// Video codec.
    pub codec: Option<String>,
    /// Width in pixels.
    pub width: Option<u32>,
    /// Height in pixels.
    pub height: Option<u32>,
}

/// Reads `ffprobe -show_entries format=duration:stream=codec_name,width,height -of json`;
/// `None` when there is no playable video.
pub fn parse_probe(json: &str) -> Option<Probe> {
    let value: Value = serde_json::from_str(json).ok()?;
    let duration_s: f64 = value["format"]["duration"].as_str()?.parse().ok()?;
    let stream = value["streams"].as_array()?.first()?;
    let dimension = |key: &str| stream[key].as_u64().and_then(|v| u32::try_from(v).ok());
    (duration_s.is_finite() && duration_s > 0.0).then(|| Probe {
        duration_s,
        codec: stream["codec_name"].as_str().map(str::to_string),
        width: dimension("width"),
        height: dimension("height"),
    })
}

/// Probes a file with ffprobe.
pub async fn probe(ffprobe: &Path, file: &Path) -> Option<Probe> {
    let output = tokio::process::Command::new(ffprobe)
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries"])
        .arg("format=duration:stream=codec_name,width,height")
        .args(["-of", "json"])
        .arg(file)
        .kill_on_drop(true)
        .output()
        .await
        .ok()?;
    parse_probe(&String::from_utf8_lossy(&output.stdout))
}

/// Upper bound of the paths under `prefix` (`cam/day/` → `cam/day0`, as `'0'` follows `'/'`).
fn prefix_end(prefix: &str) -> String {
    format!("{}0", prefix.trim_end_matches('/'))
}

/// Rows under `prefix`: id, path, bytes, start.
fn rows_under(conn: &Connection, prefix: &str) -> rusqlite::Result<Vec<(i64, String, u64, UnixMs)>> {
    let mut stmt =
        conn.prepare_cached("SELECT id, path, bytes, start_ms FROM segments WHERE path >= ?1 AND path < ?2")?;
    let rows = stmt.query_map(params![prefix, prefix_end(prefix)], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)?.max(0) as u64, UnixMs(r.get(3)?)))
    })?;
    rows.collect()
}

fn sorted_dir_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

/// Reconciles `recordings_dir` with the index, after finishing the deletions a crash left.
pub async fn reconcile(store: &Store, recordings_dir: &Path, ffprobe: &Path) -> Result<ReconcileReport> {
    let mut report = ReconcileReport { garbage: garbage::collect(store, recordings_dir).await?, ..Default::default() };
    let today = layout::day_dir("", UnixMs::now());
    for camera in sorted_dir_names(recordings_dir) {
        let camera_dir = recordings_dir.join(&camera);
        if camera.starts_with('.') || !camera_dir.is_dir() {
            continue;
        }
        for day in sorted_dir_names(&camera_dir) {
            let day_dir = camera_dir.join(&day);
            if !day_dir.is_dir() {
                continue;
            }
            let empty = reconcile_day(store, recordings_dir, &format!("{camera}/{day}/"), ffprobe, &mut report).await?;
            if empty && format!("/{day}") < today {
                let _ = std::fs::remove_dir(&day_dir);
            }
        }
    }
    report.rows_dropped += drop_rows_of_missing_dirs(store, recordings_dir).await?;
    if report != ReconcileReport::default() {
        tracing::warn!(
            indexed = report.indexed,
            quarantined = report.quarantined,
            removed = report.removed,
            trimmed = report.trimmed,
            shrunk = report.shrunk,
            rows_dropped = report.rows_dropped,
            garbage = report.garbage,
            "index and disk reconciled"
        );
    }
    Ok(report)
}

/// Reconciles one day directory (`prefix` is `camera/day/`); true when it holds no segment.
async fn reconcile_day(
    store: &Store,
    recordings_dir: &Path,
    prefix: &str,
    ffprobe: &Path,
    report: &mut ReconcileReport,
) -> Result<bool> {
    let files = {
        let (dir, prefix) = (recordings_dir.join(prefix), prefix.to_string());
        tokio::task::spawn_blocking(move || segment_sizes(&dir, &prefix)).await?
    };
    let rows = store.call({
        let prefix = prefix.to_string();
        move |conn| rows_under(conn, &prefix)
    });
    let rows: HashMap<String, (i64, u64, UnixMs)> =
        rows.await?.into_iter().map(|(id, path, bytes, start)| (path, (id, bytes, start))).collect();
    let orphans: Vec<i64> = rows.iter().filter(|(path, _)| !files.contains_key(*path)).map(|(_, r)| r.0).collect();
    report.rows_dropped += drop_rows(store, orphans).await?;
    // A file shorter than its row lost data the row counted (a power cut before the data
    // reached the disk): its row goes and the file is looked at again like an unindexed one.
    let shrunk: Vec<(i64, String, UnixMs)> = rows
        .iter()
        .filter(|(path, (_, bytes, _))| files.get(*path).is_some_and(|size| size < bytes))
        .map(|(path, (id, _, start))| (*id, path.clone(), *start))
        .collect();
    report.shrunk += shrunk.len();
    report.rows_dropped += drop_rows(store, shrunk.iter().map(|s| s.0).collect()).await?;
    let mut unindexed: Vec<(String, Option<UnixMs>)> =
        files.keys().filter(|f| !rows.contains_key(*f)).map(|f| (f.clone(), None)).collect();
    unindexed.extend(shrunk.into_iter().map(|(_, path, start)| (path, Some(start))));
    unindexed.sort();
    for (relative, start) in unindexed {
        let path = relative.clone();
        if store.call(move |conn| garbage::is_garbage(conn, &path)).await? {
            continue;
        }
        match index_file(store, recordings_dir, &relative, start, ffprobe, report).await? {
            Found::Indexed => report.indexed += 1,
            Found::Empty => {
                remove_empty(recordings_dir, &relative);
                report.removed += 1;
            }
            Found::Unplayable => {
                quarantine(recordings_dir, &relative)?;
                report.quarantined += 1;
            }
        }
    }
    Ok(files.is_empty())
}

/// The `.mp4` files of a day directory (relative paths under `prefix`) with their sizes.
fn segment_sizes(dir: &Path, prefix: &str) -> HashMap<String, u64> {
    let Ok(entries) = std::fs::read_dir(dir) else { return HashMap::new() };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let size = e.metadata().ok().filter(|m| m.is_file())?.len();
            name.ends_with(".mp4").then(|| (format!("{prefix}{name}"), size))
        })
        .collect()
}

async fn drop_rows(store: &Store, ids: Vec<i64>) -> Result<usize> {
    if ids.is_empty() {
        return Ok(0);
    }
    let dropped = store.call(move |conn| index::delete_segments(conn, &ids)).await?;
    Ok(dropped)
}

/// What an unindexed file turned out to be.
enum Found {
    /// Whole fragments that play: indexed.
    Indexed,
    /// No fragment at all.
    Empty,
    /// Not a segment, or it does not play.
    Unplayable,
}

/// Probes and indexes one file; `start` is its former row's start when it had one.
async fn index_file(
    store: &Store,
    recordings_dir: &Path,
    relative: &str,
    start: Option<UnixMs>,
    ffprobe: &Path,
    report: &mut ReconcileReport,
) -> Result<Found> {
    let Some(name) = layout::parse_segment_path(relative) else { return Ok(Found::Unplayable) };
    let full = recordings_dir.join(relative);
    let scanned = {
        let full = full.clone();
        tokio::task::spawn_blocking(move || fragments::trim_partial_fragment(&full)).await?
    };
    match scanned {
        Ok((found, _)) if found.fragments == 0 => return Ok(Found::Empty),
        Ok((_, 0)) => {}
        Ok((_, cut)) => {
            tracing::warn!(path = relative, bytes = cut, "half-written last fragment trimmed");
            report.trimmed += 1;
        }
        Err(e) => tracing::warn!(path = relative, error = %e, "segment not scanned"),
    }
    let Some(probe) = probe(ffprobe, &full).await else { return Ok(Found::Unplayable) };
    let bytes = std::fs::metadata(&full).map(|m| m.len()).unwrap_or(0);
    let start = start.unwrap_or(name.opened);
    let segment = NewSegment {
        camera: name.camera,
        path: relative.to_string(),
        start,
        end: UnixMs(start.0 + (probe.duration_s * 1000.0).round() as i64),
        bytes,
        codec: probe.codec,
        width: probe.width,
        height: probe.height,
    };
    let indexed = store.call(move |conn| index::insert_segment(conn, &segment)).await;
    match indexed {
        Ok(_) => {
            tracing::info!(path = relative, duration_s = probe.duration_s, "unindexed segment indexed");
            Ok(Found::Indexed)
        }
        Err(e) => {
            tracing::warn!(path = relative, error = %e, "segment refused by the index");
            Ok(Found::Unplayable)
        }
    }
}

fn remove_empty(recordings_dir: &Path, relative: &str) {
    match std::fs::remove_file(recordings_dir.join(relative)) {
        Ok(()) => tracing::info!(path = relative, "segment without a frame removed"),
        Err(e) => tracing::warn!(path = relative, error = %e, "segment without a frame not removed"),
    }
}

fn quarantine(recordings_dir: &Path, relative: &str) -> Result<()> {
    let target: PathBuf = recordings_dir.join(QUARANTINE_DIR).join(relative);
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::rename(recordings_dir.join(relative), &target)
        .with_context(|| format!("moving {relative} to {}", target.display()))?;
    tracing::warn!(path = relative, to = %target.display(), "unplayable segment quarantined");
    Ok(())
}

/// Deletes quarantined files last modified before `cutoff` (quarantine is bounded by the
/// longest retention), and the directories they leave empty; returns the files deleted.
pub fn prune_quarantine(recordings_dir: &Path, cutoff: UnixMs) -> usize {
    fn prune(dir: &Path, cutoff: std::time::SystemTime) -> usize {
        let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
        let mut deleted = 0;
        for entry in entries.filter_map(|e| e.ok()) {
            let path = entry.path();
            match entry.metadata() {
                Ok(m) if m.is_dir() => {
                    deleted += prune(&path, cutoff);
                    let _ = std::fs::remove_dir(&path);
                }
                Ok(m) if m.modified().is_ok_and(|t| t < cutoff) && std::fs::remove_file(&path).is_ok() => {
                    tracing::info!(path = %path.display(), "quarantined file older than retention deleted");
                    deleted += 1;
                }
                _ => {}
            }
        }
        deleted
    }
    let cutoff = std::time::UNIX_EPOCH + std::time::Duration::from_millis(cutoff.0.max(0) as u64);
    prune(&recordings_dir.join(QUARANTINE_DIR), cutoff)
}

/// Drops rows under day directories that no longer exist, seeking from one directory to the next.
async fn drop_rows_of_missing_dirs(store: &Store, recordings_dir: &Path) -> Result<usize> {
    let mut after = String::new();
    let mut dropped = 0;
    loop {
        let from = after.clone();
        let next: Option<String> = store
            .call(move |conn| {
                conn.query_row("SELECT path FROM segments WHERE path >= ?1 ORDER BY path LIMIT 1", [from], |r| r.get(0))
                    .optional()
            })
            .await?;
        let Some(path) = next else { break };
        let prefix = match path.rfind('/') {
            Some(i) => path[..=i].to_string(),
            None => format!("{path}/"),
        };
        after = prefix_end(&prefix);
        if !recordings_dir.join(&prefix).is_dir() {
            let (from, to) = (prefix.clone(), after.clone());
            dropped += store
                .call(move |conn| {
                    conn.execute("DELETE FROM segments WHERE path >= ?1 AND path < ?2", params![from, to])
                })
                .await
                .context("dropping rows of a missing directory")?;
            tracing::warn!(dir = %prefix, "rows of a missing directory dropped");
        }
    }
    Ok(dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_probe_output() {
        let json = r#"{"streams":[{"codec_name":"h264","width":320,"height":240}],"format":{"duration":"5.000000"}}"#;
        assert_eq!(
            parse_probe(json),
            Some(Probe { duration_s: 5.0, codec: Some("h264".into()), width: Some(320), height: Some(240) })
        );
        assert_eq!(parse_probe("{}"), None);
        assert_eq!(parse_probe(r#"{"streams":[{}],"format":{"duration":"0.000"}}"#), None);
        assert_eq!(parse_probe("not json"), None);
    }

    #[test]
    fn quarantine_keeps_what_is_younger_than_retention() {
        let dir = std::env::temp_dir().join(format!("heldar-quarantine-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let day = dir.join(QUARANTINE_DIR).join("cam/2026-01-01");
        std::fs::create_dir_all(&day).expect("dir");
        std::fs::write(day.join("000000.mp4"), b"x").expect("file");
        assert_eq!(prune_quarantine(&dir, UnixMs(0)), 0, "younger than the cutoff");
        assert!(day.join("000000.mp4").exists());
        assert_eq!(prune_quarantine(&dir, UnixMs(UnixMs::now().0 + 60_000)), 1);
        assert!(!dir.join(QUARANTINE_DIR).join("cam").exists(), "empty directories go too");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn prefix_bounds_cover_one_directory() {
        assert_eq!(prefix_end("cam/2026-11-24/"), "cam/2026-11-240");
        assert!("cam/2026-11-24/235959.mp4" < prefix_end("cam/2026-11-24/").as_str());
        assert!("cam/2026-11-25/000000.mp4" > prefix_end("cam/2026-11-24/").as_str());
    }
}
