//! Retention planning: which segments to delete so that footage ages out per
//! camera and storage stays inside its bounds. Pure; the sweeper feeds it the
//! oldest segments a page at a time, with what is locked or being read.

use crate::wallclock::UnixMs;
use std::collections::BTreeMap;

/// A segment as retention sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// Row id.
    pub id: i64,
    /// Camera.
    pub camera: String,
    /// End of its footage.
    pub end: UnixMs,
    /// File size.
    pub bytes: u64,
    /// Covered by an evidence lock.
    pub locked: bool,
    /// Being read by a backup or an export.
    pub in_use: bool,
    /// Recorded while a `record` command forced an `events` camera to record everything:
    /// it ages by `continuous_cutoffs`.
    pub forced_continuous: bool,
    /// Closed in this boot less than its retention ago by the boot clock: never aged out,
    /// whatever the wall clock says (it may have been stepped forward).
    pub fresh: bool,
}

/// Where storage stands.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Space {
    /// Free bytes on the recordings file system.
    pub free: u64,
    /// Size of that file system.
    pub total: u64,
    /// Bytes of all indexed segments.
    pub recordings: u64,
}

/// The limits retention keeps.
#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    /// Per camera: footage ending before this goes (`retain_days`, or `pre_roll_s` in `events` mode).
    pub cutoffs: BTreeMap<String, UnixMs>,
    /// Per `events` camera: the cutoff of its forced-continuous footage (`retain_days`).
    pub continuous_cutoffs: BTreeMap<String, UnixMs>,
    /// `storage.min_free_percent`.
    pub min_free_percent: f64,
    /// `storage.max_bytes`.
    pub max_bytes: Option<u64>,
    /// Bytes kept free beyond the floor for the writes to come (from the write rate).
    pub ahead: u64,
}

impl Space {
    /// True when free space or the recordings total is out of bounds.
    pub fn short(&self, limits: &Limits) -> bool {
        let floor = (self.total as f64 * limits.min_free_percent / 100.0).ceil() as u64;
        self.free < floor.saturating_add(limits.ahead) || limits.max_bytes.is_some_and(|max| self.recordings > max)
    }

    fn freed(&mut self, bytes: u64) {
        self.free = self.free.saturating_add(bytes);
        self.recordings = self.recordings.saturating_sub(bytes);
    }
}

/// Why a segment is deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Older than its camera's cutoff.
    Age,
    /// Storage was short.
    Space,
}

