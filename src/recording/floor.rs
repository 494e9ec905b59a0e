//! Keeping the free-space floor from the write rate, and what to do when only
//! locked footage is left. Pure: the storage guard feeds it free space once a
//! second and what each sweep found, with the clock (monotonic ms) passed in.

use crate::store::reserve::RESERVE_BYTES;
use std::collections::VecDeque;

/// The write rate is measured over this window.
const RATE_WINDOW_MS: i64 = 10_000;
/// Space the next this-many seconds of writing need is kept ahead of the floor.
const LOOKAHEAD_S: u64 = 10;
/// While only locked footage is left, sweeps by rate come no closer than this.
const SHORT_RESWEEP_MS: i64 = 10_000;
/// A recorder is paused at most this often, so the rate can show what the last pause did.
const PAUSE_SPACING_MS: i64 = 5_000;

/// What the guard should do now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FloorAction {
    /// Pause this camera's recorder: the disk is about to fill with locked footage.
    Pause(String),
    /// Resume these cameras: there is room again.
    Resume(Vec<String>),
}

/// The floor keeper's memory.
#[derive(Clone, Debug, Default)]
pub struct FloorKeeper {
    samples: VecDeque<(i64, u64)>,
    last_sweep: Option<(i64, bool)>,
    last_pause: Option<i64>,
    paused: Vec<String>,
    resume_at: u64,
    freed_while_paused: bool,
    /// Footage was unlocked while cameras were paused.
    unlocked_while_paused: bool,
}

impl FloorKeeper {
    /// Records free space at `at` (monotonic ms).
    pub fn observe(&mut self, at: i64, free: u64) {
        self.samples.push_back((at, free));
        while self.samples.front().is_some_and(|(t, _)| at - t > RATE_WINDOW_MS) {
            self.samples.pop_front();
        }
    }

    /// Bytes per second the disk is filling (0 when it is not).
    pub fn rate(&self) -> u64 {
        match (self.samples.front(), self.samples.back()) {
            (Some((t0, f0)), Some((t1, f1))) if t1 > t0 && f0 > f1 => (f0 - f1) * 1000 / (t1 - t0) as u64,
            _ => 0,
        }
    }

    /// Room the coming writes need: the rate over the lookahead.
    pub fn ahead(&self) -> u64 {
        self.rate() * LOOKAHEAD_S
    }

    /// Below this much free space a disk full of locked footage pauses a recorder: the
    /// coming writes and the index reserve.
    pub fn need(&self) -> u64 {
        self.ahead() + RESERVE_BYTES
    }

    /// Whether to sweep now, before the writes to come cross `floor` (bytes).
    pub fn wants_sweep(&self, at: i64, free: u64, floor: u64) -> bool {
        let due = match self.last_sweep {
            Some((when, true)) => at - when >= SHORT_RESWEEP_MS,
            _ => true,
        };
        due && free < floor.saturating_add(self.ahead())
    }

    /// A sweep finished at `at`: `stuck` when it could not free the room asked because only
    /// locked or in-use footage was left; it deleted `freed` bytes.
    pub fn swept(&mut self, at: i64, stuck: bool, freed: u64) {
        self.last_sweep = Some((at, stuck));
        self.freed_while_paused |= freed > 0 && !self.paused.is_empty();
    }

    /// Whether to sweep before deciding: a pause is due on the last sweep's word, which is
    /// older than `at`; a segment closed since may be deletable, and a pause must rest on
    /// what can be deleted now.
    pub fn wants_fresh_sweep(&self, at: i64, free: u64, cameras: &[String]) -> bool {
        self.next_pause(at, free, cameras).is_some() && self.last_sweep.is_some_and(|(when, _)| when < at)
    }

    /// The camera to pause now, if any: the last sweep found only locked or in-use footage,
    /// the disk is about to fill, the last pause is a while ago and someone still records.
    fn next_pause(&self, at: i64, free: u64, cameras: &[String]) -> Option<String> {
        let stuck = matches!(self.last_sweep, Some((_, true)));
        let spaced = self.last_pause.is_none_or(|when| at - when >= PAUSE_SPACING_MS);
        if !(stuck && spaced && free < self.need()) {
            return None;
        }
        cameras.iter().rev().find(|c| !self.paused.contains(c)).cloned()
    }

    /// Footage was unlocked: while cameras are paused, the sweeper can make room again when
    /// they need it, even if there is room enough now and it deletes nothing.
    pub fn unlocked(&mut self) {
        self.unlocked_while_paused |= !self.paused.is_empty();
    }

    /// Cameras paused for storage, in the order they were paused.
    pub fn paused(&self) -> &[String] {
        &self.paused
    }

    /// Pauses the least important recording camera when the disk is about to fill and
    /// nothing can be deleted; resumes them all once a sweep could delete footage again
    /// (unlocked, aged out) or room came back otherwise. `cameras` are the recording
    /// cameras, most important first.
    pub fn decide(&mut self, at: i64, free: u64, cameras: &[String]) -> Option<FloorAction> {
        if let Some(next) = self.next_pause(at, free, cameras) {
            self.paused.push(next.clone());
            self.last_pause = Some(at);
            // Resume only with room for what this pause stopped, so pause and resume do not flap.
            self.resume_at = self.resume_at.max(self.need().saturating_mul(2));
            return Some(FloorAction::Pause(next));
        }
        let deletable = self.freed_while_paused || self.unlocked_while_paused;
        if !self.paused.is_empty() && (deletable || free >= self.resume_at) && free >= RESERVE_BYTES * 2 {
            self.last_pause = None;
            self.resume_at = 0;
            self.freed_while_paused = false;
            if std::mem::take(&mut self.unlocked_while_paused) {
                // Resumed by an unlock, maybe with no sweep since: the rate seen while paused
                // says nothing of the writes to come, which the sweeps must stay ahead of.
                self.samples.clear();
            }
            return Some(FloorAction::Resume(std::mem::take(&mut self.paused)));
        }
        None
    }

