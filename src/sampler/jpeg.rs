//! Cuts ffmpeg's MJPEG output (JPEG after JPEG on a pipe) into frames by
//! walking the JPEG markers, and reads a frame's size from its SOF header.

/// What the start of a buffer holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scan {
    /// A whole JPEG of this length.
    Complete(usize),
    /// The start of a JPEG; more bytes are needed.
    Incomplete,
    /// Not a JPEG start: skip this many bytes.
    Garbage(usize),
}

/// Finds the JPEG at the start of `buf` (SOI … EOI, segment lengths and entropy-coded data walked).
pub fn scan(buf: &[u8]) -> Scan {
    if buf.len() < 2 {
        return Scan::Incomplete;
    }
    if buf[0] != 0xFF || buf[1] != 0xD8 {
        let next = buf.windows(2).skip(1).position(|w| w == [0xFF, 0xD8]).map_or(buf.len() - 1, |p| p + 1);
        return Scan::Garbage(next);
    }
    let mut i = 2;
    loop {
        // Fill bytes: any number of 0xFF before a marker.
        while i < buf.len() && buf[i] == 0xFF && buf.get(i + 1) == Some(&0xFF) {
            i += 1;
        }
        if i + 1 >= buf.len() {
            return Scan::Incomplete;
        }
        if buf[i] != 0xFF {
            return Scan::Garbage(i);
        }
        let marker = buf[i + 1];
        match marker {
            0xD9 => return Scan::Complete(i + 2),
            0xD0..=0xD7 | 0x01 => i += 2,
            _ => {
                let Some(len) = buf.get(i + 2..i + 4).map(|b| usize::from(u16::from_be_bytes([b[0], b[1]]))) else {
                    return Scan::Incomplete;
                };
                if len < 2 {
                    return Scan::Garbage(i + 2);
                }
                i += 2 + len;
                if marker == 0xDA {
                    // Entropy-coded data runs to the next marker that is not a stuffed 0xFF00 or a restart.
                    loop {
                        let Some(p) = buf.get(i..).and_then(|rest| rest.iter().position(|b| *b == 0xFF)) else {
                            return Scan::Incomplete;
                        };
                        i += p;
                        match buf.get(i + 1) {
                            None => return Scan::Incomplete,
                            Some(0x00 | 0xD0..=0xD7 | 0xFF) => i += 1,
                            Some(_) => break,
                        }
                    }
                }
            }
        }
    }
}

/// Width and height from the first SOF segment.
pub fn dimensions(jpeg: &[u8]) -> Option<(u32, u32)> {
    let mut i = 2;
    while i + 9 < jpeg.len() {
        if jpeg[i] != 0xFF {
            return None;
        }
        let marker = jpeg[i + 1];
        if marker == 0xFF {
            i += 1;
            continue;
        }
        let len = usize::from(u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]));
        let is_sof = matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC);
        if is_sof {
            let height = u32::from(u16::from_be_bytes([jpeg[i + 5], jpeg[i + 6]]));
            let width = u32::from(u16::from_be_bytes([jpeg[i + 7], jpeg[i + 8]]));
            return (width > 0 && height > 0).then_some((width, height));
        }
        if marker == 0xDA {
            return None;
        }
        i += 2 + len;
    }
    None
}

/// Accumulates pipe reads and hands out whole frames; bounded by `max_bytes`.
pub struct JpegSplitter {
    buf: Vec<u8>,
    spare: usize,
    max_bytes: usize,
    /// Frames dropped for exceeding `max_bytes`.
    pub oversize: u64,
}

impl JpegSplitter {
    /// A splitter for frames of at most `max_bytes`; its buffer is allocated once.
    pub fn new(max_bytes: usize) -> Self {
        Self { buf: Vec::with_capacity(max_bytes * 2), spare: 0, max_bytes, oversize: 0 }
    }

