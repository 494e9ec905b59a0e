//! Recording modes in force: a `record` command's override while it lasts,
//! else the window of the camera's schedule in force, else its configured
//! `record`. Overrides are kept in the index, so they survive a restart until
//! they expire. Each camera's supervisor watches its mode; a timer wakes at
//! the next change (a window edge, an override's end), and a wall-clock step
//! makes everything be evaluated again at once.

use super::schedule::{next_change, scheduled};
use crate::config::schema::{CameraConfig, Config, RecordMode, ScheduleWindow, Window};
use crate::store::Store;
use crate::sys::clock::Steps;
use crate::wallclock::UnixMs;
use anyhow::Result;
use jiff::tz::TimeZone;
use rusqlite::{Connection, params};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, watch};

/// The longest the timer sleeps: the wall clock is looked at again at least this often.
const MAX_SLEEP: Duration = Duration::from_secs(60);

/// A `record` command's override.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Override {
    /// The mode it forces.
    pub mode: RecordMode,
    /// When the configured mode comes back; `None`: at the next `record` command.
    pub until: Option<UnixMs>,
}

/// What put a mode in force.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum By {
    /// The camera's `record` (it has no schedule).
    Configured,
    /// Its schedule: a window, or `record` outside every window.
    Schedule,
    /// A `record` command.
    Command,
}

/// A camera's recording mode in force, why, and when it next changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InForce {
    /// The mode.
    pub mode: RecordMode,
    /// What put it in force.
    pub by: By,
    /// The schedule window in force, in words (`weekdays 18:00–08:00 continuous`).
    pub window: Option<String>,
    /// When the mode next changes and to what; `None`: not within a week (or only by a command).
    pub next: Option<(UnixMs, RecordMode)>,
}

impl InForce {
    /// `mode` as configured, with no schedule.
    pub fn configured(mode: RecordMode) -> Self {
        Self { mode, by: By::Configured, window: None, next: None }
    }
}

/// What a camera's schedule gives at `now` (the override, when one lasts, comes first), and
/// when the timer should look again (the next change of mode or window).
pub fn in_force(
    (configured, windows): (RecordMode, &[ScheduleWindow]),
    over: Option<&Override>,
    tz: &TimeZone,
    now: UnixMs,
) -> (InForce, Option<UnixMs>) {
    let at = |t| scheduled(configured, windows, tz, t);
    if let Some(o) = over.filter(|o| o.until.is_none_or(|until| now < until)) {
        let next = o.until.map(|until| (until, at(until).0));
        return (InForce { mode: o.mode, by: By::Command, window: None, next }, o.until);
    }
    let (mode, window) = at(now);
    let next = next_change(windows, tz, now, |t| at(t).0).map(|t| (t, at(t).0));
    let wake = next_change(windows, tz, now, at);
    let by = if windows.is_empty() { By::Configured } else { By::Schedule };
    let window = window.map(|i| format!("{} {}", windows[i].describe(), windows[i].record.name()));
    (InForce { mode, by, window, next }, wake)
}

struct CameraMode {
    configured: RecordMode,
    windows: Vec<ScheduleWindow>,
    /// Whether it may record in `events` mode: then its continuous footage is marked.
    events: bool,
    over: Option<Override>,
    wake: Option<UnixMs>,
    tx: watch::Sender<InForce>,
}

impl CameraMode {
    fn new(camera: &CameraConfig) -> Self {
        Self {
            configured: camera.record,
            windows: camera.schedule.clone(),
            events: camera.may_record_events(),
            over: None,
            wake: None,
            tx: watch::channel(InForce::configured(camera.record)).0,
        }
    }

    /// Evaluates the mode at `now`; when it changed (or `always`), the window of continuous
    /// recording to mark for retention: `Some(None)` none, `Some(Some(until))` one until then.
    fn refresh(&mut self, tz: &TimeZone, now: UnixMs, always: bool) -> Option<Option<i64>> {
        let (mode, wake) = in_force((self.configured, &self.windows), self.over.as_ref(), tz, now);
        self.wake = wake;
        let forced =
            (self.events && mode.mode == RecordMode::Continuous).then(|| mode.next.map_or(i64::MAX, |(at, _)| at.0));
        let changed = self.tx.send_if_modified(|current| {
            let changed = *current != mode;
            *current = mode;
            changed
        });
        (changed || always).then_some(forced)
    }
}

struct Modes {
    tz: TimeZone,
    cameras: BTreeMap<String, CameraMode>,
}

/// The modes of every camera; cheap to clone.
#[derive(Clone)]
pub struct RecordModes {
    inner: Arc<Mutex<Modes>>,
    store: Store,
    changed: Arc<Notify>,
}

/// Marks of continuous recording to write: per camera, close what is open and maybe open one.
type Marks = Vec<(String, Option<i64>)>;

