//! One camera's sampler task. It always drains the MPEG-TS copy its recorder
//! (or, while the camera does not record, its source alone) writes on fd 3,
//! measuring the key-frame interval; while the planned rate is above zero
//! (workers online) it runs a decoder ffmpeg on that stream (`decoder.rs`)
//! and offers each frame on `P/frames/<cam>`.

use super::decoder::{DecodeMode, Decoder, DecoderPlan, HardwareDecoders};
use super::jpeg::{self, JpegSplitter};
use super::keyframes::KeyFrameMeter;
use super::ring::{FrameMeta, FrameRing};
use crate::mqtt::MqttHandle;
use crate::offers::OfferedFrames;
use crate::sys::clock::slew;
use crate::wallclock::UnixMs;
use rumqttc::QoS;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::Instant;

/// Bytes read from the recorder's stream at a time.
const TS_CHUNK: usize = 64 * 1024;

/// What the camera's supervisor tells its sampler.
#[derive(Debug)]
pub enum SamplerInput {
    /// A new recorder run: its MPEG-TS stream.
    Stream(pipe::Receiver),
    /// The stream's video codec and size.
    Video(String, u32, u32),
}

/// Counters of one camera's sampler, for `P/stats`.
#[derive(Debug, Default)]
pub struct SamplerCounters {
    /// Frames offered to workers.
    pub offered: AtomicU64,
    /// Frames dropped for exceeding `max_frame_bytes`.
    pub oversize: AtomicU64,
    /// Stream chunks the decoder could not take in time.
    pub stream_dropped: AtomicU64,
    /// Planned rate, in hundredths of a frame per second.
    pub rate_centi_fps: AtomicU64,
}

/// Source sizes and sampler counters of every camera, shared with the planner and stats.
#[derive(Clone, Default)]
pub struct SamplerBoard {
    sizes: Arc<Mutex<BTreeMap<String, (u32, u32)>>>,
    counters: Arc<Mutex<BTreeMap<String, Arc<SamplerCounters>>>>,
    /// Woken when a source size becomes known, so `P/tasks` can say the frame size.
    pub sizes_changed: Arc<Notify>,
}

impl SamplerBoard {
    /// The source size of `camera`, when known.
    pub fn size(&self, camera: &str) -> Option<(u32, u32)> {
        self.sizes.lock().unwrap_or_else(|p| p.into_inner()).get(camera).copied()
    }

    fn set_size(&self, camera: &str, size: (u32, u32)) {
        let previous = self.sizes.lock().unwrap_or_else(|p| p.into_inner()).insert(camera.to_string(), size);
        if previous != Some(size) {
            self.sizes_changed.notify_one();
        }
    }

    /// The counters of `camera`, created on first use.
    pub fn counters(&self, camera: &str) -> Arc<SamplerCounters> {
        self.counters.lock().unwrap_or_else(|p| p.into_inner()).entry(camera.to_string()).or_default().clone()
    }

    /// Counters of every camera, for `P/stats`.
    pub fn snapshot(&self) -> serde_json::Value {
        let counters = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        let cameras = counters.iter().map(|(camera, c)| {
            let value = serde_json::json!({
                "fps": c.rate_centi_fps.load(Ordering::Relaxed) as f64 / 100.0,
                "offered": c.offered.load(Ordering::Relaxed),
                "oversize": c.oversize.load(Ordering::Relaxed),
                "stream_dropped": c.stream_dropped.load(Ordering::Relaxed),
            });
            (camera.clone(), value)
        });
        serde_json::Value::Object(cameras.collect())
    }
}

/// Height of frames scaled to `width` keeping the source's aspect (ffmpeg's `scale=W:-2`).
pub fn scaled_height(width: u32, source: (u32, u32)) -> u32 {
    let (sw, sh) = (u64::from(source.0.max(1)), u64::from(source.1));
    let half = (u64::from(width) * sh + sw) / (2 * sw);
    (half * 2) as u32
}

