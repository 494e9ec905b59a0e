//! The sampler's decoder ffmpeg: MPEG-TS in, JPEG frames out, each frame's
//! stream time read from `showinfo` on its log. It decodes only what the rate
//! needs: key frames alone while frames are wanted no more often than the
//! camera sends key frames.

use crate::sys::lines::BoundedLines;
use std::collections::VecDeque;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::BufReader;
use tokio::net::unix::pipe;
use tokio::process::{Child, ChildStderr, ChildStdout, Command};

/// Stream times waiting for their frame, at most.
const PENDING_TIMES: usize = 16;

/// The board's hardware decoders per codec (`h264_v4l2m2m`, …), from its profile. A camera
/// whose hardware decoder gives no frame falls back to ffmpeg's software decoder.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HardwareDecoders {
    /// For H.264 streams.
    pub h264: Option<String>,
    /// For H.265 streams.
    pub hevc: Option<String>,
}

impl HardwareDecoders {
    /// The decoder for `codec` (ffmpeg's name: `h264`, `hevc`), if the board has one.
    pub fn for_codec(&self, codec: &str) -> Option<&str> {
        match codec {
            "h264" => self.h264.as_deref(),
            "hevc" => self.hevc.as_deref(),
            _ => None,
        }
    }
}

/// What goes to the decoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeMode {
    /// Every frame, those not needed dropped after decoding.
    All,
    /// Key frames only: the others are skipped before decoding.
    KeyFrames,
}

impl DecodeMode {
    /// Key frames only when frames are wanted at most once per key-frame `interval` (with 5 %
    /// slack for a camera whose key frames come a little late).
    pub fn for_rate(fps: f64, interval: Option<Duration>) -> Self {
        Self::after(Self::All, fps, interval)
    }

    /// Like `for_rate`, for a decoder running in mode `now`: key frames stay until the step is
    /// 15 % under the interval, so a key-frame interval that wobbles does not restart it.
    pub fn after(now: Self, fps: f64, interval: Option<Duration>) -> Self {
        let slack = if now == Self::KeyFrames { 0.85 } else { 0.95 };
        match interval {
            Some(interval) if fps > 0.0 && 1.0 / fps >= interval.as_secs_f64() * slack => Self::KeyFrames,
            _ => Self::All,
        }
    }
}

/// How the decoder runs: rate, width, mode, and the board's decoder for the stream's codec.
#[derive(Clone, Debug, PartialEq)]
pub struct DecoderPlan {
    /// Frames per second wanted.
    pub fps: f64,
    /// Width of the frames.
    pub width: u32,
    /// What is decoded.
    pub mode: DecodeMode,
    /// A hardware decoder (`h264_v4l2m2m`, …); `None` for ffmpeg's software decoder.
    pub codec: Option<String>,
}

/// The decoder ffmpeg arguments: MPEG-TS on stdin, JPEG frames on stdout, `showinfo` on stderr.
pub fn decoder_args(plan: &DecoderPlan) -> Vec<String> {
    // No probing beyond the stream's first packets: probing decodes several frames before the
    // first comes out, and with key frames alone that is several key-frame intervals. What
    // probing read is kept (no `-fflags nobuffer`): it holds the first key frame.
    let mut args: Vec<String> =
        ["-hide_banner", "-nostdin", "-nostats", "-loglevel", "info", "-probesize", "200000", "-analyzeduration", "1"]
            .map(String::from)
            .to_vec();
    if plan.mode == DecodeMode::KeyFrames {
        args.extend(["-skip_frame", "nokey"].map(String::from));
    }
    if let Some(codec) = &plan.codec {
        args.extend(["-c:v".to_string(), codec.clone()]);
    }
    args.extend(["-f", "mpegts", "-i", "pipe:0", "-map", "0:v:0", "-vf"].map(String::from));
    args.push(format!("{},scale={}:-2,showinfo", select_filter(plan.fps), plan.width));
    args.extend(["-fps_mode", "passthrough", "-c:v", "mjpeg", "-q:v", "5", "-f", "mjpeg", "pipe:1"].map(String::from));
    args
}

/// A `select` that keeps frames `1/fps` apart on a grid in stream time, each frame its own
/// time: the first frame at or after each grid point (less 15 % of the step), the grid moved
/// on when the stream jumps.
fn select_filter(fps: f64) -> String {
    let (step, slack) = (1.0 / fps, 0.15 / fps);
    format!("select='if(gte(t,ld(0)-{slack:.3}),st(0,max(ld(0)+{step:.3},t+{step:.3}-{slack:.3}))*0+1,0)'")
}

/// The stream time of a frame, from a `showinfo` log line.
pub fn showinfo_pts_time(line: &str) -> Option<f64> {
    if !line.contains("Parsed_showinfo") {
        return None;
    }
    let rest = line.split_once("pts_time:")?.1;
    rest.split_whitespace().next()?.parse().ok().filter(|t: &f64| t.is_finite())
}

