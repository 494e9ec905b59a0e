//! Where the native recorder's segments and fragments end, as a pure state
//! machine over the frames received: a segment starts at a key frame and is
//! cut at the first key frame on or past each `segment_s` point of a grid
//! from the run's first key frame; a fragment is flushed once it holds a second of video. A frame's
//! duration is known when the next one comes, so one frame is always held.

use super::fmp4::{self, Run, Sample};

/// Longest a frame may last: a longer pause of the camera is a hole, not a frame.
const MAX_FRAME_TICKS: i64 = 10 * fmp4::TIMESCALE as i64;
/// A fragment is flushed at this size even before its second is full: a camera's hostile
/// bit rate cannot grow the recorder's memory.
pub const MAX_FRAGMENT_BYTES: usize = 8 << 20;
/// The audio of a fragment, at most: audio beyond is dropped (and counted).
const MAX_FRAGMENT_AUDIO_BYTES: usize = 1 << 20;

/// A frame as received: its time in ticks since the run started, and its data (NAL units,
/// each behind its 4-byte length).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Ticks (1/90000 s) since the run's first frame.
    pub ticks: i64,
    /// A key frame.
    pub key: bool,
    /// The frame's bytes.
    pub data: Vec<u8>,
}

/// Whether an H.265 frame (NAL units behind 4-byte lengths) is a random access point:
/// its first picture NAL is an IRAP (BLA, IDR or CRA). retina counts only IDR, but many
/// encoders start each GOP with a CRA, where a decoder can start as well.
pub fn hevc_irap(data: &[u8]) -> bool {
    let mut rest = data;
    while rest.len() > 4 {
        let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let Some(nal) = rest.get(4..4 + len) else { return false };
        let kind = nal.first().map_or(63, |b| (b >> 1) & 0x3f);
        // 0..=31 are pictures (VCL); 16..=23 of them are IRAP.
        if kind < 32 {
            return (16..=23).contains(&kind);
        }
        rest = &rest[4 + len..];
    }
    false
}

/// What the recorder must do next, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Open a new segment file (and write its init part) for a segment starting at `start`.
    Open {
        /// Ticks since the run started.
        start: i64,
    },
    /// Append this fragment to the open segment.
    Fragment(Vec<u8>),
    /// The open segment is complete.
    Close {
        /// Ticks since the run started.
        start: i64,
        /// Ticks since the run started.
        end: i64,
    },
}

/// The segment being written.
struct Open {
    start: i64,
    /// Ticks of video written to it so far (fragments flushed and the one being built).
    decode_time: i64,
    sequence: u32,
    /// The fragment being built: its video, from `video.decode_time`.
    video: Run,
    /// Its audio, in the audio's ticks.
    audio: Run,
    /// Where the next audio sample goes when it follows the last without a gap.
    audio_next: u64,
}

/// Cuts one run's frames into segments and fragments.
pub struct Cutter {
    segment_ticks: i64,
    fragment_ticks: i64,
    /// The grid point the next cut waits for; the grid starts at the run's first key frame.
    next_cut: Option<i64>,
    open: Option<Open>,
    held: Option<Frame>,
    last_duration: i64,
    /// The audio's ticks per second, when the segments carry audio.
    audio_rate: Option<u32>,
    /// Frames dropped before the first key frame.
    pub skipped: u64,
    /// Audio frames dropped: too late for a segment already closed, or beyond a fragment's bound.
    pub audio_dropped: u64,
}

impl Cutter {
    /// A cutter for segments of `segment_s` seconds in fragments of about a second.
    pub fn new(segment_s: u64) -> Self {
        let second = i64::from(fmp4::TIMESCALE);
        Self {
            segment_ticks: (segment_s.max(1) as i64) * second,
            fragment_ticks: second,
            next_cut: None,
            open: None,
            held: None,
            last_duration: second / 30,
            audio_rate: None,
            skipped: 0,
            audio_dropped: 0,
        }
    }

    /// Segments opened from now on carry audio at `rate` ticks per second (or none).
    pub fn set_audio(&mut self, rate: Option<u32>) {
        self.audio_rate = rate;
    }

