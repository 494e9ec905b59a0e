//! The retention sweep: ages footage out per camera, then frees space oldest
//! first, never touching locked or in-use segments; deletes through the `garbage`
//! table, a page at a time.

use super::garbage;
use super::index::{self, SegmentRow};
use super::reconcile;
use super::retention::{self, Candidate, Limits, Reason, Space};
use crate::config::LoadedConfig;
use crate::config::schema::RecordMode;
use crate::store::Store;
pub use crate::sys::disk::disk_space;
use crate::wallclock::UnixMs;
use anyhow::Result;
use rusqlite::{Connection, params};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// A camera's span of time in ms: an evidence lock, or a window of forced continuous recording.
type Span = (String, i64, i64);

/// Segments examined per query.
const PAGE: usize = 500;
/// Cameras no longer configured keep footage this long.
const ORPHAN_RETAIN_DAYS: u64 = 7;

/// Segments being read (backup, export): retention leaves them alone.
#[derive(Clone, Default)]
pub struct ReadLocks(Arc<Mutex<HashMap<i64, usize>>>);

impl ReadLocks {
    /// Marks `ids` in use until the guard is dropped.
    pub fn hold(&self, ids: &[i64]) -> ReadGuard {
        let mut held = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for id in ids {
            *held.entry(*id).or_insert(0) += 1;
        }
        ReadGuard { locks: self.clone(), ids: ids.to_vec() }
    }

    fn in_use(&self, id: i64) -> bool {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).contains_key(&id)
    }
}

/// Releases read locks when dropped.
pub struct ReadGuard {
    locks: ReadLocks,
    ids: Vec<i64>,
}

impl Drop for ReadGuard {
    fn drop(&mut self) {
        let mut held = self.locks.0.lock().unwrap_or_else(|p| p.into_inner());
        for id in &self.ids {
            if let Some(n) = held.get_mut(id) {
                *n -= 1;
                if *n == 0 {
                    held.remove(id);
                }
            }
        }
    }
}

/// What a sweep did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Segments deleted because they aged out.
    pub aged: usize,
    /// Segments deleted to free space.
    pub for_space: usize,
    /// Bytes freed.
    pub freed: u64,
    /// Storage is still under its floor (or over `max_bytes`): only locked or in-use footage is left.
    pub short: bool,
    /// The room asked ahead of the floor could not be freed either.
    pub stuck: bool,
}

/// Retention settings from the config.
#[derive(Clone)]
pub struct Sweeper {
    store: Store,
    recordings_dir: PathBuf,
    retain: BTreeMap<String, (RecordMode, u64)>,
    pre_roll_ms: i64,
    min_free_percent: f64,
    max_bytes: Option<u64>,
    reads: ReadLocks,
    recording: Vec<String>,
}

impl Sweeper {
    /// A sweeper for `config`'s cameras and storage limits.
    pub fn new(config: &LoadedConfig, store: Store, reads: ReadLocks) -> Self {
        // A camera that may record `events` (its `record` or a window of its schedule) keeps
        // only what it recorded continuously (`record_windows`) for `retain_days`.
        let kept_as = |c: &crate::config::schema::CameraConfig| match c.may_record_events() {
            true => RecordMode::Events,
            false => c.record,
        };
        let retain = config.config.cameras.iter().map(|c| (c.id.clone(), (kept_as(c), c.retain_days))).collect();
        Self {
            store,
            recordings_dir: config.recordings_dir.clone(),
            retain,
            pre_roll_ms: config.config.events.pre_roll_s as i64 * 1000,
            min_free_percent: config.config.storage.min_free_percent,
            max_bytes: config.config.storage.max_bytes.map(|b| b.0),
            reads,
            recording: config.config.cameras.iter().filter(|c| c.ever_records()).map(|c| c.id.clone()).collect(),
        }
    }

    /// The free-space floor in bytes on a file system of `total` bytes.
    pub fn floor(&self, total: u64) -> u64 {
        (total as f64 * self.min_free_percent / 100.0).ceil() as u64
    }

    /// `storage.min_free_percent`.
    pub fn min_free_percent(&self) -> f64 {
        self.min_free_percent
    }

