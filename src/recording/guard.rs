//! The storage guard, the sweeper's task. Once a second it measures free
//! space; it sweeps on the timer, or sooner when the write rate would cross
//! the floor; when only locked footage is left and the disk is about to fill
//! it pauses the least important recorder (one event, a retained state that
//! says why) and resumes it once there is room; it announces
//! `storage_pressure` once per episode. Its memory outlives a reload.

use super::floor::{FloorAction, FloorKeeper};
use super::sweeper::{SweepReport, Sweeper};
use crate::outbox::{EventSink, EventType, NewEvent};
use crate::wallclock::UnixMs;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Why a paused camera does not record, in its state and events.
pub const PAUSED_REASON: &str = "storage full: only locked footage is left";

/// What the guard keeps across reloads; cheap to clone.
#[derive(Clone)]
pub struct StorageGuard {
    keeper: Arc<Mutex<FloorKeeper>>,
    pauses: watch::Sender<BTreeSet<String>>,
    pressure: Arc<AtomicBool>,
    sweep_now: Arc<tokio::sync::Notify>,
}

impl Default for StorageGuard {
    fn default() -> Self {
        Self {
            keeper: Arc::default(),
            pauses: watch::Sender::new(BTreeSet::new()),
            pressure: Arc::default(),
            sweep_now: Arc::default(),
        }
    }
}

impl StorageGuard {
    /// The cameras paused for storage; each camera's supervisor watches it.
    pub fn pauses(&self) -> watch::Receiver<BTreeSet<String>> {
        self.pauses.subscribe()
    }

    /// Footage was unlocked: paused recorders may resume, and a sweep runs at once.
    pub fn wake(&self) {
        self.keeper().unlocked();
        self.sweep_now.notify_one();
    }

    fn keeper(&self) -> std::sync::MutexGuard<'_, FloorKeeper> {
        self.keeper.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Guards storage with `sweeper` until aborted; sweeps at least every `interval`.
    pub async fn run(self, sweeper: Sweeper, events: EventSink, interval: Duration) {
        let cameras = sweeper.recording_cameras().to_vec();
        self.keeper().retain(&cameras);
        self.pauses.send_if_modified(|paused| {
            let before = paused.len();
            paused.retain(|c| cameras.contains(c));
            paused.len() != before
        });
        let started = Instant::now();
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_sweep: Option<Instant> = None;
        let mut short = false;
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                () = self.sweep_now.notified() => last_sweep = None,
            }
            let at = started.elapsed().as_millis() as i64;
            let (free, total) = match sweeper.measure().await {
                Ok(space) => space,
                Err(e) => {
                    tracing::error!(error = format!("{e:#}"), "free space not measured");
                    continue;
                }
            };
            // Nothing recorded yet (no recordings directory): only the timer sweeps.
            let watched = total > 0;
            if watched {
                self.keeper().observe(at, free);
            }
            let by_rate = watched && {
                let keeper = self.keeper();
                keeper.wants_sweep(at, free, sweeper.floor(total)) || keeper.wants_fresh_sweep(at, free, &cameras)
            };
            let free = if by_rate || last_sweep.is_none_or(|t| t.elapsed() >= interval) {
                last_sweep = Some(Instant::now());
                short = self.sweep(&sweeper, at).await.unwrap_or(short);
                sweeper.measure().await.map_or(free, |(free, _)| free)
            } else {
                free
            };
            if watched {
                let action = self.keeper().decide(at, free, &cameras);
                self.act(action, &events, free).await;
            }
            let pressing = short || !self.keeper().paused().is_empty();
            self.announce_pressure(pressing, &sweeper, &events).await;
        }
    }

    /// One sweep, ahead of the write rate; whether storage is short of its floor after it.
    async fn sweep(&self, sweeper: &Sweeper, at: i64) -> Option<bool> {
        let ahead = self.keeper().ahead();
        let report = match sweeper.sweep_ahead(UnixMs::now(), ahead).await {
            Ok(report) => report,
            Err(e) => {
                tracing::error!(error = format!("{e:#}"), "retention sweep failed");
                return None;
            }
        };
        let SweepReport { aged, for_space, freed, short, stuck } = report;
        if aged + for_space > 0 {
            tracing::info!(aged, for_space, freed, "retention swept");
        }
        self.keeper().swept(at, stuck, freed);
        Some(short)
    }

    /// Announces `storage_pressure` when an episode starts: storage short of its floor with
    /// only locked footage left, or a recorder paused for it. Once until both are over.
    async fn announce_pressure(&self, pressing: bool, sweeper: &Sweeper, events: &EventSink) {
        if !self.pressure.swap(pressing, Ordering::Relaxed) && pressing {
            tracing::warn!("storage short and only locked or in-use footage is left");
            let (free, total) = sweeper.measure().await.unwrap_or((0, 0));
            let event = NewEvent::new(EventType::StoragePressure, None, UnixMs::now())
                .with("free_bytes", free)
                .with("total_bytes", total)
                .with("min_free_percent", sweeper.min_free_percent());
            if let Err(e) = events.emit(event).await {
                tracing::error!(error = %e, "storage_pressure not stored");
            }
        }
    }

    /// Pauses or resumes recorders, with one event each.
    async fn act(&self, action: Option<FloorAction>, events: &EventSink, free: u64) {
        let (kind, cameras) = match action {
            None => return,
            Some(FloorAction::Pause(camera)) => {
                tracing::warn!(camera = %camera, free_bytes = free, "disk about to fill with locked footage: recorder paused");
                self.pauses.send_modify(|paused| {
                    paused.insert(camera.clone());
                });
                (EventType::RecordingPaused, vec![camera])
            }
            Some(FloorAction::Resume(cameras)) => {
                tracing::info!(cameras = ?cameras, free_bytes = free, "room again: recorders resumed");
                self.pauses.send_modify(|paused| paused.retain(|c| !cameras.contains(c)));
                (EventType::RecordingResumed, cameras)
            }
        };
        for camera in cameras {
            let mut event = NewEvent::new(kind, Some(&camera), UnixMs::now()).with("free_bytes", free);
            if kind == EventType::RecordingPaused {
                event = event.with("reason", PAUSED_REASON);
            }
            if let Err(e) = events.emit(event).await {
                tracing::error!(camera = %camera, error = %e, "{} not stored", kind.as_str());
            }
        }
    }
}