    /// Takes an audio frame at `ticks` (video ticks since the run started) lasting
    /// `duration` audio ticks: it goes into the fragment being built, or is dropped outside
    /// a segment. Samples follow each other without gaps unless the audio jumps by more
    /// than half a frame (lost packets), where the next fragment starts at its real time.
    pub fn push_audio(&mut self, ticks: i64, duration: u32, data: &[u8]) {
        // Before the first key frame there is no segment to hold the sound: nothing is lost.
        let (Some(rate), Some(open)) = (self.audio_rate, &mut self.open) else { return };
        // A frame that began up to one frame before the segment (the audio lags the video
        // across a cut) starts it, rather than leaving a hole in the sound.
        let frame_ticks = i64::from(duration) * i64::from(fmp4::TIMESCALE) / i64::from(rate.max(1));
        if ticks + frame_ticks < open.start || open.audio.data.len() + data.len() > MAX_FRAGMENT_AUDIO_BYTES {
            self.audio_dropped += 1;
            return;
        }
        let at = ((ticks - open.start).max(0) as u64 * u64::from(rate)) / u64::from(fmp4::TIMESCALE);
        if open.audio.samples.is_empty() {
            let jumped = at > open.audio_next + u64::from(duration / 2);
            open.audio.decode_time = if jumped { at } else { open.audio_next };
            open.audio_next = open.audio.decode_time;
        }
        open.audio.samples.push(Sample { duration, size: data.len() as u32, key: true });
        open.audio.data.extend_from_slice(data);
        open.audio_next += u64::from(duration);
    }

    /// Whether a segment is open.
    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }

    /// Takes the next frame; returns what to do.
    pub fn push(&mut self, frame: Frame) -> Vec<Step> {
        let mut steps = Vec::new();
        let Some(held) = self.held.take() else {
            if frame.key {
                steps.push(Step::Open { start: frame.ticks });
                self.start(frame.ticks);
                self.held = Some(frame);
            } else {
                self.skipped += 1;
            }
            return steps;
        };
        let duration = (frame.ticks - held.ticks).clamp(1, MAX_FRAME_TICKS);
        self.last_duration = duration;
        self.append(held, duration);
        if frame.key && self.next_cut.is_some_and(|cut| frame.ticks >= cut) {
            steps.extend(self.close());
            steps.push(Step::Open { start: frame.ticks });
            self.start(frame.ticks);
        } else if let Some(open) = &mut self.open
            && (open.decode_time - open.video.decode_time as i64 >= self.fragment_ticks
                || open.video.data.len() >= MAX_FRAGMENT_BYTES)
        {
            steps.push(Step::Fragment(flush(open)));
        }
        self.held = Some(frame);
        steps
    }

    /// Ends the run: the held frame lasts as long as the one before it, and the segment closes.
    pub fn finish(&mut self) -> Vec<Step> {
        if let Some(held) = self.held.take() {
            self.append(held, self.last_duration);
        }
        self.close()
    }

    fn start(&mut self, at: i64) {
        let mut cut = self.next_cut.unwrap_or(at);
        while cut <= at {
            cut += self.segment_ticks;
        }
        self.next_cut = Some(cut);
        self.open = Some(Open {
            start: at,
            decode_time: 0,
            sequence: 0,
            video: Run::default(),
            audio: Run::default(),
            audio_next: 0,
        });
    }

    fn append(&mut self, frame: Frame, duration: i64) {
        let Some(open) = &mut self.open else { return };
        open.video.samples.push(Sample { duration: duration as u32, size: frame.data.len() as u32, key: frame.key });
        open.video.data.extend_from_slice(&frame.data);
        open.decode_time += duration;
    }

    fn close(&mut self) -> Vec<Step> {
        let Some(mut open) = self.open.take() else { return Vec::new() };
        let mut steps = Vec::new();
        if !open.video.samples.is_empty() {
            steps.push(Step::Fragment(flush(&mut open)));
        }
        steps.push(Step::Close { start: open.start, end: open.start + open.decode_time });
        steps
    }
}

