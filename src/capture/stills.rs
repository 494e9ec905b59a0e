//! Scheduled snapshots (`[[camera.snapshot_schedule]]`): one task for every
//! camera takes each at its time (a one-shot decode, nothing runs between),
//! writes it under `<data_dir>/snapshots/<camera>/<YYYY-MM-DD>/<HHMMSS>.jpg`,
//! syncs the file and its directory, indexes it, publishes it retained on
//! `P/snapshots/<camera>`, and deletes those older than their `retain_days`
//! through the `garbage` table, as segments are.

use super::CameraStates;
use super::schedule::next_snapshot;
use super::snapshot::{Snapshot, Snapshots};
use super::source::Source;
use crate::config::LoadedConfig;
use crate::config::schema::SnapshotSchedule;
use crate::mqtt::MqttHandle;
use crate::recording::garbage;
use crate::store::Store;
use crate::sys::clock::Steps;
use crate::wallclock::UnixMs;
use anyhow::{Context, Result};
use jiff::tz::TimeZone;
use rusqlite::{Connection, params};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// Snapshots of a camera no longer configured (or without a snapshot schedule) are kept this long.
const ORPHAN_RETAIN_DAYS: u64 = 7;
/// How often aged snapshots are looked for (and at every start of the task).
const SWEEP_EVERY: Duration = Duration::from_secs(3600);
/// The longest the task sleeps before it looks at the wall clock again.
const MAX_SLEEP: Duration = Duration::from_secs(60);
/// Rows deleted per store job.
const PAGE: i64 = 500;

/// A camera with snapshot schedules.
#[derive(Clone, Debug)]
pub struct StillCamera {
    /// Camera id.
    pub id: String,
    /// Its `[[camera.snapshot_schedule]]`.
    pub schedules: Vec<SnapshotSchedule>,
    /// Its source, to grab a frame from while it does not record.
    pub source: Option<Source>,
}

/// An indexed snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StillRow {
    /// Camera id.
    pub camera: String,
    /// Path relative to the data directory.
    pub path: String,
    /// When it was taken.
    pub ts: UnixMs,
    /// File size.
    pub bytes: u64,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

/// Indexes a snapshot.
pub fn insert_still(conn: &Connection, row: &StillRow) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO snapshots (camera, path, ts_ms, bytes, width, height) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![row.camera, row.path, row.ts.0, row.bytes as i64, row.width, row.height],
    )
    .map(drop)
}

/// The snapshots of `cameras` (all when empty) taken in `[from, to)`, oldest first.
pub fn stills_between(
    conn: &Connection,
    cameras: &[String],
    from: UnixMs,
    to: UnixMs,
) -> rusqlite::Result<Vec<StillRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT camera, path, ts_ms, bytes, width, height FROM snapshots
         WHERE ts_ms >= ?1 AND ts_ms < ?2 ORDER BY ts_ms, id",
    )?;
    let rows = stmt.query_map(params![from.0, to.0], |r| {
        Ok(StillRow {
            camera: r.get(0)?,
            path: r.get(1)?,
            ts: UnixMs(r.get(2)?),
            bytes: r.get::<_, i64>(3)?.max(0) as u64,
            width: r.get(4)?,
            height: r.get(5)?,
        })
    })?;
    let all = rows.collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(all.into_iter().filter(|r| cameras.is_empty() || cameras.contains(&r.camera)).collect())
}

/// Bytes of all indexed snapshots.
pub fn stills_bytes(conn: &Connection) -> rusqlite::Result<u64> {
    conn.query_row("SELECT coalesce(sum(bytes), 0) FROM snapshots", [], |r| r.get::<_, i64>(0)).map(|b| b.max(0) as u64)
}

