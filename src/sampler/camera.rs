//! One camera's sampler task. It always drains the MPEG-TS copy its recorder
//! writes on fd 3; while the planned rate is above zero (workers online) it
//! runs a decoder ffmpeg on that stream, which scales and rate-limits frames
//! into JPEG, and offers each frame on `P/frames/<cam>`.

use super::jpeg::{self, JpegSplitter};
use super::ring::{FrameMeta, FrameRing};
use crate::mqtt::MqttHandle;
use crate::offers::OfferedFrames;
use crate::sys::clock::slew;
use crate::wallclock::UnixMs;
use rumqttc::QoS;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::process::{Child, ChildStdout, Command};
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::Instant;

/// Bytes read from the recorder's stream at a time.
const TS_CHUNK: usize = 64 * 1024;

/// What the camera's supervisor tells its sampler.
#[derive(Debug)]
pub enum SamplerInput {
    /// A new recorder run: its MPEG-TS stream.
    Stream(pipe::Receiver),
    /// The source's video size.
    Video(u32, u32),
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

/// The decoder ffmpeg arguments: MPEG-TS on stdin, JPEG frames at `fps`, `width` wide, on stdout.
pub fn decoder_args(fps: f64, width: u32) -> Vec<String> {
    let mut args: Vec<String> =
        ["-hide_banner", "-nostdin", "-loglevel", "error", "-fflags", "nobuffer", "-probesize", "200000"]
            .map(String::from)
            .to_vec();
    args.extend(["-f", "mpegts", "-i", "pipe:0", "-map", "0:v:0", "-vf"].map(String::from));
    args.push(format!("fps={fps},scale={width}:-2"));
    args.extend(["-c:v", "mjpeg", "-q:v", "5", "-f", "mjpeg", "pipe:1"].map(String::from));
    args
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
}

struct Decoder {
    child: Child,
    stdin: pipe::Sender,
    stdout: ChildStdout,
    fps: f64,
    /// Wall time of the decoder's stream time 0, and the frame it was last slewed at.
    anchor: Option<(UnixMs, u64)>,
    frames: u64,
}

impl CameraSampler {
    /// Runs until the supervisor goes away.
    pub async fn run(mut self) {
        let counters = self.board.counters(&self.camera);
        let mut ring = FrameRing::new(self.frame_slots, self.max_frame_bytes);
        let mut splitter = JpegSplitter::new(self.max_frame_bytes);
        let mut chunk = vec![0u8; TS_CHUNK];
        let mut stream: Option<pipe::Receiver> = None;
        let mut decoder: Option<Decoder> = None;
        let mut last_start = Instant::now() - Duration::from_secs(60);
        let mut seq: u64 = 0;
        loop {
            let rate = *self.rate.borrow();
            counters.rate_centi_fps.store((rate * 100.0).round() as u64, Ordering::Relaxed);
            let wanted = rate > 0.0 && stream.is_some();
            let restart = match &decoder {
                Some(d) => !wanted || (d.fps - rate).abs() > 1e-9,
                None => wanted,
            };
            if restart {
                if let Some(mut old) = decoder.take() {
                    let _ = old.child.start_kill();
                }
                if wanted && last_start.elapsed() >= Duration::from_secs(1) {
                    last_start = Instant::now();
                    splitter = JpegSplitter::new(self.max_frame_bytes);
                    decoder = self.start_decoder(rate);
                }
            }
            tokio::select! {
                input = self.inputs.recv() => match input {
                    Some(SamplerInput::Stream(receiver)) => {
                        stream = Some(receiver);
                        // A new recorder run starts a new stream: the decoder starts over.
                        if let Some(mut old) = decoder.take() {
                            let _ = old.child.start_kill();
                        }
                        last_start = Instant::now() - Duration::from_secs(60);
                    }
                    Some(SamplerInput::Video(w, h)) => self.board.set_size(&self.camera, (w, h)),
                    None => return,
                },
                ready = readable(&stream) => {
                    if ready.is_err() {
                        stream = None;
                        continue;
                    }
                    let Some(receiver) = &stream else { continue };
                    match receiver.try_read(&mut chunk) {
                        Ok(0) => stream = None,
                        Ok(n) => {
                            if let Some(d) = &decoder
                                && !matches!(d.stdin.try_write(&chunk[..n]), Ok(written) if written == n) {
                                    counters.stream_dropped.fetch_add(1, Ordering::Relaxed);
                                }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(_) => stream = None,
                    }
                }
                read = read_frames(&mut decoder, &mut splitter) => match read {
                    Some(n) if n > 0 => {
                        let Some(d) = decoder.as_mut() else { continue };
                        let publish = Publisher { sampler: &self, counters: &counters };
                        splitter.filled(n, |frame| publish.frame(frame, d, &mut ring, &mut seq));
                    }
                    _ => {
                        // The decoder ended; the next turn starts another while frames are wanted.
                        decoder = None;
                    }
                },
                changed = self.rate.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                () = tokio::time::sleep(Duration::from_secs(1)), if decoder.is_none() && rate > 0.0 && stream.is_some() => {}
            }
        }
    }

    fn start_decoder(&self, fps: f64) -> Option<Decoder> {
        let spawned = Command::new(&self.ffmpeg)
            .args(decoder_args(fps, self.sample_width))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) => {
                tracing::error!(camera = %self.camera, error = %e, "sampler decoder not started");
                return None;
            }
        };
        let stdout = child.stdout.take()?;
        let stdin = child.stdin.take()?.into_owned_fd().ok()?;
        let stdin = pipe::Sender::from_owned_fd(stdin).ok()?;
        tracing::debug!(camera = %self.camera, fps, width = self.sample_width, "sampler decoding");
        Some(Decoder { child, stdin, stdout, fps, anchor: None, frames: 0 })
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
        // Frames leave the fps filter exactly 1/fps apart in stream time: that clock is mapped
        // to wall time at the first frame, then slewed toward it like the recorder's segments
        // (every 2 s of stream at least, so at most 500 ppm), so frames and footage agree.
        let stream_ms = |frames: u64| (frames as f64 * 1000.0 / decoder.fps).round() as i64;
        let target = UnixMs::now().0 - stream_ms(decoder.frames);
        let (mut anchor, mut slewed_at) = decoder.anchor.unwrap_or((UnixMs(target), decoder.frames));
        let span = stream_ms(decoder.frames) - stream_ms(slewed_at);
        if span >= 2000 {
            (anchor, slewed_at) = (UnixMs(slew(anchor.0, target, span)), decoder.frames);
        }
        decoder.anchor = Some((anchor, slewed_at));
        let ts = UnixMs(anchor.0 + stream_ms(decoder.frames));
        decoder.frames += 1;
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

async fn read_frames(decoder: &mut Option<Decoder>, splitter: &mut JpegSplitter) -> Option<usize> {
    match decoder {
        Some(d) => d.stdout.read(splitter.spare(TS_CHUNK)).await.ok(),
        None => std::future::pending().await,
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

    #[test]
    fn decoder_rate_limits_and_scales() {
        let args = decoder_args(2.5, 640);
        assert!(args.contains(&"fps=2.5,scale=640:-2".to_string()));
        assert!(args.windows(2).any(|w| w == ["-f", "mjpeg"]));
    }
}
