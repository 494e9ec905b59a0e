//! The MPEG-TS copy of the stream the sampler's decoder reads (the same
//! stream the ffmpeg recorder writes on fd 3): one program, one video PID,
//! a PES per frame with its PTS, PAT and PMT before each key frame, and the
//! random-access flag on the packet that starts a key frame (which the
//! sampler's `KeyFrameMeter` reads).

const PACKET: usize = 188;
const PMT_PID: u16 = 0x1000;
const VIDEO_PID: u16 = 0x100;

/// The video codec of the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TsCodec {
    /// H.264 (stream type 0x1B).
    H264,
    /// H.265 (stream type 0x24).
    H265,
}

/// Writes one stream's packets, keeping its continuity counters.
#[derive(Debug)]
pub struct TsMuxer {
    codec: TsCodec,
    counters: [u8; 3],
}

impl TsMuxer {
    /// A muxer for a `codec` stream.
    pub fn new(codec: TsCodec) -> Self {
        Self { codec, counters: [0; 3] }
    }

    /// Appends the packets of one frame: `annex_b` (NAL units behind start codes, parameter
    /// sets first on a key frame) shown at `pts` (90 kHz ticks).
    pub fn frame(&mut self, pts: u64, key: bool, annex_b: &[u8], out: &mut Vec<u8>) {
        if key {
            self.section(0, &pat(), out);
            self.section(PMT_PID, &pmt(self.codec), out);
        }
        let pts = pts & ((1 << 33) - 1);
        let mut pes = Vec::with_capacity(14 + annex_b.len());
        // Start code, video stream 0, unbounded length, PTS only.
        pes.extend_from_slice(&[0, 0, 1, 0xE0, 0, 0, 0x80, 0x80, 5]);
        pes.extend_from_slice(&[
            0x21 | ((pts >> 29) & 0x0E) as u8,
            (pts >> 22) as u8,
            0x01 | ((pts >> 14) & 0xFE) as u8,
            (pts >> 7) as u8,
            0x01 | ((pts << 1) & 0xFE) as u8,
        ]);
        pes.extend_from_slice(annex_b);
        let mut rest = &pes[..];
        let mut first = true;
        while !rest.is_empty() {
            // The first packet of a key frame says it is a random access point, with a PCR.
            let mut field = (first && key).then(|| {
                vec![
                    0x50,
                    (pts >> 25) as u8,
                    (pts >> 17) as u8,
                    (pts >> 9) as u8,
                    (pts >> 1) as u8,
                    ((pts & 1) << 7) as u8 | 0x7E,
                    0,
                ]
            });
            let room = |field: &Option<Vec<u8>>| 184 - field.as_ref().map_or(0, |f| 1 + f.len());
            if rest.len() < room(&field) {
                // Stuffing fills the last packet: an adaptation field of what is missing.
                let need = room(&field) - rest.len();
                match &mut field {
                    Some(f) => f.extend(std::iter::repeat_n(0xFF, need)),
                    None if need == 1 => field = Some(Vec::new()),
                    None => field = Some(std::iter::once(0).chain(std::iter::repeat_n(0xFF, need - 2)).collect()),
                }
            }
            let take = room(&field).min(rest.len());
            self.packet(VIDEO_PID, first, field.as_deref(), &rest[..take], out);
            rest = &rest[take..];
            first = false;
        }
    }

    /// One packet: header, the adaptation field when given (its length byte, then it), payload.
    fn packet(&mut self, pid: u16, start: bool, field: Option<&[u8]>, payload: &[u8], out: &mut Vec<u8>) {
        let at = out.len();
        let counter = &mut self.counters[match pid {
            0 => 0,
            PMT_PID => 1,
            _ => 2,
        }];
        out.extend_from_slice(&[
            0x47,
            (u8::from(start) << 6) | (pid >> 8) as u8,
            pid as u8,
            (if field.is_some() { 0x30 } else { 0x10 }) | *counter,
        ]);
        *counter = (*counter + 1) & 0x0F;
        if let Some(field) = field {
            out.push(field.len() as u8);
            out.extend_from_slice(field);
        }
        out.extend_from_slice(payload);
        debug_assert_eq!(out.len() - at, PACKET);
    }

