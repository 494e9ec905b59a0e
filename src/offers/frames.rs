//! The frames recently offered to workers, per camera: a detection must
//! answer one of them, once per worker.

use crate::wallclock::UnixMs;
use heapless::Deque;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// Frames remembered per camera; a detection for an older frame is refused.
pub const OFFERED_MEMORY: usize = 256;
/// (seq, worker) answers remembered per camera, to ignore repeats.
const ANSWERS_MEMORY: usize = 512;

#[derive(Default)]
struct CameraOffers {
    frames: Deque<(u64, UnixMs), OFFERED_MEMORY>,
    answers: Deque<(u64, u64), ANSWERS_MEMORY>,
}

/// Offered frames of every configured camera, in fixed-size tables.
pub struct OfferedFrames {
    cameras: Mutex<BTreeMap<String, CameraOffers>>,
}

fn worker_key(worker: &str) -> u64 {
    // FNV-1a: a stable 64-bit key per worker id.
    worker.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

impl OfferedFrames {
    /// Tables for `cameras`, allocated now.
    pub fn new<'a>(cameras: impl IntoIterator<Item = &'a str>) -> Self {
        Self { cameras: Mutex::new(cameras.into_iter().map(|c| (c.to_string(), CameraOffers::default())).collect()) }
    }

    /// Adds tables for `camera` if it has none.
    pub fn ensure(&self, camera: &str) {
        self.cameras.lock().unwrap_or_else(|p| p.into_inner()).entry(camera.to_string()).or_default();
    }

    /// Forgets `camera` (removed from the config).
    pub fn remove(&self, camera: &str) {
        self.cameras.lock().unwrap_or_else(|p| p.into_inner()).remove(camera);
    }

    fn with<R>(&self, camera: &str, f: impl FnOnce(&mut CameraOffers) -> R) -> Option<R> {
        let mut cameras = self.cameras.lock().unwrap_or_else(|p| p.into_inner());
        cameras.get_mut(camera).map(f)
    }

    /// Records that frame `seq` taken at `ts` was offered.
    pub fn offer(&self, camera: &str, seq: u64, ts: UnixMs) {
        self.with(camera, |c| {
            if c.frames.is_full() {
                c.frames.pop_front();
            }
            let _ = c.frames.push_back((seq, ts));
        });
    }

    /// True for a configured camera.
    pub fn knows(&self, camera: &str) -> bool {
        self.with(camera, |_| ()).is_some()
    }

    /// The capture time of offered frame `seq`, if it is still remembered.
    pub fn ts_of(&self, camera: &str, seq: u64) -> Option<UnixMs> {
        self.with(camera, |c| c.frames.iter().rev().find(|(s, _)| *s == seq).map(|(_, ts)| *ts)).flatten()
    }

    /// Records `worker`'s answer to frame `seq`; false when it answered it before.
    pub fn first_answer(&self, camera: &str, seq: u64, worker: &str) -> bool {
        let key = (seq, worker_key(worker));
        self.with(camera, |c| {
            if c.answers.iter().any(|a| *a == key) {
                return false;
            }
            if c.answers.is_full() {
                c.answers.pop_front();
            }
            let _ = c.answers.push_back(key);
            true
        })
        .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_recent_frames_and_first_answers() {
        let offered = OfferedFrames::new(["a"]);
        for seq in 0..(OFFERED_MEMORY as u64 + 10) {
            offered.offer("a", seq, UnixMs(seq as i64 * 100));
        }
        assert_eq!(offered.ts_of("a", 5), None, "forgotten");
        assert_eq!(offered.ts_of("a", 20), Some(UnixMs(2000)));
        assert_eq!(offered.ts_of("b", 20), None);
        assert!(offered.knows("a") && !offered.knows("b"));
        assert!(offered.first_answer("a", 20, "w1"));
        assert!(!offered.first_answer("a", 20, "w1"));
        assert!(offered.first_answer("a", 20, "w2"));
        offered.ensure("b");
        offered.ensure("a");
        assert!(offered.knows("b") && offered.ts_of("a", 20).is_some(), "ensure keeps what a camera has");
        offered.remove("a");
        assert!(!offered.knows("a"));
    }
}
