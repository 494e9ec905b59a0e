//! Recording modes in force: each camera's configured `record`, unless a
//! `record` command overrides it, for a while or until the next one. Overrides
//! are kept in the index, so they survive a restart until they expire. Each
//! camera's supervisor watches its mode.

use crate::config::schema::{CameraConfig, RecordMode};
use crate::store::Store;
use crate::wallclock::UnixMs;
use anyhow::Result;
use rusqlite::{Connection, params};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{Notify, watch};

/// A `record` command's override.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Override {
    /// The mode it forces.
    pub mode: RecordMode,
    /// When the configured mode comes back; `None`: at the next `record` command.
    pub until: Option<UnixMs>,
}

/// The mode in force at `now`: the override while it lasts, else the configured one.
pub fn effective(configured: RecordMode, over: Option<&Override>, now: UnixMs) -> RecordMode {
    match over {
        Some(o) if o.until.is_none_or(|until| now < until) => o.mode,
        _ => configured,
    }
}

/// Whether an `events` camera is made to keep everything (its footage is then kept for `retain_days`).
fn forced_continuous(configured: RecordMode, mode: RecordMode) -> bool {
    configured == RecordMode::Events && mode == RecordMode::Continuous
}

struct CameraMode {
    configured: RecordMode,
    over: Option<Override>,
    tx: watch::Sender<RecordMode>,
}

/// The modes of every camera; cheap to clone.
#[derive(Clone)]
pub struct RecordModes {
    cameras: Arc<Mutex<BTreeMap<String, CameraMode>>>,
    store: Store,
    changed: Arc<Notify>,
}

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

/// Closes `camera`'s open windows of forced continuous recording at `now`.
fn close_windows(conn: &Connection, camera: &str, now: UnixMs) -> rusqlite::Result<usize> {
    conn.execute("UPDATE record_windows SET to_ms = ?2 WHERE camera = ?1 AND to_ms > ?2", params![camera, now.0])
}

/// Keeps the index in step with one camera's override: the row, and its window of forced
/// continuous recording (closed at `now`, reopened when the new override forces one).
fn store_override(
    conn: &Connection,
    camera: &str,
    configured: RecordMode,
    over: Option<Override>,
    now: UnixMs,
) -> rusqlite::Result<()> {
    close_windows(conn, camera, now)?;
    match over {
        None => {
            conn.execute("DELETE FROM record_overrides WHERE camera = ?1", [camera])?;
        }
        Some(o) => {
            conn.execute(
                "INSERT INTO record_overrides (camera, mode, set_ms, until_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (camera) DO UPDATE SET mode = ?2, set_ms = ?3, until_ms = ?4",
                params![camera, o.mode.name(), now.0, o.until.map(|u| u.0)],
            )?;
            if forced_continuous(configured, o.mode) {
                conn.execute(
                    "INSERT INTO record_windows (camera, from_ms, to_ms) VALUES (?1, ?2, ?3)",
                    params![camera, now.0, o.until.map_or(i64::MAX, |u| u.0)],
                )?;
            }
        }
    }
    Ok(())
}

