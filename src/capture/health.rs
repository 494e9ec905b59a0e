//! A camera's health over time: its state, when it went offline and came
//! back, and the holes in its timeline. Pure; the supervisor feeds it what
//! ffmpeg did and the clock, and turns what it returns into events.

use crate::wallclock::UnixMs;

/// Missing time below this between two segments is rounding, not a gap.
pub const GAP_TOLERANCE_MS: i64 = 2000;

/// The `state` of `P/cameras/<cam>/state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CameraState {
    /// Started, no data yet.
    Connecting,
    /// Data flows and segments are written.
    Recording,
    /// The source failed; retrying.
    Offline,
    /// `record = "off"`.
    Disabled,
    /// Paused by the storage guard: the disk was about to fill with locked footage.
    Paused,
}

impl CameraState {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connecting => "connecting",
            Self::Recording => "recording",
            Self::Offline => "offline",
            Self::Disabled => "disabled",
            Self::Paused => "paused",
        }
    }
}

/// What a change of health means for the outside world.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HealthEvent {
    /// Data flows again after an announced outage.
    Online,
    /// The camera stopped delivering (once per outage, whatever the retries).
    Offline {
        /// The last error ffmpeg gave, or why it was stopped.
        reason: String,
    },
    /// A hole in the recorded timeline.
    Gap {
        /// End of the last segment before it.
        start: UnixMs,
        /// Start of the first segment after it.
        end: UnixMs,
        /// Why.
        reason: String,
    },
}

/// The health of one camera.
#[derive(Clone, Debug)]
pub struct CameraHealth {
    state: CameraState,
    since: UnixMs,
    offline_announced: bool,
    gap_from: Option<(UnixMs, String)>,
    last_error: Option<String>,
    last_segment_end: Option<UnixMs>,
    reconnects: u64,
}

impl CameraHealth {
    /// A camera starting at `now`; `last_indexed_end` is where its timeline stopped before.
    pub fn new(now: UnixMs, last_indexed_end: Option<UnixMs>, disabled: bool) -> Self {
        Self {
            state: if disabled { CameraState::Disabled } else { CameraState::Connecting },
            since: now,
            offline_announced: false,
            gap_from: last_indexed_end
                .map(|end| (end, "not recording (service stopped or camera disabled)".to_string())),
            last_error: None,
            last_segment_end: last_indexed_end,
            reconnects: 0,
        }
    }

    /// Current state.
    pub fn state(&self) -> CameraState {
        self.state
    }

    /// When the current state began.
    pub fn since(&self) -> UnixMs {
        self.since
    }

    /// Restarts of the source after failures.
    pub fn reconnects(&self) -> u64 {
        self.reconnects
    }

    /// End of the latest indexed segment.
    pub fn last_segment_end(&self) -> Option<UnixMs> {
        self.last_segment_end
    }

