//! `FrameRing`: the newest sampled frames of one camera in slots allocated
//! once at start; writing a frame copies it into the oldest slot.

use crate::wallclock::UnixMs;

/// What is known of a frame besides its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameMeta {
    /// Per-camera sequence number.
    pub seq: u64,
    /// Capture time.
    pub ts: UnixMs,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

/// A frame larger than a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Oversize {
    /// Its size.
    pub bytes: usize,
}

/// Fixed slots of `max_frame_bytes`, preallocated; the newest frame wins.
pub struct FrameRing {
    slots: Vec<Vec<u8>>,
    metas: Vec<Option<FrameMeta>>,
    next: usize,
    latest: Option<usize>,
    max_bytes: usize,
    /// Frames dropped because they did not fit a slot.
    pub oversize: u64,
    /// Frames written.
    pub written: u64,
}

impl FrameRing {
    /// `slots` slots of `max_bytes` each, allocated now.
    pub fn new(slots: usize, max_bytes: usize) -> Self {
        let slots = slots.max(1);
        Self {
            slots: (0..slots).map(|_| Vec::with_capacity(max_bytes)).collect(),
            metas: vec![None; slots],
            next: 0,
            latest: None,
            max_bytes,
            oversize: 0,
            written: 0,
        }
    }

    /// Copies a frame into the oldest slot; refuses (and counts) one larger than a slot.
    pub fn push(&mut self, meta: FrameMeta, jpeg: &[u8]) -> Result<(), Oversize> {
        if jpeg.len() > self.max_bytes {
            self.oversize += 1;
            return Err(Oversize { bytes: jpeg.len() });
        }
        let slot = &mut self.slots[self.next];
        slot.clear();
        slot.extend_from_slice(jpeg);
        self.metas[self.next] = Some(meta);
        self.latest = Some(self.next);
        self.next = (self.next + 1) % self.slots.len();
        self.written += 1;
        Ok(())
    }

    /// The newest frame.
    pub fn latest(&self) -> Option<(FrameMeta, &[u8])> {
        let i = self.latest?;
        Some((self.metas[i]?, &self.slots[i]))
    }

    /// Bytes reserved by the slots (constant after `new`).
    pub fn reserved_bytes(&self) -> usize {
        self.slots.iter().map(Vec::capacity).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(seq: u64) -> FrameMeta {
        FrameMeta { seq, ts: UnixMs(seq as i64), width: 4, height: 2 }
    }

    #[test]
    fn newest_frame_wins_and_old_slots_are_reused() {
        let mut ring = FrameRing::new(2, 16);
        for seq in 1..=5u64 {
            ring.push(meta(seq), &[seq as u8; 8]).expect("fits");
        }
        let (m, bytes) = ring.latest().expect("latest");
        assert_eq!(m.seq, 5);
        assert_eq!(bytes, &[5u8; 8]);
        assert_eq!(ring.written, 5);
    }

    #[test]
    fn oversize_frames_are_dropped_and_counted() {
        let mut ring = FrameRing::new(2, 16);
        ring.push(meta(1), &[1; 16]).expect("exactly a slot");
        assert_eq!(ring.push(meta(2), &[2; 17]), Err(Oversize { bytes: 17 }));
        assert_eq!(ring.oversize, 1);
        assert_eq!(ring.latest().map(|(m, _)| m.seq), Some(1));
    }

    #[test]
    fn memory_does_not_grow_with_frames() {
        let mut ring = FrameRing::new(3, 1024);
        let reserved = ring.reserved_bytes();
        for seq in 0..1000u64 {
            let len = (seq as usize * 37) % 1024;
            ring.push(meta(seq), &vec![7; len]).expect("fits");
        }
        assert_eq!(ring.reserved_bytes(), reserved);
    }
}