/// A running decoder ffmpeg.
pub struct Decoder {
    /// The process.
    pub child: Child,
    /// Where the stream goes in.
    pub stdin: pipe::Sender,
    /// JPEG frames.
    pub stdout: ChildStdout,
    /// Its log, for the frames' stream times.
    pub log: BoundedLines<BufReader<ChildStderr>>,
    /// How it was started.
    pub plan: DecoderPlan,
    /// Stream times of frames not yet out on stdout.
    pub times: VecDeque<f64>,
    /// Wall time of stream time 0, and the stream time (seconds) it was last slewed at.
    pub anchor: Option<(crate::wallclock::UnixMs, f64)>,
    /// Stream time of the last frame.
    pub last_time: Option<f64>,
}

impl Decoder {
    /// Starts `ffmpeg` per `plan`.
    pub fn start(ffmpeg: &Path, plan: DecoderPlan) -> std::io::Result<Self> {
        let mut child = Command::new(ffmpeg)
            .args(decoder_args(&plan))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let missing = || std::io::Error::other("decoder pipes missing");
        let stdout = child.stdout.take().ok_or_else(missing)?;
        let stderr = child.stderr.take().ok_or_else(missing)?;
        let stdin = pipe::Sender::from_owned_fd(child.stdin.take().ok_or_else(missing)?.into_owned_fd()?)?;
        let log = BoundedLines::new(BufReader::new(stderr));
        Ok(Self { child, stdin, stdout, log, plan, times: VecDeque::new(), anchor: None, last_time: None })
    }

    /// Notes a frame's stream time from a log line.
    pub fn on_log_line(&mut self, line: &str) {
        if let Some(time) = showinfo_pts_time(line) {
            if self.times.len() == PENDING_TIMES {
                self.times.pop_front();
            }
            self.times.push_back(time);
        }
    }

    /// The stream time of the next frame out: its own, else one step after the last.
    pub fn next_time(&mut self) -> f64 {
        let time = self.times.pop_front().unwrap_or_else(|| self.last_time.map_or(0.0, |t| t + 1.0 / self.plan.fps));
        self.last_time = Some(time);
        time
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_frames_alone_while_the_step_is_at_least_the_key_frame_interval() {
        let two = Some(Duration::from_secs(2));
        assert_eq!(DecodeMode::for_rate(0.5, two), DecodeMode::KeyFrames);
        assert_eq!(DecodeMode::for_rate(0.51, two), DecodeMode::KeyFrames);
        assert_eq!(DecodeMode::for_rate(1.0, two), DecodeMode::All);
        assert_eq!(DecodeMode::for_rate(0.5, None), DecodeMode::All);
        let wobbly = Some(Duration::from_millis(2200));
        assert_eq!(DecodeMode::after(DecodeMode::KeyFrames, 0.5, wobbly), DecodeMode::KeyFrames);
        assert_eq!(DecodeMode::after(DecodeMode::All, 0.5, wobbly), DecodeMode::All);
        assert_eq!(DecodeMode::after(DecodeMode::KeyFrames, 0.5, Some(Duration::from_secs(3))), DecodeMode::All);
    }

    #[test]
    fn decoder_skips_non_key_frames_and_selects_on_a_grid() {
        let plan = DecoderPlan { fps: 0.5, width: 640, mode: DecodeMode::KeyFrames, codec: None };
        let args = decoder_args(&plan);
        assert!(args.windows(2).any(|w| w == ["-skip_frame", "nokey"]));
        let filter = args.iter().find(|a| a.starts_with("select=")).expect("filter");
        assert_eq!(
            filter,
            "select='if(gte(t,ld(0)-0.300),st(0,max(ld(0)+2.000,t+2.000-0.300))*0+1,0)',scale=640:-2,showinfo"
        );
        assert!(args.windows(2).any(|w| w == ["-f", "mjpeg"]));
        let hardware = DecoderPlan { mode: DecodeMode::All, codec: Some("h264_v4l2m2m".into()), ..plan };
        let args = decoder_args(&hardware);
        assert!(!args.iter().any(|a| a == "-skip_frame"));
        let codec = args.iter().position(|a| a == "h264_v4l2m2m").expect("codec");
        assert!(codec < args.iter().position(|a| a == "-i").expect("input"), "the decoder is an input option");
    }

    #[test]
    fn reads_frame_times_from_showinfo() {
        let line = "[Parsed_showinfo_2 @ 0x55d] n:   3 pts:  540000 pts_time:6       duration:   3000 fmt:yuvj420p";
        assert_eq!(showinfo_pts_time(line), Some(6.0));
        assert_eq!(showinfo_pts_time("[Parsed_showinfo_2 @ 0x55d] config in time_base: 1/90000"), None);
        assert_eq!(showinfo_pts_time("pts_time:3 somewhere else"), None);
    }
}