    /// The cameras that record, most important first (the order of the config file).
    pub fn recording_cameras(&self) -> &[String] {
        &self.recording
    }

    /// How long `camera`'s unlocked footage is kept (`forced`: recorded while a `record`
    /// command forced an `events` camera to record everything).
    fn kept_ms(&self, camera: &str, forced: bool) -> i64 {
        let days = |d: u64| d as i64 * 86_400_000;
        match self.retain.get(camera) {
            // `events` mode keeps unlocked footage only as pre-roll for the next event.
            Some((RecordMode::Events, _)) if !forced => self.pre_roll_ms,
            Some((_, retain_days)) => days(*retain_days),
            None => days(ORPHAN_RETAIN_DAYS),
        }
    }

    fn cutoff(&self, camera: &str, now: UnixMs) -> UnixMs {
        UnixMs(now.0 - self.kept_ms(camera, false))
    }

    /// Free and total bytes of the recordings file system, measured off the runtime thread;
    /// (0, 0) while the directory does not exist (nothing recorded yet).
    pub async fn measure(&self) -> Result<(u64, u64)> {
        let dir = self.recordings_dir.clone();
        tokio::task::spawn_blocking(move || match disk_space(&dir) {
            Ok(space) => Ok(space),
            Err(_) if std::fs::exists(&dir).is_ok_and(|exists| !exists) => Ok((0, 0)),
            Err(e) => Err(e),
        })
        .await?
    }

    /// One sweep at `now`; one at a time in the process (the periodic one and a `sweep`
    /// command wait for each other).
    pub async fn sweep(&self, now: UnixMs) -> Result<SweepReport> {
        self.sweep_ahead(now, 0).await
    }

    /// One sweep at `now` that also frees `ahead` bytes beyond the floor, for the writes to come.
    pub async fn sweep_ahead(&self, now: UnixMs, ahead: u64) -> Result<SweepReport> {
        let _one_at_a_time = SWEEPING.lock().await;
        garbage::collect(&self.store, &self.recordings_dir).await?;
        let longest = self.retain.values().map(|(_, days)| *days).max().unwrap_or(ORPHAN_RETAIN_DAYS);
        let (dir, cutoff) = (self.recordings_dir.clone(), UnixMs(now.0 - longest as i64 * 86_400_000));
        tokio::task::spawn_blocking(move || reconcile::prune_quarantine(&dir, cutoff)).await?;
        let mut report = SweepReport::default();
        let (free, total) = self.measure().await?;
        let recordings: u64 = self.store.call(index::camera_totals).await?.iter().map(|t| t.bytes).sum();
        let mut space = Space { free, total, recordings };
        let cameras: Vec<String> = self.store.call(distinct_cameras).await?;
        // Age first, per camera, so a short retention is not held up by another camera's older footage.
        for camera in cameras {
            let cutoff = self.cutoff(&camera, now);
            let continuous_cutoffs = match self.retain.get(&camera) {
                Some((RecordMode::Events, _)) => [(camera.clone(), UnixMs(now.0 - self.kept_ms(&camera, true)))].into(),
                _ => BTreeMap::new(),
            };
            let limits = Limits {
                cutoffs: [(camera.clone(), cutoff)].into(),
                continuous_cutoffs,
                min_free_percent: 0.0,
                max_bytes: None,
                ahead: 0,
            };
            let mut after = (i64::MIN, i64::MIN);
            loop {
                let page = self.page(Some((camera.clone(), cutoff)), after).await?;
                let Some(last) = page.last() else { break };
                after = (last.segment.start.0, last.id);
                self.apply(&page, &limits, &mut space, &mut report).await?;
                if page.len() < PAGE {
                    break;
                }
            }
        }
        // Then oldest first across cameras while storage is out of bounds.
        let limits = Limits {
            cutoffs: BTreeMap::new(),
            continuous_cutoffs: BTreeMap::new(),
            min_free_percent: self.min_free_percent,
            max_bytes: self.max_bytes,
            ahead,
        };
        let mut after = (i64::MIN, i64::MIN);
        while space.short(&limits) {
            let page = self.page(None, after).await?;
            let Some(last) = page.last() else { break };
            after = (last.segment.start.0, last.id);
            // Counted, not measured again: a file system may show freed blocks only after
            // its next commit, and measuring then would delete more than needed.
            self.apply(&page, &limits, &mut space, &mut report).await?;
        }
        if report.aged + report.for_space > 0 {
            let dir = self.recordings_dir.clone();
            if let Err(e) = tokio::task::spawn_blocking(move || crate::sys::disk::sync_fs(&dir)).await? {
                tracing::warn!(error = %e, "recordings file system not synced after deletions");
            }
        }
        report.stuck = space.short(&limits);
        report.short = space.short(&Limits { ahead: 0, ..limits });
        self.store.call(prune_locks_and_gaps).await?;
        Ok(report)
    }

