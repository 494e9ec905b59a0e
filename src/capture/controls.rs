//! What holds or ends a camera's recording: the service stopping, the recording
//! mode (`off`, as configured, commanded or scheduled), and a pause by the
//! storage guard; and whether its sampler wants frames, which a camera takes
//! from its source whether it records or not.

use super::modes::{By, InForce};
use crate::config::schema::RecordMode;
use crate::recording::guard::PAUSED_REASON;
use std::collections::BTreeSet;
use tokio::sync::watch;

/// Why a camera does not record now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hold {
    /// Its recording mode is `off` (configured, or by a `record` command).
    Off,
    /// Its schedule says `off` now.
    Schedule,
    /// The storage guard paused it.
    Storage,
}

impl Hold {
    /// Why, for the log.
    pub fn why(self) -> &'static str {
        match self {
            Self::Off => "recording off",
            Self::Schedule => "schedule",
            Self::Storage => PAUSED_REASON,
        }
    }

    /// Why, for the timeline (the reason of the gap it leaves).
    pub fn gap_reason(self) -> &'static str {
        match self {
            Self::Off => "recording turned off",
            Self::Schedule => "schedule",
            Self::Storage => PAUSED_REASON,
        }
    }
}

/// What `Controls::next` saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// The service stops the camera.
    Stop,
    /// The mode, the pauses or the sampling rate changed: see `held` and `wants_frames`.
    Changed,
}

/// The receivers a camera's supervisor watches.
pub struct Controls {
    /// Turns true when the service stops the camera.
    pub stop: watch::Receiver<bool>,
    /// The recording mode in force.
    pub mode: watch::Receiver<InForce>,
    /// The cameras the storage guard paused.
    pub pauses: watch::Receiver<BTreeSet<String>>,
    /// The sampler's planned rate, when the camera is sampled.
    pub frames: Option<watch::Receiver<f64>>,
    mode_open: bool,
}

impl Controls {
    /// Controls from the receivers.
    pub fn new(
        stop: watch::Receiver<bool>,
        mode: watch::Receiver<InForce>,
        pauses: watch::Receiver<BTreeSet<String>>,
        frames: Option<watch::Receiver<f64>>,
    ) -> Self {
        Self { stop, mode, pauses, frames, mode_open: true }
    }

    /// Whether the camera's sampler wants frames now (a worker takes them). Marks it seen.
    pub fn wants_frames(&mut self) -> bool {
        self.frames.as_mut().is_some_and(|rate| *rate.borrow_and_update() > 0.0)
    }

    /// Why `camera` should not record now; `None` when it should. Marks both seen.
    pub fn held(&mut self, camera: &str) -> Option<Hold> {
        let (off, scheduled) = {
            let mode = self.mode.borrow_and_update();
            (mode.mode == RecordMode::Off, mode.by == By::Schedule)
        };
        let paused = self.pauses.borrow_and_update().contains(camera);
        match (off, scheduled, paused) {
            (true, true, _) => Some(Hold::Schedule),
            (true, false, _) => Some(Hold::Off),
            (false, _, true) => Some(Hold::Storage),
            (false, _, false) => None,
        }
    }

    /// Resolves when the service stops the camera, or the mode or the pauses change.
    pub async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = self.stop.wait_for(|s| *s) => Signal::Stop,
            changed = self.mode.changed(), if self.mode_open => {
                self.mode_open = changed.is_ok();
                Signal::Changed
            }
            Ok(()) = self.pauses.changed() => Signal::Changed,
            Some(Ok(())) = rate_changed(&mut self.frames) => Signal::Changed,
        }
    }

    /// The mode in force, as last seen.
    pub fn in_force(&self) -> InForce {
        self.mode.borrow().clone()
    }

    /// Whether the service asked the camera to stop.
    pub fn stopping(&self) -> bool {
        *self.stop.borrow()
    }
}

async fn rate_changed(rate: &mut Option<watch::Receiver<f64>>) -> Option<Result<(), watch::error::RecvError>> {
    match rate {
        Some(rate) => Some(rate.changed().await),
        None => std::future::pending().await,
    }
}