    /// A PSI section in one packet (pointer field first, 0xFF after).
    fn section(&mut self, pid: u16, section: &[u8], out: &mut Vec<u8>) {
        let mut payload = Vec::with_capacity(184);
        payload.push(0);
        payload.extend_from_slice(section);
        payload.resize(184, 0xFF);
        self.packet(pid, true, None, &payload, out);
    }
}

/// The program association table: program 1 on `PMT_PID`.
fn pat() -> Vec<u8> {
    let [hi, lo] = PMT_PID.to_be_bytes();
    with_crc(vec![0x00, 0xB0, 13, 0, 1, 0xC1, 0, 0, 0, 1, 0xE0 | hi, lo])
}

/// The program map: one video stream of `codec` on `VIDEO_PID`, its PCR there too.
fn pmt(codec: TsCodec) -> Vec<u8> {
    let [hi, lo] = VIDEO_PID.to_be_bytes();
    let stream_type = match codec {
        TsCodec::H264 => 0x1B,
        TsCodec::H265 => 0x24,
    };
    with_crc(vec![0x02, 0xB0, 18, 0, 1, 0xC1, 0, 0, 0xE0 | hi, lo, 0xF0, 0, stream_type, 0xE0 | hi, lo, 0xF0, 0])
}

fn with_crc(mut section: Vec<u8>) -> Vec<u8> {
    let crc = crc32_mpeg2(&section);
    section.extend_from_slice(&crc.to_be_bytes());
    section
}

/// CRC-32/MPEG-2 of PSI sections.
fn crc32_mpeg2(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for byte in bytes {
        crc ^= u32::from(*byte) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 { (crc << 1) ^ 0x04C1_1DB7 } else { crc << 1 };
        }
    }
    crc
}

/// Rewrites NAL units behind 4-byte lengths (as MP4 holds them) to Annex B start codes, in
/// place; `false` when a length runs past the end.
pub fn lengths_to_start_codes(data: &mut [u8]) -> bool {
    let mut at = 0;
    while at + 4 <= data.len() {
        let len = u32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]) as usize;
        data[at..at + 4].copy_from_slice(&[0, 0, 0, 1]);
        at += 4 + len;
    }
    at == data.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampler::keyframes::KeyFrameMeter;

    #[test]
    fn psi_sections_carry_the_mpeg2_crc() {
        // The PAT ffmpeg writes for program 1 on PID 0x1000 ends in this CRC.
        assert_eq!(crc32_mpeg2(&[0x00, 0xB0, 0x0D, 0x00, 0x01, 0xC1, 0x00, 0x00, 0x00, 0x01, 0xF0, 0x00]), 0x2AB104B2);
    }

    #[test]
    fn frames_are_whole_packets_and_key_frames_are_marked() {
        let mut muxer = TsMuxer::new(TsCodec::H264);
        let mut out = Vec::new();
        let mut meter = KeyFrameMeter::default();
        for n in 0..120u64 {
            let size = [1usize, 183, 184, 200, 5000][n as usize % 5];
            muxer.frame(n * 3000, n % 30 == 0, &vec![0xAB; size], &mut out);
        }
        assert_eq!(out.len() % PACKET, 0);
        assert!(out.chunks(PACKET).all(|p| p[0] == 0x47));
        meter.feed(&out);
        assert_eq!(meter.interval(), Some(std::time::Duration::from_secs(1)));
    }

    #[test]
    fn lengths_become_start_codes() {
        let mut data = vec![0, 0, 0, 2, 0x65, 1, 0, 0, 0, 1, 0x41];
        assert!(lengths_to_start_codes(&mut data));
        assert_eq!(data, vec![0, 0, 0, 1, 0x65, 1, 0, 0, 0, 1, 0x41]);
        assert!(!lengths_to_start_codes(&mut [0, 0, 0, 9, 1]));
    }
}