/// The fragment of the samples gathered so far.
fn flush(open: &mut Open) -> Vec<u8> {
    open.sequence += 1;
    let fragment = fmp4::fragment(open.sequence, &open.video, &open.audio);
    open.video = Run { decode_time: open.decode_time as u64, ..Run::default() };
    open.audio = Run::default();
    fragment
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cra_or_idr_picture_is_an_hevc_random_access_point() {
        let nal = |kind: u8, len: u8| [vec![0, 0, 0, len, kind << 1, 1], vec![0; usize::from(len) - 2]].concat();
        // An SEI (39) before a CRA (21); an IDR (19); a trailing picture (1).
        assert!(hevc_irap(&[nal(39, 4), nal(21, 6)].concat()));
        assert!(hevc_irap(&nal(19, 3)));
        assert!(!hevc_irap(&[nal(39, 4), nal(1, 6), nal(21, 3)].concat()));
        // A length running past the end is not trusted.
        assert!(!hevc_irap(&[0, 0, 0, 9, 21 << 1, 1]));
        assert!(!hevc_irap(&[]));
    }

    const TICK_30FPS: i64 = 3000;

    fn frame(n: i64, key_every: i64) -> Frame {
        Frame { ticks: n * TICK_30FPS, key: n % key_every == 0, data: vec![n as u8; 10] }
    }

    fn closes(steps: &[Step]) -> Vec<(i64, i64)> {
        steps
            .iter()
            .filter_map(|s| if let Step::Close { start, end } = s { Some((*start, *end)) } else { None })
            .collect()
    }

    #[test]
    fn audio_goes_into_the_fragments_of_the_open_segment() {
        let mut cutter = Cutter::new(2);
        cutter.set_audio(Some(16_000));
        // 1024 samples at 16 kHz: 5760 video ticks a frame.
        let audio_at = |k: i64| k * 5760;
        cutter.push_audio(0, 1024, &[1; 6]);
        assert_eq!(cutter.audio_dropped, 0, "no segment open yet: not a loss");
        let (mut steps, mut k) = (Vec::new(), 0);
        for n in 0..(30 * 3) {
            steps.extend(cutter.push(frame(n, 30)));
            while audio_at(k) <= n * TICK_30FPS {
                // A lost frame: the audio jumps.
                if k != 20 {
                    cutter.push_audio(audio_at(k), 1024, &[0xaa; 6]);
                }
                k += 1;
            }
        }
        steps.extend(cutter.finish());
        let fragments: Vec<&Vec<u8>> =
            steps.iter().filter_map(|s| if let Step::Fragment(f) = s { Some(f) } else { None }).collect();
        let count = |bytes: &[u8], kind: &[u8]| bytes.windows(4).filter(|w| *w == kind).count();
        assert!(fragments.iter().all(|f| count(f, b"traf") == 2), "every fragment has video and audio");
        // 47 frames in 3 s of video, one lost; video bytes are frame numbers (< 0xaa).
        let audio_bytes: usize = fragments.iter().map(|f| f.iter().filter(|b| **b == 0xaa).count()).sum();
        assert!((46 * 6..46 * 6 + 6).contains(&audio_bytes), "{audio_bytes}");
        assert_eq!(cutter.audio_dropped, 0);
    }

    #[test]
    fn segments_start_at_key_frames_and_are_cut_on_the_grid() {
        let mut cutter = Cutter::new(2);
        let mut steps = Vec::new();
        // Key frames every second (30 frames); the first frames before a key frame are skipped.
        for n in 25..(30 * 7 + 5) {
            steps.extend(cutter.push(frame(n, 30)));
        }
        steps.extend(cutter.finish());
        assert_eq!(cutter.skipped, 5);
        assert_eq!(steps.first(), Some(&Step::Open { start: 30 * TICK_30FPS }));
        let second = 90_000;
        assert_eq!(
            closes(&steps),
            vec![
                (second, 3 * second),
                (3 * second, 5 * second),
                (5 * second, 7 * second),
                (7 * second, 7 * second + 5 * TICK_30FPS)
            ]
        );
        // About a fragment a second.
        let fragments = steps.iter().filter(|s| matches!(s, Step::Fragment(_))).count();
        assert!((6..=8).contains(&fragments), "{fragments} fragments");
    }

    #[test]
    fn a_long_gop_cuts_at_its_key_frames_and_bad_times_never_collapse() {
        let mut cutter = Cutter::new(2);
        let mut steps = Vec::new();
        // Key frames every 3 s, then a camera whose clock goes backwards by a frame.
        for n in 0..200 {
            steps.extend(cutter.push(frame(n, 90)));
        }
        steps.extend(cutter.push(Frame { ticks: 199 * TICK_30FPS, key: false, data: vec![0; 4] }));
        steps.extend(cutter.finish());
        let closed = closes(&steps);
        assert_eq!(closed[0], (0, 270_000));
        assert_eq!(closed[1], (270_000, 540_000));
        assert!(closed.iter().all(|(start, end)| end > start));
    }

    #[test]
    fn a_hostile_bit_rate_flushes_early() {
        let mut cutter = Cutter::new(60);
        let big = |n: i64| Frame { ticks: n, key: n == 0, data: vec![0; MAX_FRAGMENT_BYTES / 2 + 1] };
        let steps: Vec<Step> = (0..4).flat_map(|n| cutter.push(big(n))).collect();
        assert!(steps.iter().any(|s| matches!(s, Step::Fragment(_))), "flushed before a second of video");
    }
}
