//! How many bytes the camera's connection gathers before the recorder is woken
//! (its receive low-water mark): about a tenth of a second of the stream at
//! the rate just measured, so a 30 fps camera wakes the service ~10 times a
//! second rather than 30. The mark follows the rate once a second, and drops
//! to 1 byte as soon as video stops coming, so frames never wait for data a
//! quiet camera will not send.

use std::time::{Duration, Instant};

/// The span of stream gathered before a wake-up.
const BATCH: Duration = Duration::from_millis(100);
/// Over how long the rate is measured.
const WINDOW: Duration = Duration::from_secs(1);
/// Below this, batching saves too little to be worth any delay: every byte wakes.
const MIN_BATCH: u64 = 4 * 1024;
/// The most gathered at once (the RTSP client reads 64 KiB at a time).
const MAX_BATCH: u64 = 64 * 1024;

/// The low-water mark of one connection, from the bytes it carries.
#[derive(Debug)]
pub struct ReadBatching {
    window_start: Instant,
    bytes: u64,
    mark: u32,
}

impl ReadBatching {
    /// Starts measuring at `now`, with no batching.
    pub fn new(now: Instant) -> Self {
        Self { window_start: now, bytes: 0, mark: 1 }
    }

    /// `bytes` of frames received at `now`; the new mark to set when it changes.
    pub fn received(&mut self, now: Instant, bytes: usize) -> Option<u32> {
        self.bytes += bytes as u64;
        let span = now.saturating_duration_since(self.window_start);
        if span < WINDOW {
            return None;
        }
        let batch = (self.bytes as u128 * BATCH.as_nanos() / span.as_nanos()) as u64;
        self.window_start = now;
        self.bytes = 0;
        let mark = if batch < MIN_BATCH { 1 } else { batch.min(MAX_BATCH) as u32 };
        self.change(mark)
    }

    /// No video for a while at `now`: whatever is waiting is read at once.
    pub fn quiet(&mut self, now: Instant) -> Option<u32> {
        self.window_start = now;
        self.bytes = 0;
        self.change(1)
    }

    fn change(&mut self, mark: u32) -> Option<u32> {
        // Small moves of the rate are not worth a system call.
        let close = mark > 1 && self.mark > 1 && mark.abs_diff(self.mark) < self.mark / 4;
        if mark == self.mark || close {
            return None;
        }
        self.mark = mark;
        Some(mark)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `per_frame` bytes at 30 fps for `seconds`, returning the last mark set.
    fn feed(batching: &mut ReadBatching, start: Instant, seconds: u64, per_frame: usize) -> Option<u32> {
        let mut last = None;
        for frame in 1..=seconds * 30 {
            let at = start + Duration::from_millis(frame * 1000 / 30);
            last = batching.received(at, per_frame).or(last);
        }
        last
    }

    #[test]
    fn the_mark_is_a_tenth_of_a_second_of_stream_within_bounds() {
        let start = Instant::now();
        let mut batching = ReadBatching::new(start);
        // 3 Mb/s: 12.5 kB a frame, 37.5 kB in 100 ms.
        let mark = feed(&mut batching, start, 3, 12_500).expect("set");
        assert!((37_000..=38_000).contains(&mark), "{mark}");
        // 50 Mb/s is capped.
        let mark = feed(&mut batching, start + Duration::from_secs(3), 2, 210_000).expect("set");
        assert_eq!(mark, 64 * 1024);
        // 256 kb/s: 3.2 kB in 100 ms, every byte wakes.
        assert_eq!(feed(&mut batching, start + Duration::from_secs(5), 2, 1_066), Some(1));
    }

    #[test]
    fn a_steady_rate_sets_the_mark_once_and_quiet_clears_it() {
        let start = Instant::now();
        let mut batching = ReadBatching::new(start);
        assert!(batching.received(start, 0).is_none(), "no rate before a whole window");
        assert!(feed(&mut batching, start, 1, 12_500).is_some());
        assert_eq!(feed(&mut batching, start + Duration::from_secs(1), 5, 12_600), None, "small moves are kept");
        let later = start + Duration::from_secs(7);
        assert_eq!(batching.quiet(later), Some(1));
        assert_eq!(batching.quiet(later), None);
        assert!(feed(&mut batching, later, 2, 12_500).is_some(), "the stream back, the mark back");
    }
}