fn parse_mode(name: &str) -> Option<RecordMode> {
    match name {
        "continuous" => Some(RecordMode::Continuous),
        "events" => Some(RecordMode::Events),
        "off" => Some(RecordMode::Off),
        _ => None,
    }
}

fn load_overrides(conn: &Connection) -> rusqlite::Result<Vec<(String, Override)>> {
    let mut stmt = conn.prepare("SELECT camera, mode, until_ms FROM record_overrides")?;
    let rows =
        stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, Option<i64>>(2)?)))?;
    let mut out = Vec::new();
    for row in rows {
        let (camera, mode, until) = row?;
        if let Some(mode) = parse_mode(&mode) {
            out.push((camera, Override { mode, until: until.map(UnixMs) }));
        }
    }
    Ok(out)
}

/// Keeps `camera`'s override row in step (`None`: none).
fn store_override(conn: &Connection, camera: &str, over: Option<Override>, now: UnixMs) -> rusqlite::Result<()> {
    match over {
        None => conn.execute("DELETE FROM record_overrides WHERE camera = ?1", [camera]).map(drop),
        Some(o) => conn
            .execute(
                "INSERT INTO record_overrides (camera, mode, set_ms, until_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (camera) DO UPDATE SET mode = ?2, set_ms = ?3, until_ms = ?4",
                params![camera, o.mode.name(), now.0, o.until.map(|u| u.0)],
            )
            .map(drop),
    }
}

/// Marks the windows in which cameras that may record `events` recorded continuously (their
/// retention keeps these `retain_days`): the open ones close at `now`, a new one opens until
/// its planned end.
fn store_marks(conn: &Connection, marks: &Marks, now: UnixMs) -> rusqlite::Result<()> {
    for (camera, open) in marks {
        conn.execute("UPDATE record_windows SET to_ms = ?2 WHERE camera = ?1 AND to_ms > ?2", params![camera, now.0])?;
        if let Some(until) = open {
            conn.execute(
                "INSERT INTO record_windows (camera, from_ms, to_ms) VALUES (?1, ?2, ?3)",
                params![camera, now.0, until],
            )?;
        }
    }
    Ok(())
}