/// Moves up to a page of `camera`'s snapshots taken before `cutoff` into `garbage`, under
/// their absolute path (`data_dir` joined); returns those paths.
fn aged_to_garbage(conn: &Connection, data_dir: &Path, camera: &str, cutoff: UnixMs) -> rusqlite::Result<Vec<String>> {
    let mut take = conn.prepare_cached(
        "DELETE FROM snapshots WHERE id IN (SELECT id FROM snapshots WHERE camera = ?1 AND ts_ms < ?2 LIMIT ?3)
         RETURNING path",
    )?;
    let paths: Vec<String> =
        take.query_map(params![camera, cutoff.0, PAGE], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
    let mut keep = conn.prepare_cached("INSERT OR IGNORE INTO garbage (path, camera) VALUES (?1, ?2)")?;
    let mut absolute = Vec::with_capacity(paths.len());
    for path in paths {
        let full = data_dir.join(&path).to_string_lossy().into_owned();
        keep.execute(params![full, camera])?;
        absolute.push(full);
    }
    Ok(absolute)
}

fn still_cameras(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare_cached("SELECT DISTINCT camera FROM snapshots")?;
    let rows = stmt.query_map([], |r| r.get(0))?;
    rows.collect()
}

/// The relative path of a snapshot of `camera` taken at `at`, the `n`th try of that second.
pub fn still_path(camera: &str, at: UnixMs, n: u32) -> String {
    let (.., hour, minute, second, _) = at.civil();
    let suffix = if n == 0 { String::new() } else { format!("-{n}") };
    // The segments' day directories: garbage collection finds an emptied day the same way.
    format!("snapshots/{}/{hour:02}{minute:02}{second:02}{suffix}.jpg", crate::recording::layout::day_dir(camera, at))
}

/// Writes `jpeg` as a new file for `camera` at `at` (never over another), syncs it, its
/// directory and the camera's; returns its relative path.
fn write_still(data_dir: &Path, camera: &str, at: UnixMs, jpeg: &[u8]) -> std::io::Result<String> {
    for n in 0..100 {
        let relative = still_path(camera, at, n);
        let full = data_dir.join(&relative);
        let day = full.parent().unwrap_or(data_dir);
        std::fs::create_dir_all(day)?;
        let mut file = match std::fs::OpenOptions::new().write(true).create_new(true).open(&full) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        };
        file.write_all(jpeg)?;
        file.sync_all()?;
        std::fs::File::open(day)?.sync_all()?;
        if let Some(camera_dir) = day.parent() {
            std::fs::File::open(camera_dir)?.sync_all()?;
        }
        return Ok(relative);
    }
    Err(std::io::Error::other("a hundred snapshots in one second"))
}

/// What the snapshot task shares with the rest of the node.
#[derive(Clone)]
pub struct Stills {
    /// Takes the pictures.
    pub snapshots: Snapshots,
    /// The index.
    pub store: Store,
    /// The broker session.
    pub mqtt: MqttHandle,
    /// The segments being written.
    pub states: CameraStates,
    /// `node.data_dir`.
    pub data_dir: PathBuf,
    /// Wall-clock steps: the next times are found again at once.
    pub clock_steps: watch::Receiver<Steps>,
    /// Snapshots being taken (camera, width): one at a time each, so a slow source cannot
    /// pile up decoders.
    busy: Arc<Mutex<BTreeSet<(String, u32)>>>,
}

/// Takes a (camera, width) off the busy list when its snapshot is done.
struct Taking(Arc<Mutex<BTreeSet<(String, u32)>>>, (String, u32));

impl Drop for Taking {
    fn drop(&mut self) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.1);
    }
}

impl Stills {
    /// The snapshot task's parts for the node of `config`, taking its snapshots with `snapshots`.
    pub fn new(
        config: &LoadedConfig,
        snapshots: Snapshots,
        (store, mqtt, states): (&Store, &MqttHandle, &CameraStates),
        clock_steps: watch::Receiver<Steps>,
    ) -> Self {
        Self {
            snapshots,
            store: store.clone(),
            mqtt: mqtt.clone(),
            states: states.clone(),
            data_dir: config.data_dir.clone(),
            clock_steps,
            busy: Arc::default(),
        }
    }

    /// The cameras of `config` with snapshot schedules, each with its running source.
    pub fn cameras(config: &LoadedConfig, source: impl Fn(&str) -> Option<Source>) -> Vec<StillCamera> {
        let cameras = config.config.cameras.iter().filter(|c| !c.snapshot_schedule.is_empty());
        cameras
            .map(|c| StillCamera { id: c.id.clone(), schedules: c.snapshot_schedule.clone(), source: source(&c.id) })
            .collect()
    }