/// One camera's sampler.
pub struct CameraSampler {
    /// Camera id.
    pub camera: String,
    /// Width of offered frames.
    pub sample_width: u32,
    /// The ffmpeg binary.
    pub ffmpeg: PathBuf,
    /// Ring slots and their size (board profile).
    pub frame_slots: usize,
    /// Largest frame.
    pub max_frame_bytes: usize,
    /// From the supervisor.
    pub inputs: mpsc::Receiver<SamplerInput>,
    /// Planned frames per second; 0 while no worker is online.
    pub rate: watch::Receiver<f64>,
    /// Frames offered, for detection validation.
    pub offered: Arc<OfferedFrames>,
    /// The broker session.
    pub mqtt: MqttHandle,
    /// Shared sizes and counters.
    pub board: SamplerBoard,
    /// The board's hardware decoders.
    pub decoders: HardwareDecoders,
    /// Counts wall-clock steps: on each, frame times are mapped to the wall clock anew.
    pub clock_steps: watch::Receiver<crate::sys::clock::Steps>,
}

/// What one sampler holds between turns of its loop.
struct Sampling {
    counters: Arc<SamplerCounters>,
    ring: FrameRing,
    splitter: JpegSplitter,
    stream: Option<pipe::Receiver>,
    decoder: Option<Decoder>,
    keyframes: KeyFrameMeter,
    /// The stream's video codec, for the board's hardware decoder.
    codec: Option<String>,
    /// Set when a hardware decoder gave no frame on this camera.
    software_only: bool,
    last_start: Instant,
    seq: u64,
}

impl Sampling {
    fn stop_decoder(&mut self) {
        if let Some(mut old) = self.decoder.take() {
            let _ = old.child.start_kill();
        }
    }
}

impl CameraSampler {
    /// Runs until what feeds it (the camera's supervisor or its sample feed) goes away.
    pub async fn run(mut self) {
        let mut s = Sampling {
            counters: self.board.counters(&self.camera),
            ring: FrameRing::new(self.frame_slots, self.max_frame_bytes),
            splitter: JpegSplitter::new(self.max_frame_bytes),
            stream: None,
            decoder: None,
            keyframes: KeyFrameMeter::default(),
            codec: None,
            software_only: false,
            last_start: Instant::now() - Duration::from_secs(60),
            seq: 0,
        };
        let mut chunk = vec![0u8; TS_CHUNK];
        loop {
            let rate = *self.rate.borrow();
            s.counters.rate_centi_fps.store((rate * 100.0).round() as u64, Ordering::Relaxed);
            self.plan_decoder(&mut s, rate);
            tokio::select! {
                input = self.inputs.recv() => match input {
                    Some(SamplerInput::Stream(receiver)) => {
                        // A new recorder run starts a new stream: the decoder starts over.
                        s.stream = Some(receiver);
                        s.keyframes = KeyFrameMeter::default();
                        s.stop_decoder();
                        s.last_start = Instant::now() - Duration::from_secs(60);
                    }
                    Some(SamplerInput::Video(codec, w, h)) => {
                        self.board.set_size(&self.camera, (w, h));
                        s.codec = Some(codec);
                    }
                    None => return,
                },
                ready = readable(&s.stream) => {
                    if ready.is_err() {
                        s.stream = None;
                    } else {
                        read_stream(&mut s, &mut chunk);
                    }
                }
                output = decoder_output(&mut s.decoder, &mut s.splitter) => match (output, s.decoder.as_mut()) {
                    (Output::Log(line), Some(d)) => d.on_log_line(&line),
                    (Output::Read(n), Some(d)) => {
                        let publish = Publisher { sampler: &self, counters: &s.counters };
                        let (ring, seq) = (&mut s.ring, &mut s.seq);
                        s.splitter.filled(n, |frame| publish.frame(frame, d, ring, seq));
                    }
                    _ => self.decoder_ended(&mut s),
                },
                Ok(()) = self.clock_steps.changed() => {
                    // The stream clock runs on; its map to the wall clock must not.
                    if let Some(d) = s.decoder.as_mut() {
                        d.anchor = None;
                    }
                }
                changed = self.rate.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                () = tokio::time::sleep(Duration::from_secs(1)), if s.decoder.is_none() && rate > 0.0 && s.stream.is_some() => {}
            }
        }
    }

