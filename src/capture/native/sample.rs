//! The sampler's copy of the stream, from the frames the recorder already
//! has: Annex B with the parameter sets at each key frame, in MPEG-TS on the
//! pipe the sampler reads (as ffmpeg writes it on fd 3). No second
//! connection to the camera and no decode here. A sampler that falls behind
//! loses whole frames up to the next key frame, counted, never the recording.

use super::ts::{TsCodec, TsMuxer, lengths_to_start_codes};
use retina::codec::VideoParametersCodec;
use tokio::net::unix::pipe;

/// Bytes waiting for the pipe, at most (about two seconds of a 3 Mb/s stream).
const MAX_PENDING: usize = 1 << 20;

/// Writes the sampler's stream.
pub struct SampleStream {
    pipe: pipe::Sender,
    muxer: TsMuxer,
    /// Parameter sets behind start codes, put before each key frame.
    parameter_sets: Vec<u8>,
    pending: Vec<u8>,
    /// Frames are dropped until the next key frame.
    dropping: bool,
    /// A key frame has come: frames dropped from now on are a loss.
    keyed: bool,
    /// Frames dropped because the sampler fell behind.
    pub dropped: u64,
}

impl SampleStream {
    /// A stream of `codec` into `pipe`.
    pub fn new(pipe: pipe::Sender, codec: &str) -> Self {
        let codec = if codec == "hevc" { TsCodec::H265 } else { TsCodec::H264 };
        Self {
            pipe,
            muxer: TsMuxer::new(codec),
            parameter_sets: Vec::new(),
            pending: Vec::new(),
            dropping: true,
            keyed: false,
            dropped: 0,
        }
    }

    /// Takes the stream's parameter sets (new at the start and whenever the camera changes them).
    pub fn set_parameters(&mut self, codec: &VideoParametersCodec) {
        let sets: Vec<&[u8]> = match codec {
            VideoParametersCodec::H264 { sps, pps } => vec![sps, pps],
            VideoParametersCodec::H265 { vps, sps, pps } => vec![vps, sps, pps],
            _ => Vec::new(),
        };
        self.parameter_sets.clear();
        for set in sets {
            self.parameter_sets.extend_from_slice(&[0, 0, 0, 1]);
            self.parameter_sets.extend_from_slice(set);
        }
    }

    /// Skips a frame no one wants: the stream resumes at the next key frame, nothing counted.
    pub fn pause(&mut self) {
        self.dropping = true;
        // What is pending still goes out: a TS packet cut short would derail the reader.
        let _ = self.flush();
    }

    /// Passes one frame (NAL units behind 4-byte lengths) shown at `ticks` (90 kHz).
    /// `false` once the sampler has gone away.
    pub fn frame(&mut self, ticks: i64, key: bool, data: &[u8]) -> bool {
        if key {
            self.dropping = false;
            self.keyed = true;
        }
        if self.dropping || self.pending.len() >= MAX_PENDING {
            // Frames before the first key frame are no loss: the sampler could not use them.
            self.dropped += u64::from(self.keyed);
            self.dropping = true;
        } else {
            let mut annex_b = Vec::with_capacity(self.parameter_sets.len() + data.len());
            if key {
                annex_b.extend_from_slice(&self.parameter_sets);
            }
            let at = annex_b.len();
            annex_b.extend_from_slice(data);
            if lengths_to_start_codes(&mut annex_b[at..]) {
                self.muxer.frame(ticks.max(0) as u64, key, &annex_b, &mut self.pending);
            }
        }
        self.flush()
    }

    /// Writes what the pipe takes now.
    fn flush(&mut self) -> bool {
        while !self.pending.is_empty() {
            match self.pipe.try_write(&self.pending) {
                Ok(n) => {
                    self.pending.drain(..n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
                Err(_) => return false,
            }
        }
        true
    }
}