    /// Takes the snapshots of `cameras` on their schedules in `tz` and keeps them for their
    /// `retain_days`, until the task is dropped.
    pub async fn run(mut self, cameras: Vec<StillCamera>, tz: TimeZone) {
        let keep: BTreeMap<String, u64> = cameras
            .iter()
            .map(|c| (c.id.clone(), c.schedules.iter().map(|s| s.retain_days).max().unwrap_or(ORPHAN_RETAIN_DAYS)))
            .collect();
        let mut swept = tokio::time::Instant::now();
        self.sweep(&keep, UnixMs::now()).await;
        let mut after = UnixMs::now();
        loop {
            // Aged snapshots go every SWEEP_EVERY, whether or not one is due (loops are ≤ MAX_SLEEP).
            self.sweep_now(&keep, &mut swept).await;
            let due = |camera: &StillCamera, s: &SnapshotSchedule| {
                next_snapshot(s, &tz, after).map(|t| (t, camera.id.clone(), s.width))
            };
            let shots: Vec<(UnixMs, String, u32)> = cameras
                .iter()
                .flat_map(|c| c.schedules.iter().map(move |s| (c, s)))
                .filter_map(|(c, s)| due(c, s))
                .collect();
            let Some(next) = shots.iter().map(|s| s.0).min() else {
                tokio::time::sleep(MAX_SLEEP).await;
                continue;
            };
            let wait = Duration::from_millis((next.0 - UnixMs::now().0).max(0) as u64);
            tokio::select! {
                () = tokio::time::sleep(wait.min(MAX_SLEEP)) => {}
                Ok(()) = self.clock_steps.changed() => {
                    after = UnixMs::now();
                    continue;
                }
            }
            let now = UnixMs::now();
            if now < next {
                continue;
            }
            for (_, camera, width) in shots.into_iter().filter(|s| s.0 == next) {
                let source = cameras.iter().find(|c| c.id == camera).and_then(|c| c.source.clone());
                if !self.busy.lock().unwrap_or_else(|p| p.into_inner()).insert((camera.clone(), width)) {
                    tracing::warn!(camera = %camera, "the previous snapshot is still being taken: this one is skipped");
                    continue;
                }
                let taking = Taking(self.busy.clone(), (camera.clone(), width));
                // Its own task: a slow decode delays neither the next snapshot nor other cameras.
                let stills = self.clone();
                tokio::spawn(async move {
                    stills.take(camera, source, width).await;
                    drop(taking);
                });
            }
            after = now.max(next);
        }
    }

    async fn sweep_now(&self, keep: &BTreeMap<String, u64>, swept: &mut tokio::time::Instant) {
        if swept.elapsed() >= SWEEP_EVERY {
            *swept = tokio::time::Instant::now();
            self.sweep(keep, UnixMs::now()).await;
        }
    }

    /// Takes one snapshot of `camera` and keeps it; a failure is logged.
    async fn take(self, camera: String, source: Option<Source>, width: u32) {
        let shot = match self.snapshots.take_fresh(&self.states, &camera, source.as_ref(), width).await {
            Ok(shot) => shot,
            Err(e) => {
                tracing::warn!(camera = %camera, error = format!("{e:#}"), "scheduled snapshot not taken");
                return;
            }
        };
        match self.keep(&camera, &shot).await {
            Ok(path) => tracing::debug!(camera = %camera, path = %path, bytes = shot.jpeg.len(), "snapshot kept"),
            Err(e) => tracing::error!(camera = %camera, error = format!("{e:#}"), "scheduled snapshot not kept"),
        }
        // Retained: the latest is what Home Assistant's image shows, also after a restart.
        self.mqtt.publish(self.mqtt.topics().snapshot(&camera), shot.jpeg, rumqttc::QoS::AtLeastOnce, true);
    }