    /// The last error the source gave.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    fn set_state(&mut self, state: CameraState, now: UnixMs) -> bool {
        let changed = self.state != state;
        if changed {
            self.state = state;
            self.since = now;
        }
        changed
    }

    /// ffmpeg reported an error line; remembered as the reason of a coming failure.
    pub fn on_error(&mut self, message: &str) {
        self.last_error = Some(message.chars().take(300).collect());
    }

    /// Frames flow (progress advanced). Returns `Online` when an outage ends.
    pub fn on_data(&mut self, now: UnixMs) -> Vec<HealthEvent> {
        let mut events = Vec::new();
        if self.set_state(CameraState::Recording, now) {
            self.last_error = None;
            if std::mem::take(&mut self.offline_announced) {
                events.push(HealthEvent::Online);
            }
        }
        events
    }

    /// A segment `[start, end)` closed and was indexed. Returns a `Gap` when one ends here.
    pub fn on_segment(&mut self, start: UnixMs, end: UnixMs) -> Vec<HealthEvent> {
        let mut events = self.on_data(end);
        if let Some((from, reason)) = self.gap_from.take()
            && start.0 - from.0 > GAP_TOLERANCE_MS
        {
            events.push(HealthEvent::Gap { start: from, end: start, reason });
        }
        self.last_segment_end = Some(end);
        events
    }

    /// Recording was turned off at `now` for `reason` (`record = "off"`, a `record` command,
    /// the schedule): the timeline has a gap from here until recording comes back.
    pub fn on_disabled(&mut self, now: UnixMs, reason: &str) {
        if self.gap_from.is_none() {
            self.gap_from = Some((self.last_segment_end.unwrap_or(now), reason.to_string()));
        }
        self.offline_announced = false;
        self.last_error = None;
        self.set_state(CameraState::Disabled, now);
    }

    /// The storage guard paused recording at `now` for `why`: a gap from here, and `why`
    /// in the camera's state.
    pub fn on_paused(&mut self, now: UnixMs, why: &str) {
        if self.gap_from.is_none() {
            self.gap_from = Some((self.last_segment_end.unwrap_or(now), why.to_string()));
        }
        self.offline_announced = false;
        self.last_error = Some(why.to_string());
        self.set_state(CameraState::Paused, now);
    }

    /// Recording was turned back on (or resumed) at `now`.
    pub fn on_enabled(&mut self, now: UnixMs) {
        if matches!(self.state, CameraState::Disabled | CameraState::Paused) {
            self.last_error = None;
            self.set_state(CameraState::Connecting, now);
        }
    }

    /// The source ended or was stopped at `now` for `why` (its last error is preferred).
    pub fn on_failure(&mut self, now: UnixMs, why: &str) -> Vec<HealthEvent> {
        let reason = self.last_error.clone().unwrap_or_else(|| why.to_string());
        if self.state == CameraState::Recording {
            self.reconnects += 1;
        }
        if self.gap_from.is_none() {
            self.gap_from = Some((self.last_segment_end.unwrap_or(now), reason.clone()));
        }
        self.set_state(CameraState::Offline, now);
        if self.offline_announced {
            return Vec::new();
        }
        self.offline_announced = true;
        vec![HealthEvent::Offline { reason }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_data_makes_it_recording_without_an_online_event() {
        let mut h = CameraHealth::new(UnixMs(0), None, false);
        assert_eq!(h.state(), CameraState::Connecting);
        assert!(h.on_data(UnixMs(500)).is_empty());
        assert_eq!((h.state(), h.since()), (CameraState::Recording, UnixMs(500)));
    }

    #[test]
    fn one_offline_event_per_outage_however_many_retries() {
        let mut h = CameraHealth::new(UnixMs(0), None, false);
        h.on_segment(UnixMs(0), UnixMs(10_000));
        h.on_error("Connection refused");
        let first = h.on_failure(UnixMs(12_000), "ffmpeg exited");
        assert_eq!(first, [HealthEvent::Offline { reason: "Connection refused".into() }]);
        assert!(h.on_failure(UnixMs(14_000), "ffmpeg exited").is_empty());
        assert!(h.on_failure(UnixMs(18_000), "ffmpeg exited").is_empty());
        assert_eq!(h.reconnects(), 1);
        let back = h.on_segment(UnixMs(30_000), UnixMs(40_000));
        assert_eq!(
            back,
            [
                HealthEvent::Online,
                HealthEvent::Gap { start: UnixMs(10_000), end: UnixMs(30_000), reason: "Connection refused".into() }
            ]
        );
        assert_eq!(h.state(), CameraState::Recording);
    }

    #[test]
    fn a_gap_since_the_last_run_is_reported_once() {
        let mut h = CameraHealth::new(UnixMs(100_000), Some(UnixMs(50_000)), false);
        let events = h.on_segment(UnixMs(101_000), UnixMs(111_000));
        assert!(matches!(&events[..], [HealthEvent::Gap { start: UnixMs(50_000), end: UnixMs(101_000), .. }]));
        assert!(h.on_segment(UnixMs(111_000), UnixMs(121_000)).is_empty());
    }

    #[test]
    fn contiguous_segments_make_no_gap() {
        let mut h = CameraHealth::new(UnixMs(0), Some(UnixMs(10_000)), false);
        assert!(h.on_segment(UnixMs(10_000 + GAP_TOLERANCE_MS), UnixMs(20_000)).is_empty());
    }

    #[test]
    fn turning_recording_off_and_on_leaves_one_gap_and_no_offline_event() {
        let mut h = CameraHealth::new(UnixMs(0), None, false);
        h.on_segment(UnixMs(0), UnixMs(10_000));
        h.on_disabled(UnixMs(11_000), "recording turned off");
        assert_eq!((h.state(), h.since()), (CameraState::Disabled, UnixMs(11_000)));
        h.on_enabled(UnixMs(60_000));
        assert_eq!(h.state(), CameraState::Connecting);
        let back = h.on_segment(UnixMs(61_000), UnixMs(70_000));
        assert_eq!(
            back,
            [HealthEvent::Gap { start: UnixMs(10_000), end: UnixMs(61_000), reason: "recording turned off".into() }]
        );
    }

    #[test]
    fn a_camera_that_never_came_up_is_announced_offline_once() {
        let mut h = CameraHealth::new(UnixMs(0), None, false);
        h.on_error("401 Unauthorized");
        assert_eq!(h.on_failure(UnixMs(1000), "exit"), [HealthEvent::Offline { reason: "401 Unauthorized".into() }]);
        assert_eq!(h.reconnects(), 0);
        assert_eq!(h.last_error(), Some("401 Unauthorized"));
        assert_eq!(h.on_data(UnixMs(5000)), [HealthEvent::Online]);
    }

    #[test]
    fn a_storage_pause_says_why_and_leaves_one_gap() {
        let mut h = CameraHealth::new(UnixMs(0), None, false);
        h.on_segment(UnixMs(0), UnixMs(10_000));
        h.on_paused(UnixMs(11_000), "storage full");
        assert_eq!((h.state(), h.last_error()), (CameraState::Paused, Some("storage full")));
        h.on_enabled(UnixMs(30_000));
        assert_eq!((h.state(), h.last_error()), (CameraState::Connecting, None));
        let back = h.on_segment(UnixMs(31_000), UnixMs(40_000));
        assert_eq!(
            back,
            [HealthEvent::Gap { start: UnixMs(10_000), end: UnixMs(31_000), reason: "storage full".into() }]
        );
    }
}
