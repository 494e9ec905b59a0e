//! The clocks the node lives by: the wall clock (`CLOCK_REALTIME`, which NTP or
//! an operator may step) against the boot clock (`CLOCK_BOOTTIME`, which only
//! ever runs forward, also through suspend), and whether the kernel says the
//! wall clock is synchronised.

/// A wall-clock step larger than this, either way, is a step (not drift or jitter).
pub const STEP_MS: i64 = 2_000;

// The conversions are needed where `time_t` and `c_long` are 32 bits wide (armv7).
#[allow(clippy::useless_conversion)]
fn clock_ms(clock: libc::clockid_t) -> i64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    i64::from(ts.tv_sec) * 1000 + i64::from(ts.tv_nsec) / 1_000_000
}

/// Both clocks now, in ms: (wall, boot).
pub fn read() -> (i64, i64) {
    (clock_ms(libc::CLOCK_REALTIME), clock_ms(libc::CLOCK_BOOTTIME))
}

/// Whether the kernel says the wall clock is synchronised (`adjtimex`'s `STA_UNSYNC` clear);
/// `None` when it cannot be asked.
pub fn synchronised() -> Option<bool> {
    // SAFETY: adjtimex with modes 0 only reads into the struct we own.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    let state = unsafe { libc::adjtimex(&mut tx) };
    (state >= 0).then_some(state != libc::TIME_ERROR && tx.status & libc::STA_UNSYNC == 0)
}

/// A step of the wall clock: where it was, where it went, by how much (ms).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    /// The wall clock before the step, as it would read now without it.
    pub from_ms: i64,
    /// The wall clock now.
    pub to_ms: i64,
    /// `to - from`: negative when it went back.
    pub delta_ms: i64,
}

/// Follows the wall clock against the boot clock. Pure: the caller reads the clocks.
#[derive(Clone, Copy, Debug)]
pub struct ClockWatch {
    /// The wall clock minus the boot clock at the last look.
    offset_ms: i64,
}

impl ClockWatch {
    /// Starts from the clocks `(wall, boot)`.
    pub fn new((wall, boot): (i64, i64)) -> Self {
        Self { offset_ms: wall - boot }
    }

    /// Looks at the clocks `(wall, boot)`; a step when the wall clock moved more than
    /// `STEP_MS` against the boot clock since the last look (small drift is followed).
    pub fn observe(&mut self, (wall, boot): (i64, i64)) -> Option<Step> {
        let offset = wall - boot;
        let delta_ms = offset - self.offset_ms;
        self.offset_ms = offset;
        (delta_ms.abs() > STEP_MS).then_some(Step { from_ms: wall - delta_ms, to_ms: wall, delta_ms })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_either_way_are_seen_once_and_drift_is_followed() {
        let mut watch = ClockWatch::new((1_000_000, 50_000));
        assert_eq!(watch.observe((1_001_000, 51_000)), None, "both ran a second");
        assert_eq!(watch.observe((1_002_500, 52_000)), None, "500 ms of slew is no step");
        let back = watch.observe((962_500, 53_000)).expect("a step back");
        assert_eq!((back.delta_ms, back.from_ms, back.to_ms), (-41_000, 1_003_500, 962_500));
        assert_eq!(watch.observe((963_500, 54_000)), None, "seen once");
        let day = watch.observe((963_500 + 86_401_000, 55_000)).expect("a day ahead");
        assert_eq!(day.delta_ms, 86_400_000);
    }

    #[test]
    fn the_real_clocks_can_be_read() {
        let (wall, boot) = read();
        assert!(wall > 1_600_000_000_000 && boot > 0);
        let _ = synchronised();
    }
}
