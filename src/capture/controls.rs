//! What holds or ends a camera's recording: the service stopping, the recording
//! mode (`off`), and a pause by the storage guard.

use crate::config::schema::RecordMode;
use crate::recording::guard::PAUSED_REASON;
use std::collections::BTreeSet;
use tokio::sync::watch;

/// Why a camera does not record now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hold {
    /// Its recording mode is `off`.
    Off,
    /// The storage guard paused it.
    Storage,
}

impl Hold {
    /// Why, for the log and the timeline.
    pub fn why(self) -> &'static str {
        match self {
            Self::Off => "recording off",
            Self::Storage => PAUSED_REASON,
        }
    }
}

/// What `Controls::next` saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// The service stops the camera.
    Stop,
    /// The mode or the pauses changed: see `held`.
    Changed,
}

/// The receivers a camera's supervisor watches.
pub struct Controls {
    /// Turns true when the service stops the camera.
    pub stop: watch::Receiver<bool>,
    /// The recording mode in force.
    pub mode: watch::Receiver<RecordMode>,
    /// The cameras the storage guard paused.
    pub pauses: watch::Receiver<BTreeSet<String>>,
    mode_open: bool,
}

impl Controls {
    /// Controls from the three receivers.
    pub fn new(
        stop: watch::Receiver<bool>,
        mode: watch::Receiver<RecordMode>,
        pauses: watch::Receiver<BTreeSet<String>>,
    ) -> Self {
        Self { stop, mode, pauses, mode_open: true }
    }

    /// Why `camera` should not record now; `None` when it should. Marks both seen.
    pub fn held(&mut self, camera: &str) -> Option<Hold> {
        let off = *self.mode.borrow_and_update() == RecordMode::Off;
        let paused = self.pauses.borrow_and_update().contains(camera);
        match (off, paused) {
            (true, _) => Some(Hold::Off),
            (false, true) => Some(Hold::Storage),
            (false, false) => None,
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
        }
    }

    /// Whether the service asked the camera to stop.
    pub fn stopping(&self) -> bool {
        *self.stop.borrow()
    }
}