    /// Starts, restarts or stops the decoder for `rate`, the key-frame interval seen and the
    /// stream's codec (known from the recorder's log, often after the decoder started).
    fn plan_decoder(&self, s: &mut Sampling, rate: f64) {
        let wanted = rate > 0.0 && s.stream.is_some();
        let restart = match &s.decoder {
            Some(d) => {
                !wanted
                    || (d.plan.fps - rate).abs() > 1e-9
                    || d.plan.mode != DecodeMode::after(d.plan.mode, rate, s.keyframes.interval())
                    || d.plan.codec.as_deref() != self.hardware(s)
            }
            None => wanted,
        };
        if restart {
            s.stop_decoder();
            if wanted && s.last_start.elapsed() >= Duration::from_secs(1) {
                s.last_start = Instant::now();
                s.splitter = JpegSplitter::new(self.max_frame_bytes);
                s.decoder = self.start_decoder(rate, s);
            }
        }
    }

    /// The decoder ended: the next turn starts another while frames are wanted. A hardware
    /// decoder that gave no frame is not tried again on this camera.
    fn decoder_ended(&self, s: &mut Sampling) {
        if let Some(d) = s.decoder.take()
            && d.plan.codec.is_some()
            && d.last_time.is_none()
            && !s.software_only
        {
            tracing::warn!(camera = %self.camera, decoder = ?d.plan.codec, "hardware decoder gave no frame: decoding in software");
            s.software_only = true;
        }
    }

    /// The board's hardware decoder for the stream's codec, unless one failed on this camera.
    fn hardware<'a>(&'a self, s: &Sampling) -> Option<&'a str> {
        s.codec.as_deref().and_then(|c| self.decoders.for_codec(c)).filter(|_| !s.software_only)
    }

    /// A decoder for `fps`, in the mode the key-frame interval seen allows.
    fn start_decoder(&self, fps: f64, s: &Sampling) -> Option<Decoder> {
        let mode = DecodeMode::for_rate(fps, s.keyframes.interval());
        let hardware = self.hardware(s);
        let plan = DecoderPlan { fps, width: self.sample_width, mode, codec: hardware.map(String::from) };
        match Decoder::start(&self.ffmpeg, plan) {
            Ok(decoder) => {
                tracing::debug!(camera = %self.camera, fps, width = self.sample_width, mode = ?mode, hardware, "sampler decoding");
                Some(decoder)
            }
            Err(e) => {
                tracing::error!(camera = %self.camera, error = %e, "sampler decoder not started");
                None
            }
        }
    }
}

/// A `P/frames/<cam>` payload: one line of JSON header, `\n`, the JPEG.
pub fn frame_message(camera: &str, meta: &FrameMeta, jpeg: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut payload = Vec::with_capacity(jpeg.len() + 160);
    // Written field by field: no intermediate JSON value per frame.
    let _ = write!(
        payload,
        r#"{{"v":1,"camera":"{camera}","seq":{},"ts":"{}","width":{},"height":{},"format":"jpeg"}}"#,
        meta.seq, meta.ts, meta.width, meta.height
    );
    payload.push(b'\n');
    payload.extend_from_slice(jpeg);
    payload
}

struct Publisher<'a> {
    sampler: &'a CameraSampler,
    counters: &'a SamplerCounters,
}