/// Decides, for candidates given oldest first, which to delete; updates `space` as if they were.
/// Locked and in-use segments are never chosen. Returns the deletions in order.
pub fn plan(candidates: &[Candidate], limits: &Limits, space: &mut Space) -> Vec<(i64, Reason)> {
    let mut delete = Vec::new();
    for c in candidates {
        if c.locked || c.in_use {
            continue;
        }
        let forced = c.forced_continuous.then(|| limits.continuous_cutoffs.get(&c.camera)).flatten();
        let aged = !c.fresh && forced.or_else(|| limits.cutoffs.get(&c.camera)).is_some_and(|cutoff| c.end <= *cutoff);
        let reason = if aged {
            Reason::Age
        } else if space.short(limits) {
            Reason::Space
        } else {
            continue;
        };
        space.freed(c.bytes);
        delete.push((c.id, reason));
    }
    delete
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(id: i64, camera: &str, end: i64, bytes: u64) -> Candidate {
        Candidate {
            id,
            camera: camera.into(),
            end: UnixMs(end),
            bytes,
            locked: false,
            in_use: false,
            forced_continuous: false,
            fresh: false,
        }
    }

    fn limits(cutoffs: &[(&str, i64)], min_free_percent: f64, max_bytes: Option<u64>) -> Limits {
        Limits {
            cutoffs: cutoffs.iter().map(|(c, t)| (c.to_string(), UnixMs(*t))).collect(),
            continuous_cutoffs: BTreeMap::new(),
            min_free_percent,
            max_bytes,
            ahead: 0,
        }
    }

    #[test]
    fn footage_older_than_its_camera_cutoff_goes() {
        let segments = [seg(1, "a", 100, 10), seg(2, "b", 100, 10), seg(3, "a", 300, 10)];
        let mut space = Space { free: 900, total: 1000, recordings: 30 };
        let plan = plan(&segments, &limits(&[("a", 200), ("b", 50)], 10.0, None), &mut space);
        assert_eq!(plan, [(1, Reason::Age)]);
        assert_eq!(space.free, 910);
    }

    #[test]
    fn oldest_first_until_the_free_floor_is_back() {
        let segments = [seg(1, "a", 100, 50), seg(2, "b", 200, 50), seg(3, "a", 300, 50), seg(4, "b", 400, 50)];
        let mut space = Space { free: 120, total: 1000, recordings: 800 };
        let plan = plan(&segments, &limits(&[], 20.0, None), &mut space);
        assert_eq!(plan, [(1, Reason::Space), (2, Reason::Space)]);
        assert!(!space.short(&limits(&[], 20.0, None)));
    }

    #[test]
    fn the_recordings_cap_is_kept() {
        let segments = [seg(1, "a", 100, 300), seg(2, "a", 200, 300), seg(3, "a", 300, 300)];
        let mut space = Space { free: 5000, total: 10_000, recordings: 900 };
        let plan = plan(&segments, &limits(&[], 10.0, Some(500)), &mut space);
        assert_eq!(plan, [(1, Reason::Space), (2, Reason::Space)]);
        assert_eq!(space.recordings, 300);
    }

    #[test]
    fn locked_and_in_use_segments_are_never_deleted() {
        let mut locked = seg(1, "a", 100, 50);
        locked.locked = true;
        let mut reading = seg(2, "a", 150, 50);
        reading.in_use = true;
        let segments = [locked, reading, seg(3, "a", 200, 50)];
        let mut space = Space { free: 0, total: 1000, recordings: 150 };
        let plan = plan(&segments, &limits(&[("a", 10_000)], 50.0, None), &mut space);
        assert_eq!(plan, [(3, Reason::Age)]);
        assert!(space.short(&limits(&[], 50.0, None)), "still short: only locked and in-use footage is left");
    }

    #[test]
    fn forced_continuous_footage_of_an_events_camera_ages_by_retain_days() {
        let mut forced = seg(1, "a", 100, 10);
        forced.forced_continuous = true;
        let segments = [forced.clone(), seg(2, "a", 100, 10)];
        let mut events = limits(&[("a", 500)], 0.0, None);
        events.continuous_cutoffs.insert("a".into(), UnixMs(50));
        let mut space = Space { free: 900, total: 1000, recordings: 20 };
        assert_eq!(plan(&segments, &events, &mut space), [(2, Reason::Age)], "kept: forced, newer than retain_days");
        events.continuous_cutoffs.insert("a".into(), UnixMs(100));
        assert_eq!(plan(&[forced], &events, &mut space), [(1, Reason::Age)]);
    }

    #[test]
    fn room_for_the_writes_to_come_is_freed_beyond_the_floor() {
        let segments = [seg(1, "a", 100, 50), seg(2, "a", 200, 50)];
        let mut space = Space { free: 120, total: 1000, recordings: 100 };
        let mut ahead = limits(&[], 10.0, None);
        ahead.ahead = 30;
        assert_eq!(plan(&segments, &ahead, &mut space), [(1, Reason::Space)], "120 free < 100 floor + 30 ahead");
    }

    #[test]
    fn fresh_footage_never_ages_out_but_may_go_for_space() {
        let mut fresh = seg(1, "a", 100, 50);
        fresh.fresh = true;
        let mut space = Space { free: 900, total: 1000, recordings: 50 };
        assert!(plan(&[fresh.clone()], &limits(&[("a", 10_000)], 10.0, None), &mut space).is_empty());
        let mut full = Space { free: 0, total: 1000, recordings: 50 };
        assert_eq!(plan(&[fresh], &limits(&[("a", 10_000)], 10.0, None), &mut full), [(1, Reason::Space)]);
    }

    #[test]
    fn nothing_goes_when_within_bounds() {
        let segments = [seg(1, "a", 100, 50)];
        let mut space = Space { free: 500, total: 1000, recordings: 50 };
        assert!(plan(&segments, &limits(&[("a", 50)], 10.0, Some(1000)), &mut space).is_empty());
    }
}