    /// Room for the next read, at most `want` bytes; call `filled` with what was read into it.
    pub fn spare(&mut self, want: usize) -> &mut [u8] {
        let start = self.buf.len() - self.spare;
        let room = (self.buf.capacity() - start).clamp(1, want.max(1));
        self.buf.resize(start + room, 0);
        self.spare = room;
        &mut self.buf[start..]
    }

    /// Keeps `read` bytes of the last `spare` slice and hands every complete frame to `frame`.
    pub fn filled(&mut self, read: usize, mut frame: impl FnMut(&[u8])) {
        let keep = self.buf.len() - std::mem::take(&mut self.spare) + read.min(self.buf.len());
        self.buf.truncate(keep);
        loop {
            match scan(&self.buf) {
                Scan::Complete(len) => {
                    frame(&self.buf[..len]);
                    self.buf.drain(..len);
                }
                Scan::Garbage(skip) => {
                    self.buf.drain(..skip.max(1));
                }
                Scan::Incomplete => {
                    if self.buf.len() > self.max_bytes {
                        // A frame too large for a slot: drop its start; the rest of it no longer
                        // starts with SOI, so it is skipped as garbage up to the next frame.
                        self.oversize += 1;
                        let keep_from = self.buf.len() - 1;
                        self.buf.drain(..keep_from);
                    }
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal JPEG: SOI, SOF0 (w×h), SOS with entropy data holding stuffed and restart bytes, EOI.
    fn jpeg(width: u16, height: u16, data: &[u8]) -> Vec<u8> {
        let mut j = vec![0xFF, 0xD8];
        j.extend([0xFF, 0xC0, 0x00, 0x0B, 0x08]);
        j.extend(height.to_be_bytes());
        j.extend(width.to_be_bytes());
        j.extend([0x01, 0x01, 0x11, 0x00]);
        j.extend([0xFF, 0xDA, 0x00, 0x08, 0x01, 0x01, 0x00, 0x00, 0x3F, 0x00]);
        j.extend(data);
        j.extend([0xFF, 0xD9]);
        j
    }

    #[test]
    fn finds_whole_frames_despite_stuffing_and_restarts() {
        let frame = jpeg(640, 360, &[1, 0xFF, 0x00, 2, 0xFF, 0xD3, 3, 0xFF, 0xD9 ^ 0x26]);
        assert_eq!(scan(&frame), Scan::Complete(frame.len()));
        assert_eq!(scan(&frame[..frame.len() - 1]), Scan::Incomplete);
        assert_eq!(dimensions(&frame), Some((640, 360)));
        assert_eq!(scan(b"xx\xFF\xD8"), Scan::Garbage(2));
    }

    #[test]
    fn splits_a_stream_read_in_odd_chunks() {
        let a = jpeg(4, 2, &[1, 2, 3]);
        let b = jpeg(8, 6, &[0xFF, 0x00, 9]);
        let stream: Vec<u8> = [b"junk".as_slice(), &a, &b, &a].concat();
        let mut splitter = JpegSplitter::new(1024);
        let mut frames = Vec::new();
        for chunk in stream.chunks(5) {
            let spare = splitter.spare(chunk.len());
            spare[..chunk.len()].copy_from_slice(chunk);
            splitter.filled(chunk.len(), |f| frames.push(f.to_vec()));
        }
        assert_eq!(frames, vec![a.clone(), b, a]);
    }

    #[test]
    fn drops_frames_over_the_limit_and_recovers() {
        let big = jpeg(4, 2, &[7; 300]);
        let small = jpeg(4, 2, &[1]);
        let stream = [big.as_slice(), &small].concat();
        let mut splitter = JpegSplitter::new(100);
        let mut frames = Vec::new();
        for chunk in stream.chunks(40) {
            let spare = splitter.spare(chunk.len());
            spare[..chunk.len()].copy_from_slice(chunk);
            splitter.filled(chunk.len(), |f| frames.push(f.to_vec()));
        }
        assert_eq!(frames, vec![small]);
        assert_eq!(splitter.oversize, 1);
    }
}