impl Publisher<'_> {
    fn frame(&self, jpeg_bytes: &[u8], decoder: &mut Decoder, ring: &mut FrameRing, seq: &mut u64) {
        // Each frame's stream time is mapped to wall time at the first frame, then slewed
        // toward it like the recorder's segments (every 2 s of stream at least, so at most
        // 500 ppm), so frames and footage agree.
        let time = decoder.next_time();
        let target = UnixMs::now().0 - (time * 1000.0).round() as i64;
        let (mut anchor, mut slewed_at) = decoder.anchor.unwrap_or((UnixMs(target), time));
        let span = ((time - slewed_at) * 1000.0).round() as i64;
        if span >= 2000 {
            (anchor, slewed_at) = (UnixMs(slew(anchor.0, target, span)), time);
        }
        decoder.anchor = Some((anchor, slewed_at));
        let ts = UnixMs(anchor.0 + (time * 1000.0).round() as i64);
        let Some((width, height)) = jpeg::dimensions(jpeg_bytes) else { return };
        *seq += 1;
        let meta = FrameMeta { seq: *seq, ts, width, height };
        if ring.push(meta, jpeg_bytes).is_err() {
            self.counters.oversize.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let camera = &self.sampler.camera;
        let payload = frame_message(camera, &meta, jpeg_bytes);
        self.sampler.offered.offer(camera, *seq, ts);
        let topic = self.sampler.mqtt.topics().frames(camera);
        self.sampler.mqtt.publish(topic, payload, QoS::AtMostOnce, false);
        self.counters.offered.fetch_add(1, Ordering::Relaxed);
    }
}

async fn readable(stream: &Option<pipe::Receiver>) -> std::io::Result<()> {
    match stream {
        Some(receiver) => receiver.readable().await,
        None => std::future::pending().await,
    }
}

/// Reads what the recorder wrote, measures its key frames, and passes it to the decoder.
fn read_stream(s: &mut Sampling, chunk: &mut [u8]) {
    let Some(receiver) = &s.stream else { return };
    match receiver.try_read(chunk) {
        Ok(0) => s.stream = None,
        Ok(n) => {
            s.keyframes.feed(&chunk[..n]);
            if let Some(d) = &s.decoder
                && !matches!(d.stdin.try_write(&chunk[..n]), Ok(written) if written == n)
            {
                s.counters.stream_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        Err(_) => s.stream = None,
    }
}

/// What the decoder gave.
enum Output {
    /// A line of its log.
    Log(String),
    /// This many bytes of JPEG into the splitter.
    Read(usize),
    /// It ended.
    Ended,
}

/// The decoder's next log line or JPEG bytes. Its log goes first: a frame's stream time is
/// logged before the frame is written.
async fn decoder_output(decoder: &mut Option<Decoder>, splitter: &mut JpegSplitter) -> Output {
    let Some(d) = decoder else { return std::future::pending().await };
    tokio::select! {
        biased;
        Ok(Some(line)) = d.log.next_line() => Output::Log(line),
        read = d.stdout.read(splitter.spare(TS_CHUNK)) => match read {
            Ok(n) if n > 0 => Output::Read(n),
            _ => Output::Ended,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaled_height_matches_ffmpeg_scale_minus_two() {
        assert_eq!(scaled_height(640, (1920, 1080)), 360);
        assert_eq!(scaled_height(640, (1280, 720)), 360);
        assert_eq!(scaled_height(640, (640, 480)), 480);
        assert_eq!(scaled_height(320, (1000, 333)), 106);
    }

    #[test]
    fn frame_message_is_a_json_line_then_the_jpeg() {
        let meta = FrameMeta { seq: 7, ts: UnixMs(1000), width: 640, height: 360 };
        let payload = frame_message("front", &meta, &[0xFF, 0xD8, 0xFF, 0xD9]);
        let newline = payload.iter().position(|b| *b == b'\n').expect("newline");
        let header: serde_json::Value = serde_json::from_slice(&payload[..newline]).expect("json");
        assert_eq!(
            header,
            serde_json::json!({"v": 1, "camera": "front", "seq": 7, "ts": "1970-01-01T00:00:01.000Z",
                "width": 640, "height": 360, "format": "jpeg"})
        );
        assert_eq!(&payload[newline + 1..], &[0xFF, 0xD8, 0xFF, 0xD9]);
    }
}