impl RecordModes {
    /// The modes of `cameras` at `now`, with the overrides the index holds (expired ones dropped).
    pub async fn load(store: Store, cameras: &[CameraConfig], now: UnixMs) -> Result<Self> {
        let overrides: BTreeMap<String, Override> = store.call(load_overrides).await?.into_iter().collect();
        let modes = Self { cameras: Arc::default(), store, changed: Arc::default() };
        {
            let mut map = modes.lock();
            for camera in cameras {
                let over = overrides.get(&camera.id).copied();
                let mode = effective(camera.record, over.as_ref(), now);
                map.insert(
                    camera.id.clone(),
                    CameraMode { configured: camera.record, over, tx: watch::channel(mode).0 },
                );
            }
        }
        modes.expire(now).await;
        Ok(modes)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, CameraMode>> {
        self.cameras.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The mode `camera`'s supervisor follows.
    pub fn watch(&self, camera: &str) -> Option<watch::Receiver<RecordMode>> {
        self.lock().get(camera).map(|c| c.tx.subscribe())
    }

    /// The mode in force for `camera`.
    pub fn current(&self, camera: &str) -> Option<RecordMode> {
        self.lock().get(camera).map(|c| *c.tx.borrow())
    }

    /// Overrides `camera`'s mode from `now` for `duration` (or until the next command); the
    /// configured mode without a duration clears the override. Returns the reply's result.
    pub async fn set(
        &self,
        camera: &str,
        mode: RecordMode,
        duration: Option<std::time::Duration>,
        now: UnixMs,
    ) -> Result<serde_json::Value> {
        let (configured, over) = {
            let map = self.lock();
            let Some(entry) = map.get(camera) else { anyhow::bail!("no camera {camera:?}") };
            let until = duration.map(|d| UnixMs(now.0 + d.as_millis() as i64));
            let over = (until.is_some() || mode != entry.configured).then_some(Override { mode, until });
            (entry.configured, over)
        };
        let id = camera.to_string();
        self.store.call(move |conn| store_override(conn, &id, configured, over, now)).await?;
        if let Some(entry) = self.lock().get_mut(camera) {
            entry.over = over;
            entry.tx.send_if_modified(|current| {
                std::mem::replace(current, effective(configured, over.as_ref(), now)) != *current
            });
        }
        self.changed.notify_one();
        Ok(serde_json::json!({
            "camera": camera,
            "mode": effective(configured, over.as_ref(), now).name(),
            "configured": configured.name(),
            "until": over.and_then(|o| o.until).map(UnixMs::to_rfc3339),
        }))
    }

    /// Ends the overrides that expired by `now`.
    async fn expire(&self, now: UnixMs) {
        let expired: Vec<(String, RecordMode)> = self
            .lock()
            .iter()
            .filter(|(_, c)| c.over.is_some_and(|o| o.until.is_some_and(|u| u <= now)))
            .map(|(id, c)| (id.clone(), c.configured))
            .collect();
        for (camera, configured) in expired {
            let id = camera.clone();
            if let Err(e) = self.store.call(move |conn| store_override(conn, &id, configured, None, now)).await {
                tracing::error!(camera = %camera, error = %e, "expired recording override not cleared");
                continue;
            }
            tracing::info!(camera = %camera, mode = configured.name(), "recording override expired");
            if let Some(entry) = self.lock().get_mut(&camera) {
                entry.over = None;
                entry.tx.send_if_modified(|current| std::mem::replace(current, configured) != *current);
            }
        }
    }

    /// Cameras of a new config: modes follow their `record`, overrides of removed cameras go.
    pub async fn configure(&self, cameras: &[CameraConfig], now: UnixMs) {
        let removed: Vec<String> = {
            let mut map = self.lock();
            let removed: Vec<String> = map.keys().filter(|id| !cameras.iter().any(|c| c.id == **id)).cloned().collect();
            for id in &removed {
                map.remove(id);
            }
            for camera in cameras {
                let entry = map.entry(camera.id.clone()).or_insert_with(|| CameraMode {
                    configured: camera.record,
                    over: None,
                    tx: watch::channel(camera.record).0,
                });
                entry.configured = camera.record;
                let mode = effective(entry.configured, entry.over.as_ref(), now);
                entry.tx.send_if_modified(|current| std::mem::replace(current, mode) != *current);
            }
            removed
        };
        for camera in removed {
            let id = camera.clone();
            if let Err(e) = self.store.call(move |conn| store_override(conn, &id, RecordMode::Off, None, now)).await {
                tracing::warn!(camera = %camera, error = %e, "override of a removed camera not cleared");
            }
        }
        self.changed.notify_one();
    }

    /// Ends overrides when they expire, until the task is dropped.
    pub async fn run(self) {
        loop {
            let next = self.lock().values().filter_map(|c| c.over.and_then(|o| o.until)).min();
            let wait = match next {
                Some(until) => std::time::Duration::from_millis((until.0 - UnixMs::now().0).max(0) as u64),
                None => std::time::Duration::from_secs(3600),
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => self.expire(UnixMs::now()).await,
                () = self.changed.notified() => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_override_holds_until_it_expires() {
        let over = Override { mode: RecordMode::Off, until: Some(UnixMs(1000)) };
        assert_eq!(effective(RecordMode::Continuous, Some(&over), UnixMs(999)), RecordMode::Off);
        assert_eq!(effective(RecordMode::Continuous, Some(&over), UnixMs(1000)), RecordMode::Continuous);
        let open = Override { mode: RecordMode::Events, until: None };
        assert_eq!(effective(RecordMode::Continuous, Some(&open), UnixMs(i64::MAX)), RecordMode::Events);
        assert_eq!(effective(RecordMode::Events, None, UnixMs(0)), RecordMode::Events);
    }

    #[test]
    fn forcing_an_events_camera_to_record_opens_a_window_closed_by_the_next_change() {
        let conn = crate::store::migrations::in_memory();
        let on = Override { mode: RecordMode::Continuous, until: Some(UnixMs(5000)) };
        store_override(&conn, "cam", RecordMode::Events, Some(on), UnixMs(1000)).expect("store");
        store_override(&conn, "cam", RecordMode::Events, None, UnixMs(3000)).expect("clear");
        let windows: Vec<(i64, i64)> = conn
            .prepare("SELECT from_ms, to_ms FROM record_windows")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(windows, [(1000, 3000)]);
        assert!(load_overrides(&conn).unwrap().is_empty());
        let off = Override { mode: RecordMode::Off, until: None };
        store_override(&conn, "cam", RecordMode::Continuous, Some(off), UnixMs(4000)).expect("store");
        assert_eq!(load_overrides(&conn).unwrap(), [("cam".to_string(), off)]);
    }
}
