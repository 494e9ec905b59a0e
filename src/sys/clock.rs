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

/// The kernel's id of this boot (`/proc/sys/kernel/random/boot_id`), read once; `None`
/// when unreadable. Boot-clock readings compare only within one boot.
pub fn boot_id() -> Option<&'static str> {
    static BOOT_ID: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    BOOT_ID
        .get_or_init(|| std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok().map(|id| id.trim().to_string()))
        .as_deref()
}

/// The most a stream clock's anchor to the wall clock moves per span (a segment, a frame
/// interval), in parts per million of the span: enough
/// for any camera's crystal (100 ppm is common), small enough that a segment's length is
/// never visibly wrong.
pub const MAX_SLEW_PPM: i64 = 500;

/// The most an anchor moves over `duration_ms` (at least 1 ms).
pub fn max_slew_ms(duration_ms: i64) -> i64 {
    (duration_ms.max(0) * MAX_SLEW_PPM / 1_000_000).max(1)
}

/// Moves `anchor` toward `target` by at most `MAX_SLEW_PPM` of `duration_ms` (at least 1 ms).
pub fn slew(anchor: i64, target: i64, duration_ms: i64) -> i64 {
    let max = max_slew_ms(duration_ms);
    anchor + (target - anchor).clamp(-max, max)
}

/// The wall-clock steps seen so far, as a `watch` channel carries them to the parts that
/// follow the clock (recorders start anew, zone engines move their timeline).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Steps {
    /// Steps seen.
    pub count: u64,
    /// Their deltas added up (ms).
    pub total_delta_ms: i64,
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

    #[test]
    fn the_anchor_follows_a_drifting_camera_within_bounds_over_a_day() {
        // The camera's clock runs 100 ppm fast; segments of 2 s by its clock, for a day.
        let (mut anchor, mut worst) = (1_000_000i64, 0i64);
        for n in 1..=43_200i64 {
            let stream_end = n * 2000;
            let wall_end = 1_000_000 + stream_end * 1_000_000 / 1_000_100;
            anchor = slew(anchor, wall_end - stream_end, 2000);
            worst = worst.max((anchor + stream_end - wall_end).abs());
        }
        assert!(worst <= 100, "segment ends {worst} ms off the wall clock");
    }

    #[test]
    fn one_segment_moves_the_anchor_by_at_most_500_ppm() {
        assert_eq!(slew(0, 10_000, 10_000), 5, "a step is not followed at once");
        assert_eq!(slew(0, -10_000, 2000), -1);
        assert_eq!(slew(0, 3, 60_000), 3, "small corrections in full");
    }
}