    /// Segments after `after` (start, id), oldest first; of one camera before a cutoff, or all.
    async fn page(&self, camera: Option<(String, UnixMs)>, after: (i64, i64)) -> Result<Vec<SegmentRow>> {
        self.store.call(move |conn| page_after(conn, camera.as_ref(), after)).await
    }

    /// Plans over one page and deletes what the plan says.
    async fn apply(
        &self,
        page: &[SegmentRow],
        limits: &Limits,
        space: &mut Space,
        report: &mut SweepReport,
    ) -> Result<()> {
        let candidates = self.candidates(page).await?;
        let plan = retention::plan(&candidates, limits, space);
        if plan.is_empty() {
            return Ok(());
        }
        let ids: Vec<i64> = plan.iter().map(|(id, _)| *id).collect();
        // Rows out first, in one transaction: the index never points at a deleted file.
        let doomed = self.store.call(move |conn| garbage::move_to_garbage(conn, &ids)).await?;
        let reasons: HashMap<i64, Reason> = plan.into_iter().collect();
        for d in &doomed {
            report.freed += d.bytes;
            match reasons.get(&d.id) {
                Some(Reason::Age) => report.aged += 1,
                _ => report.for_space += 1,
            }
        }
        // Unlinks and directory syncs block: off the runtime thread, so recording, MQTT and
        // the watchdog go on.
        let (dir, paths) = (self.recordings_dir.clone(), doomed.into_iter().map(|d| d.path).collect::<Vec<_>>());
        let gone = tokio::task::spawn_blocking(move || garbage::unlink_and_sync(&dir, &paths, UnixMs::now())).await?;
        self.store.call(move |conn| garbage::drop_garbage(conn, &gone)).await?;
        Ok(())
    }

    /// Marks each segment of a page locked (an evidence lock overlaps it) or in use.
    async fn candidates(&self, page: &[SegmentRow]) -> Result<Vec<Candidate>> {
        let mut spans: BTreeMap<String, (i64, i64)> = BTreeMap::new();
        for row in page {
            let span = spans.entry(row.segment.camera.clone()).or_insert((i64::MAX, i64::MIN));
            span.0 = span.0.min(row.segment.start.0);
            span.1 = span.1.max(row.segment.end.0);
        }
        let ids: Vec<i64> = page.iter().map(|r| r.id).collect();
        let (boot_now, boot_id) = (crate::sys::clock::read().1, crate::sys::clock::boot_id());
        let (locks, windows, closed): (Vec<Span>, Vec<Span>, HashMap<i64, i64>) = self
            .store
            .call(move |conn| {
                let (mut locks, mut windows) = (Vec::new(), Vec::new());
                for (camera, (from, to)) in &spans {
                    for (_, lock) in super::locks::locks_overlapping(conn, camera, UnixMs(*from), UnixMs(to + 1))? {
                        locks.push((camera.clone(), lock.from.0, lock.to.0));
                    }
                    windows.extend(forced_windows(conn, camera, *from, to + 1)?);
                }
                let closed = match boot_id {
                    Some(boot) => index::closed_in_boot(conn, &ids, boot)?.into_iter().collect(),
                    None => HashMap::new(),
                };
                Ok((locks, windows, closed))
            })
            .await?;
        let overlaps = |spans: &[Span], s: &index::NewSegment| {
            spans.iter().any(|(camera, from, to)| *camera == s.camera && *from < s.end.0 && *to > s.start.0)
        };
        Ok(page
            .iter()
            .map(|row| {
                let s = &row.segment;
                let forced_continuous = overlaps(&windows, s);
                // Closed in this boot less than its retention ago by the boot clock: fresh,
                // whatever the wall clock says now (a step forward must not age it out).
                let kept = self.kept_ms(&s.camera, forced_continuous);
                let fresh = closed.get(&row.id).is_some_and(|closed| boot_now - closed < kept);
                Candidate {
                    id: row.id,
                    camera: s.camera.clone(),
                    end: s.end,
                    bytes: s.bytes,
                    locked: overlaps(&locks, s),
                    in_use: self.reads.in_use(row.id),
                    forced_continuous,
                    fresh,
                }
            })
            .collect())
    }
}