    /// Forgets cameras no longer configured.
    pub fn retain(&mut self, cameras: &[String]) {
        self.paused.retain(|c| cameras.contains(c));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: u64 = 1 << 20;

    fn cams() -> Vec<String> {
        vec!["front".into(), "back".into()]
    }

    #[test]
    fn the_rate_is_what_free_space_lost_over_the_window() {
        let mut k = FloorKeeper::default();
        assert_eq!(k.rate(), 0);
        k.observe(0, 100 * MB);
        k.observe(1000, 99 * MB);
        k.observe(2000, 98 * MB);
        assert_eq!(k.rate(), MB);
        k.observe(20_000, 98 * MB);
        assert_eq!(k.rate(), 0, "old samples leave the window");
    }

    #[test]
    fn a_sweep_comes_before_the_writes_to_come_cross_the_floor() {
        let mut k = FloorKeeper::default();
        k.observe(0, 30 * MB);
        k.observe(1000, 29 * MB);
        assert!(!k.wants_sweep(1000, 29 * MB, 10 * MB), "19 MB above the floor, 10 MB to come");
        k.observe(2000, 28 * MB);
        k.observe(10_000, 19 * MB);
        assert!(k.wants_sweep(10_000, 19 * MB, 10 * MB), "11 MB to come cross the floor");
        k.swept(10_000, true, 0);
        assert!(!k.wants_sweep(12_000, 19 * MB, 10 * MB), "only locked footage: not again at once");
        assert!(k.wants_sweep(20_000, 19 * MB, 10 * MB));
    }

    #[test]
    fn the_least_important_camera_pauses_first_one_at_a_time_and_all_resume_with_room() {
        let mut k = FloorKeeper::default();
        k.observe(0, 40 * MB);
        k.observe(1000, 38 * MB);
        assert_eq!(k.decide(1000, 38 * MB, &cams()), None, "nothing swept yet");
        k.swept(1000, true, 0);
        assert_eq!(k.decide(1000, 38 * MB, &cams()), None, "room for the next 10 s");
        k.observe(9000, 22 * MB);
        assert_eq!(k.decide(9000, 22 * MB, &cams()), Some(FloorAction::Pause("back".into())));
        assert_eq!(k.decide(10_000, 21 * MB, &cams()), None, "one pause at a time");
        assert_eq!(k.decide(14_000, 19 * MB, &cams()), Some(FloorAction::Pause("front".into())));
        assert_eq!(k.decide(20_000, 19 * MB, &cams()), None, "nobody left to pause; still short");
        assert_eq!(k.paused(), ["back", "front"]);
        k.swept(20_500, true, 0);
        assert_eq!(k.decide(20_500, 19 * MB, &cams()), None, "a sweep that freed nothing resumes nothing");
        k.swept(21_000, false, 30 * MB);
        assert_eq!(k.decide(21_000, 40 * MB, &cams()), Some(FloorAction::Resume(vec!["back".into(), "front".into()])));
        assert!(k.paused().is_empty());
    }

    #[test]
    fn a_pause_rests_on_a_sweep_made_now() {
        let mut k = FloorKeeper::default();
        k.observe(0, 10 * MB);
        k.observe(1000, 9 * MB);
        k.swept(1000, true, 0);
        assert!(!k.wants_fresh_sweep(1000, 9 * MB, &cams()), "the sweep was made now");
        assert!(k.wants_fresh_sweep(2000, 8 * MB, &cams()), "a segment may have closed since");
        k.swept(2000, false, 2 * MB);
        assert_eq!(k.decide(2000, 10 * MB, &cams()), None, "the fresh sweep could delete");
        assert!(!k.wants_fresh_sweep(3000, 9 * MB, &cams()), "no pause is due");
    }

    #[test]
    fn room_freed_by_hand_resumes_even_while_everything_is_locked() {
        let mut k = FloorKeeper::default();
        k.observe(0, 10 * MB);
        k.observe(1000, 9 * MB);
        k.swept(1000, true, 0);
        assert_eq!(k.decide(1000, 9 * MB, &cams()), Some(FloorAction::Pause("back".into())));
        assert_eq!(k.decide(2000, 12 * MB, &cams()), None, "not yet twice the room it paused at");
        assert!(matches!(k.decide(3000, 60 * MB, &cams()), Some(FloorAction::Resume(_))));
    }

    #[test]
    fn an_unlock_resumes_though_the_sweep_after_it_had_nothing_to_delete() {
        let mut k = FloorKeeper::default();
        k.observe(0, 10 * MB);
        k.observe(1000, 9 * MB);
        k.swept(1000, true, 0);
        assert_eq!(k.decide(1000, 9 * MB, &cams()), Some(FloorAction::Pause("back".into())));
        // Room above the floor, below twice the pause's need: the sweep deletes nothing.
        k.swept(2000, false, 0);
        assert_eq!(k.decide(2000, 12 * MB, &cams()), None, "still everything locked");
        k.unlocked();
        k.swept(3000, false, 0);
        assert_eq!(k.decide(3000, 12 * MB, &cams()), Some(FloorAction::Resume(vec!["back".into()])));
        k.observe(3000, 12 * MB);
        k.observe(4000, 11 * MB);
        assert_eq!(k.rate(), MB, "the rate after resuming, not the pause's");
        k.unlocked();
        assert_eq!(k.decide(4000, 12 * MB, &cams()), None, "an unlock while nothing is paused is forgotten");
    }
}