impl RecordModes {
    /// The modes of `config`'s cameras at `now`, with the overrides the index holds (expired
    /// ones dropped), the marks of continuous recording brought up to date.
    pub async fn load(store: Store, config: &Config, now: UnixMs) -> Result<Self> {
        let overrides: BTreeMap<String, Override> = store.call(load_overrides).await?.into_iter().collect();
        let mut cameras = BTreeMap::new();
        for camera in &config.cameras {
            let mut entry = CameraMode::new(camera);
            entry.over = overrides.get(&camera.id).copied();
            cameras.insert(camera.id.clone(), entry);
        }
        let inner = Arc::new(Mutex::new(Modes { tz: config.node.time_zone(), cameras }));
        let modes = Self { inner, store, changed: Arc::default() };
        modes.expire(now).await;
        let marks = modes.refresh(now, true);
        modes.mark(marks, now).await;
        Ok(modes)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Modes> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The mode `camera`'s supervisor follows.
    pub fn watch(&self, camera: &str) -> Option<watch::Receiver<InForce>> {
        self.lock().cameras.get(camera).map(|c| c.tx.subscribe())
    }

    /// The mode in force for `camera`.
    pub fn current(&self, camera: &str) -> Option<RecordMode> {
        self.lock().cameras.get(camera).map(|c| c.tx.borrow().mode)
    }

    /// Evaluates every camera at `now`; the marks to write for those whose mode changed.
    fn refresh(&self, now: UnixMs, always: bool) -> Marks {
        let mut modes = self.lock();
        let Modes { tz, cameras } = &mut *modes;
        cameras.iter_mut().filter_map(|(id, c)| c.refresh(tz, now, always).map(|open| (id.clone(), open))).collect()
    }

    async fn mark(&self, marks: Marks, now: UnixMs) {
        if marks.is_empty() {
            return;
        }
        if let Err(e) = self.store.call(move |conn| store_marks(conn, &marks, now)).await {
            tracing::error!(error = %e, "windows of continuous recording not marked");
        }
    }

    /// Overrides `camera`'s mode from `now` for `duration` (or until the next command); the
    /// mode its schedule (or `record`) gives now, without a duration, clears the override.
    /// Returns the reply's result.
    pub async fn set(
        &self,
        camera: &str,
        mode: RecordMode,
        duration: Option<std::time::Duration>,
        now: UnixMs,
    ) -> Result<serde_json::Value> {
        let (configured, over) = {
            let modes = self.lock();
            let Some(entry) = modes.cameras.get(camera) else { anyhow::bail!("no camera {camera:?}") };
            let until = duration.map(|d| UnixMs(now.0 + d.as_millis() as i64));
            let planned = scheduled(entry.configured, &entry.windows, &modes.tz, now).0;
            (entry.configured, (until.is_some() || mode != planned).then_some(Override { mode, until }))
        };
        let id = camera.to_string();
        self.store.call(move |conn| store_override(conn, &id, over, now)).await?;
        if let Some(entry) = self.lock().cameras.get_mut(camera) {
            entry.over = over;
        }
        let marks = self.refresh(now, false);
        self.mark(marks, now).await;
        self.changed.notify_one();
        Ok(serde_json::json!({
            "camera": camera,
            "mode": self.current(camera).unwrap_or(mode).name(),
            "configured": configured.name(),
            "until": over.and_then(|o| o.until).map(UnixMs::to_rfc3339),
        }))
    }

    /// Ends the overrides that expired by `now`.
    async fn expire(&self, now: UnixMs) {
        let expired: Vec<String> = self
            .lock()
            .cameras
            .iter()
            .filter(|(_, c)| c.over.is_some_and(|o| o.until.is_some_and(|u| u <= now)))
            .map(|(id, _)| id.clone())
            .collect();
        for camera in expired {
            let id = camera.clone();
            if let Err(e) = self.store.call(move |conn| store_override(conn, &id, None, now)).await {
                tracing::error!(camera = %camera, error = %e, "expired recording override not cleared");
                continue;
            }
            tracing::info!(camera = %camera, "recording override expired");
            if let Some(entry) = self.lock().cameras.get_mut(&camera) {
                entry.over = None;
            }
        }
    }

    /// Cameras of a new config: modes follow their `record`, schedule and the node's time
    /// zone; overrides of removed cameras go. A camera that may now record `events` and
    /// could not before keeps what it recorded so far as continuous footage.
    pub async fn configure(&self, config: &Config, now: UnixMs) {
        let (removed, mut marks) = {
            let mut modes = self.lock();
            modes.tz = config.node.time_zone();
            let removed: Vec<String> =
                modes.cameras.keys().filter(|id| !config.cameras.iter().any(|c| c.id == **id)).cloned().collect();
            let mut marks = Marks::new();
            for id in &removed {
                modes.cameras.remove(id);
                marks.push((id.clone(), None));
            }
            for camera in &config.cameras {
                let entry = modes.cameras.entry(camera.id.clone()).or_insert_with(|| CameraMode::new(camera));
                let events = camera.may_record_events();
                if events && !entry.events {
                    tracing::info!(camera = %camera.id, "may record events now: footage so far kept as continuous");
                    marks.push((camera.id.clone(), Some(0)));
                }
                (entry.configured, entry.windows, entry.events) = (camera.record, camera.schedule.clone(), events);
            }
            (removed, marks)
        };
        if let Err(e) = self.store.call(move |conn| mark_so_far(conn, &marks, now)).await {
            tracing::warn!(error = %e, "footage so far not marked as continuous");
        }
        for camera in removed {
            let id = camera.clone();
            if let Err(e) = self.store.call(move |conn| store_override(conn, &id, None, now)).await {
                tracing::warn!(camera = %camera, error = %e, "override of a removed camera not cleared");
            }
        }
        marks = self.refresh(now, false);
        self.mark(marks, now).await;
        self.changed.notify_one();
    }

    /// Follows the clock until the task is dropped: ends overrides when they expire, moves
    /// modes at window edges, and looks again at once after a wall-clock step.
    pub async fn run(self, mut steps: watch::Receiver<Steps>) {
        let mut steps_open = true;
        loop {
            let next = self.lock().cameras.values().filter_map(|c| c.wake).min();
            let wait = next.map_or(MAX_SLEEP, |at| Duration::from_millis((at.0 - UnixMs::now().0).max(0) as u64));
            tokio::select! {
                () = tokio::time::sleep(wait.min(MAX_SLEEP)) => {}
                () = self.changed.notified() => continue,
                changed = steps.changed(), if steps_open => {
                    steps_open = changed.is_ok();
                    tracing::info!("the wall clock was stepped: schedules evaluated again");
                }
            }
            let now = UnixMs::now();
            self.expire(now).await;
            let marks = self.refresh(now, false);
            self.mark(marks, now).await;
        }
    }
}

/// For cameras that may now record `events`: (camera, `Some(0)`) marks everything they
/// recorded before `now` as continuous; (camera, `None`), a removed camera, closes its marks.
fn mark_so_far(conn: &Connection, marks: &Marks, now: UnixMs) -> rusqlite::Result<()> {
    for (camera, so_far) in marks {
        match so_far {
            Some(_) => conn
                .execute(
                    "INSERT INTO record_windows (camera, from_ms, to_ms) VALUES (?1, 0, ?2)",
                    params![camera, now.0],
                )
                .map(drop)?,
            None => store_marks(conn, &vec![(camera.clone(), None)], now)?,
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "modes_tests.rs"]
mod tests;