/// One sweep at a time in this process (and so, with the data directory's lock, on it).
static SWEEPING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn distinct_cameras(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare_cached("SELECT camera FROM camera_totals WHERE segments > 0 ORDER BY camera")?;
    let rows = stmt.query_map([], |r| r.get(0))?;
    rows.collect()
}

fn page_after(
    conn: &Connection,
    camera: Option<&(String, UnixMs)>,
    after: (i64, i64),
) -> rusqlite::Result<Vec<SegmentRow>> {
    let (columns, map) = (index::SEGMENT_COLUMNS, index::segment_row);
    match camera {
        Some((camera, cutoff)) => {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {columns} FROM segments WHERE camera = ?1 AND start_ms < ?2 AND (start_ms, id) > (?3, ?4)
                 ORDER BY start_ms, id LIMIT ?5"
            ))?;
            let rows = stmt.query_map(params![camera, cutoff.0, after.0, after.1, PAGE as i64], map)?;
            rows.collect()
        }
        None => {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {columns} FROM segments WHERE (start_ms, id) > (?1, ?2) ORDER BY start_ms, id LIMIT ?3"
            ))?;
            let rows = stmt.query_map(params![after.0, after.1, PAGE as i64], map)?;
            rows.collect()
        }
    }
}

/// Windows of forced continuous recording of `camera` overlapping `[from, to)`.
fn forced_windows(conn: &Connection, camera: &str, from: i64, to: i64) -> rusqlite::Result<Vec<Span>> {
    let mut stmt = conn.prepare_cached(
        "SELECT camera, from_ms, to_ms FROM record_windows WHERE camera = ?1 AND to_ms > ?2 AND from_ms < ?3",
    )?;
    let rows = stmt.query_map(params![camera, from, to], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    rows.collect()
}

/// Drops locks and gaps that ended before a camera's oldest footage: nothing left to protect or explain.
fn prune_locks_and_gaps(conn: &Connection) -> rusqlite::Result<usize> {
    let locks = conn.execute(
        "DELETE FROM evidence_locks WHERE to_ms < coalesce(
             (SELECT min(start_ms) FROM segments WHERE segments.camera = evidence_locks.camera), ?1)",
        [UnixMs::now().0 - ORPHAN_RETAIN_DAYS as i64 * 86_400_000],
    )?;
    let gaps = conn.execute(
        "DELETE FROM recording_gaps WHERE end_ms < coalesce(
             (SELECT min(start_ms) FROM segments WHERE segments.camera = recording_gaps.camera), ?1)",
        [UnixMs::now().0 - ORPHAN_RETAIN_DAYS as i64 * 86_400_000],
    )?;
    let windows = conn.execute(
        "DELETE FROM record_windows WHERE to_ms < coalesce(
             (SELECT min(start_ms) FROM segments WHERE segments.camera = record_windows.camera), ?1)",
        [UnixMs::now().0 - ORPHAN_RETAIN_DAYS as i64 * 86_400_000],
    )?;
    Ok(locks + gaps + windows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_locks_count_holders() {
        let reads = ReadLocks::default();
        let a = reads.hold(&[1, 2]);
        let b = reads.hold(&[2]);
        drop(a);
        assert!(!reads.in_use(1));
        assert!(reads.in_use(2));
        drop(b);
        assert!(!reads.in_use(2));
    }
}