    /// Writes, syncs and indexes one snapshot; its relative path.
    async fn keep(&self, camera: &str, shot: &Snapshot) -> Result<String> {
        let (dir, id, at, jpeg) = (self.data_dir.clone(), camera.to_string(), shot.ts, shot.jpeg.clone());
        let path = tokio::task::spawn_blocking(move || write_still(&dir, &id, at, &jpeg)).await?.context("writing")?;
        let row = StillRow {
            camera: camera.to_string(),
            path: path.clone(),
            ts: shot.ts,
            bytes: shot.jpeg.len() as u64,
            width: shot.width,
            height: shot.height,
        };
        self.store.call(move |conn| insert_still(conn, &row)).await.context("indexing")?;
        Ok(path)
    }

    /// Deletes the snapshots older than their camera's `retain_days` (`keep`; others 7 days).
    async fn sweep(&self, keep: &BTreeMap<String, u64>, now: UnixMs) {
        if let Err(e) = self.try_sweep(keep, now).await {
            tracing::error!(error = format!("{e:#}"), "aged snapshots not deleted");
        }
    }

    async fn try_sweep(&self, keep: &BTreeMap<String, u64>, now: UnixMs) -> Result<()> {
        let mut deleted = 0;
        for camera in self.store.call(still_cameras).await? {
            let days = keep.get(&camera).copied().unwrap_or(ORPHAN_RETAIN_DAYS);
            let cutoff = UnixMs(now.0 - days as i64 * 86_400_000);
            loop {
                let (dir, id) = (self.data_dir.clone(), camera.clone());
                let paths = self.store.call(move |conn| aged_to_garbage(conn, &dir, &id, cutoff)).await?;
                if paths.is_empty() {
                    break;
                }
                let (dir, page) = (self.data_dir.clone(), paths.clone());
                let gone = tokio::task::spawn_blocking(move || garbage::unlink_and_sync(&dir, &page, now)).await?;
                deleted += gone.len();
                self.store.call(move |conn| garbage::drop_garbage(conn, &gone)).await?;
                if (paths.len() as i64) < PAGE {
                    break;
                }
            }
        }
        if deleted > 0 {
            tracing::info!(deleted, "aged snapshots deleted");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_are_named_by_their_second_in_utc_and_never_reuse_a_name() {
        let at = UnixMs::parse_rfc3339("2026-11-24T14:05:09.250Z").expect("time");
        assert_eq!(still_path("front", at, 0), "snapshots/front/2026-11-24/140509.jpg");
        assert_eq!(still_path("front", at, 2), "snapshots/front/2026-11-24/140509-2.jpg");
        let dir = std::env::temp_dir().join(format!("heldar-stills-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let first = write_still(&dir, "front", at, b"one").expect("first");
        let second = write_still(&dir, "front", at, b"two").expect("second");
        assert_eq!(
            (first.as_str(), second.as_str()),
            ("snapshots/front/2026-11-24/140509.jpg", "snapshots/front/2026-11-24/140509-1.jpg")
        );
        assert_eq!(std::fs::read(dir.join(&first)).expect("read"), b"one");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn aged_snapshots_leave_the_index_for_the_garbage_table() {
        let conn = crate::store::migrations::in_memory();
        let row = |path: &str, ts: i64| StillRow {
            camera: "front".into(),
            path: path.into(),
            ts: UnixMs(ts),
            bytes: 10,
            width: 160,
            height: 120,
        };
        insert_still(&conn, &row("snapshots/front/d/1.jpg", 1000)).expect("insert");
        insert_still(&conn, &row("snapshots/front/d/2.jpg", 5000)).expect("insert");
        assert_eq!(stills_bytes(&conn).expect("bytes"), 20);
        assert_eq!(stills_between(&conn, &[], UnixMs(0), UnixMs(2000)).expect("between").len(), 1);
        assert!(stills_between(&conn, &["back".into()], UnixMs(0), UnixMs(9000)).expect("between").is_empty());
        let gone = aged_to_garbage(&conn, Path::new("/data"), "front", UnixMs(3000)).expect("aged");
        assert_eq!(gone, ["/data/snapshots/front/d/1.jpg"]);
        assert!(garbage::is_garbage(&conn, "/data/snapshots/front/d/1.jpg").expect("garbage"));
        assert_eq!(stills_bytes(&conn).expect("bytes"), 10);
    }
}
