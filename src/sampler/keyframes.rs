//! Measures a camera's key-frame interval from the MPEG-TS copy of its
//! stream: a video PES that starts in a packet marked random access is a key
//! frame, and its PTS says when. The sampler decodes key frames only while
//! its interval between frames is at least this long.

use std::collections::VecDeque;
use std::time::Duration;

const PACKET: usize = 188;
const SYNC: u8 = 0x47;
/// PTS ticks per second.
const PTS_HZ: u64 = 90_000;
/// PTS is a 33-bit counter.
const PTS_WRAP: u64 = 1 << 33;
/// Key-frame intervals remembered: the longest of them is the camera's.
const INTERVALS: usize = 4;
/// A gap longer than this between key frames is a stall or a cut, not the camera's interval.
const LONGEST_INTERVAL: u64 = 20 * PTS_HZ;

/// Key-frame times seen on one stream.
#[derive(Debug, Default)]
pub struct KeyFrameMeter {
    /// The start of a packet split across reads.
    carry: Vec<u8>,
    last_pts: Option<u64>,
    intervals: VecDeque<u64>,
}

impl KeyFrameMeter {
    /// Takes the next bytes of the stream, packets possibly split across calls.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        if !self.carry.is_empty() {
            let take = (PACKET - self.carry.len()).min(bytes.len());
            self.carry.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.carry.len() < PACKET {
                return;
            }
            let packet = std::mem::take(&mut self.carry);
            if packet[0] == SYNC {
                self.packet(&packet);
            }
        }
        while !bytes.is_empty() {
            if bytes[0] != SYNC {
                // Lost sync: the next packet starts at the next sync byte.
                let skip = bytes.iter().position(|b| *b == SYNC).unwrap_or(bytes.len());
                bytes = &bytes[skip..];
                continue;
            }
            if bytes.len() < PACKET {
                self.carry.extend_from_slice(bytes);
                return;
            }
            self.packet(&bytes[..PACKET]);
            bytes = &bytes[PACKET..];
        }
    }

    /// The camera's key-frame interval: the longest of the last few, once two key frames came.
    pub fn interval(&self) -> Option<Duration> {
        let ticks = self.intervals.iter().max()?;
        Some(Duration::from_micros(ticks * 1_000_000 / PTS_HZ))
    }

    fn packet(&mut self, packet: &[u8]) {
        if let Some(pts) = key_frame_pts(packet) {
            if let Some(last) = self.last_pts {
                let ticks = (pts + PTS_WRAP - last) % PTS_WRAP;
                if ticks > 0 && ticks <= LONGEST_INTERVAL {
                    if self.intervals.len() == INTERVALS {
                        self.intervals.pop_front();
                    }
                    self.intervals.push_back(ticks);
                }
            }
            self.last_pts = Some(pts);
        }
    }
}

/// The PTS of the key frame whose video PES starts in `packet`, if it does.
fn key_frame_pts(packet: &[u8]) -> Option<u64> {
    let unit_start = packet[1] & 0x40 != 0;
    let control = (packet[3] >> 4) & 0x3;
    if !unit_start || control & 0x1 == 0 {
        return None;
    }
    let mut payload = 4;
    let mut random_access = false;
    if control & 0x2 != 0 {
        let length = usize::from(packet[4]);
        random_access = length > 0 && packet[5] & 0x40 != 0;
        payload = 5 + length;
    }
    let pes = packet.get(payload..)?;
    // 00 00 01, a video stream id, PTS present.
    if !random_access || pes.len() < 14 || pes[..3] != [0, 0, 1] || pes[3] & 0xF0 != 0xE0 || pes[7] & 0x80 == 0 {
        return None;
    }
    let p = &pes[9..14];
    Some(
        (u64::from(p[0] >> 1) & 0x7) << 30
            | u64::from(p[1]) << 22
            | u64::from(p[2] >> 1) << 15
            | u64::from(p[3]) << 7
            | u64::from(p[4] >> 1),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A packet starting a video PES at `pts`, random access when `key`.
    fn pes_packet(pts: u64, key: bool) -> Vec<u8> {
        let mut p = vec![SYNC, 0x41, 0x00, 0x30, 7, if key { 0x50 } else { 0x10 }, 0, 0, 0, 0, 0, 0];
        p.extend([0, 0, 1, 0xE0, 0, 0, 0x80, 0x80, 5]);
        p.push(0x21 | ((pts >> 29) & 0x0E) as u8);
        p.push((pts >> 22) as u8);
        p.push(0x01 | ((pts >> 14) & 0xFE) as u8);
        p.push((pts >> 7) as u8);
        p.push(0x01 | ((pts << 1) & 0xFE) as u8);
        p.resize(PACKET, 0xFF);
        p
    }

    #[test]
    fn the_interval_is_the_longest_gap_between_recent_key_frames() {
        let mut meter = KeyFrameMeter::default();
        let mut stream = Vec::new();
        for (i, pts) in [0u64, 90_000, 180_000, 360_000, 450_000].into_iter().enumerate() {
            stream.extend(pes_packet(pts, true));
            stream.extend(pes_packet(pts + 3000, false));
            if i == 0 {
                assert_eq!(meter.interval(), None);
            }
        }
        // Fed in odd pieces, with garbage in front: packets are found across reads.
        meter.feed(b"junk");
        for piece in stream.chunks(100) {
            meter.feed(piece);
        }
        assert_eq!(meter.interval(), Some(Duration::from_secs(2)));
    }

    #[test]
    fn pts_wraps_and_long_stalls_are_not_intervals() {
        let mut meter = KeyFrameMeter::default();
        meter.feed(&pes_packet(PTS_WRAP - 45_000, true));
        meter.feed(&pes_packet(45_000, true));
        assert_eq!(meter.interval(), Some(Duration::from_secs(1)));
        meter.feed(&pes_packet(45_000 + 60 * PTS_HZ, true));
        assert_eq!(meter.interval(), Some(Duration::from_secs(1)));
    }
}
