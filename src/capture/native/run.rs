//! One run of the native recorder: play the camera, cut its frames into
//! segments (`cutter.rs`), write them (`files.rs`), pass the frames to the
//! sampler (`sample.rs`), and say what happens; until told to stop, the
//! camera goes quiet or an error ends it. The open segment is always closed
//! and listed, so it is indexed like any other.

use super::NativeEvent;
use super::batching::ReadBatching;
use super::connect::{self, Playing};
use super::cutter::{self, Cutter, Frame, Step};
use super::files::{self, SegmentFile};
use super::fmp4;
use super::sample::SampleStream;
use crate::capture::ffmpeg::{ListedSegment, StderrLine};
use crate::capture::recorder::{NativeRun, Recorder};
use crate::wallclock::UnixMs;
use futures::StreamExt;
use retina::codec::{AudioFrame, CodecItem, VideoFrame, VideoParameters};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::net::unix::pipe;
use tokio::sync::{mpsc, oneshot, watch};

/// No frame for this long: the camera is gone.
const FRAME_TIMEOUT: Duration = Duration::from_secs(10);
/// No frame for this long: the camera has gone quiet, what it sent is read at once.
const QUIET: Duration = Duration::from_secs(1);
/// Events waiting for the supervisor, at most; progress is dropped beyond.
const EVENTS: usize = 64;

/// What one native run records.
pub struct NativePlan {
    /// Camera id.
    pub camera: String,
    /// The `rtsp://` URL, password spliced in (it is taken out again before connecting).
    pub url: String,
    /// Segment length in seconds.
    pub segment_s: u64,
    /// Root of all segments.
    pub recordings_dir: PathBuf,
    /// This run's token in the segment names.
    pub run: String,
    /// Write segments; without, only the sampler's stream is written.
    pub segments: bool,
    /// The sampler's end of its stream, when the camera is sampled.
    pub sample: Option<pipe::Sender>,
    /// The sampler's planned rate: while 0 (no worker takes frames) its stream is not
    /// written, and resumes at the next key frame.
    pub sample_rate: Option<watch::Receiver<f64>>,
}

/// Starts a run of `plan`.
pub fn spawn(plan: NativePlan) -> Recorder {
    let (events, receiver) = mpsc::channel(EVENTS);
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(async move {
        let why = match record(plan, &events, stopped).await {
            Ok(()) => "stopped".to_string(),
            Err(why) => {
                let _ = events.send(NativeEvent::Said(StderrLine::Error(why.clone()))).await;
                why
            }
        };
        drop(events);
        why
    });
    Recorder::Native(NativeRun { task, events: receiver, stop })
}

async fn record(
    mut plan: NativePlan,
    events: &mpsc::Sender<NativeEvent>,
    mut stop: oneshot::Receiver<()>,
) -> Result<(), String> {
    let (url, creds) = connect::split_credentials(&plan.url)?;
    let Playing { mut demuxed, video, audio, codec, connection } = tokio::select! {
        _ = &mut stop => return Ok(()),
        playing = connect::play(url, creds) => playing?,
    };
    tracing::debug!(camera = %plan.camera, batched = connection.is_some(), "playing");
    let sample = plan.sample.take().map(|pipe| SampleStream::new(pipe, codec));
    let audio_stream = audio.as_ref().map(|(stream, _)| *stream);
    let mut recording = Recording::new(&plan, events, codec, sample, audio.map(|(_, track)| track));
    // One timer for the run, not one per frame: every second it checks when the last video
    // frame came.
    let mut watchdog = tokio::time::interval(QUIET);
    watchdog.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_video = Instant::now();
    let mut batching = ReadBatching::new(last_video);
    let set_mark = |mark: Option<u32>| {
        let (Some(mark), Some(connection)) = (mark, &connection) else { return };
        match crate::sys::socket::set_receive_low_water(connection, mark) {
            Ok(()) => tracing::debug!(camera = %plan.camera, bytes = mark, "read batching"),
            Err(e) => tracing::debug!(camera = %plan.camera, error = %e, "cannot batch the camera's reads"),
        }
    };
    let ended = loop {
        let item = tokio::select! {
            _ = &mut stop => break Ok(()),
            _ = watchdog.tick() => {
                let quiet = last_video.elapsed();
                if quiet > FRAME_TIMEOUT {
                    break Err(format!("no frame from the camera for {} s", FRAME_TIMEOUT.as_secs()));
                }
                if quiet > QUIET {
                    set_mark(batching.quiet(Instant::now()));
                }
                continue;
            }
            item = demuxed.next() => item,
        };
        match item {
            None => break Err("the camera ended the session".to_string()),
            Some(Err(e)) => break Err(e.to_string()),
            Some(Ok(CodecItem::VideoFrame(frame))) if frame.stream_id() == video => {
                last_video = Instant::now();
                set_mark(batching.received(last_video, frame.data().len()));
                // Cloned only when new: most frames keep the parameters they had.
                let fresh = frame.has_new_parameters() || recording.params.is_none();
                let params = match demuxed.streams()[video].parameters() {
                    Some(retina::codec::ParametersRef::Video(params)) if fresh => Some(params.clone()),
                    _ => None,
                };
                if let Err(why) = recording.frame(frame, params).await {
                    break Err(why);
                }
            }
            Some(Ok(CodecItem::AudioFrame(frame))) if Some(frame.stream_id()) == audio_stream => {
                set_mark(batching.received(Instant::now(), frame.data().len()));
                recording.audio_frame(&frame);
            }
            Some(Ok(_)) => {}
        }
    };
    let closed = recording.finish().await;
    recording.report_losses();
    ended.and(closed)
}

/// The state of one run.
struct Recording<'a> {
    plan: &'a NativePlan,
    events: &'a mpsc::Sender<NativeEvent>,
    codec: &'static str,
    cutter: Cutter,
    params: Option<VideoParameters>,
    /// The audio track the segments carry, if any.
    audio: Option<fmp4::AudioTrack>,
    init: Vec<u8>,
    file: Option<SegmentFile>,
    sample: Option<SampleStream>,
    first_ticks: Option<i64>,
    /// Frames since the last progress report, and the stream time of that report.
    frames: (u32, i64),
}

impl<'a> Recording<'a> {
    fn new(
        plan: &'a NativePlan,
        events: &'a mpsc::Sender<NativeEvent>,
        codec: &'static str,
        sample: Option<SampleStream>,
        audio: Option<fmp4::AudioTrack>,
    ) -> Self {
        let mut cutter = Cutter::new(plan.segment_s);
        cutter.set_audio(audio.as_ref().map(|track| track.rate));
        Self {
            plan,
            events,
            codec,
            cutter,
            params: None,
            audio,
            init: Vec::new(),
            file: None,
            sample,
            first_ticks: None,
            frames: (0, 0),
        }
    }

    /// One video frame; `params` are the stream's parameters when they are new.
    async fn frame(&mut self, frame: VideoFrame, params: Option<VideoParameters>) -> Result<(), String> {
        if let Some(params) = params
            && self.params.as_ref() != Some(&params)
        {
            self.new_parameters(params).await?;
        }
        if self.params.is_none() {
            return Ok(());
        }
        let ticks = frame.timestamp().elapsed() - *self.first_ticks.get_or_insert(frame.timestamp().elapsed());
        let key = frame.is_random_access_point() || (self.codec == "hevc" && cutter::hevc_irap(frame.data()));
        let wanted = self.plan.sample_rate.as_ref().is_none_or(|rate| *rate.borrow() > 0.0);
        if let Some(sample) = &mut self.sample {
            if !wanted {
                sample.pause();
            } else if !sample.frame(ticks, key, frame.data()) {
                self.sample = None;
            }
        }
        self.progress(ticks);
        if self.plan.segments {
            let steps = self.cutter.push(Frame { ticks, key, data: frame.into_data() });
            self.apply(steps).await?;
        }
        Ok(())
    }

    /// One audio frame: placed on the video's timeline (both count from the start PLAY
    /// announced), in the segment being written.
    fn audio_frame(&mut self, frame: &AudioFrame) {
        let (Some(track), Some(first)) = (&self.audio, self.first_ticks) else { return };
        let ticks = frame.timestamp().elapsed() * i64::from(fmp4::TIMESCALE) / i64::from(track.rate.max(1)) - first;
        if self.plan.segments {
            self.cutter.push_audio(ticks, frame.frame_length().get(), frame.data());
        }
    }

    /// New parameters: a segment open under the old ones closes, the next opens with a new
    /// init part (a new picture size or new parameter sets need their own sample entry).
    async fn new_parameters(&mut self, params: VideoParameters) -> Result<(), String> {
        let entry = params.mp4_sample_entry().build().map_err(|e| format!("unusable video parameters: {e}"))?;
        let steps = self.cutter.finish();
        self.apply(steps).await?;
        let (width, height) = params.pixel_dimensions();
        self.init = fmp4::init_segment(&entry, width, height, self.audio.as_ref());
        if let Some(sample) = &mut self.sample {
            sample.set_parameters(params.codec_params());
        }
        tracing::debug!(camera = %self.plan.camera, codec = params.rfc6381_codec(), width, height, "video parameters");
        self.say(StderrLine::Video(self.codec.to_string(), width, height)).await;
        self.params = Some(params);
        Ok(())
    }

    /// Reports progress about once a second of stream: the supervisor's stall watchdog and
    /// the camera's fps follow it.
    fn progress(&mut self, ticks: i64) {
        self.frames.0 += 1;
        let span = ticks - self.frames.1;
        if span < i64::from(fmp4::TIMESCALE) && self.frames.0 > 1 {
            return;
        }
        let fps = f64::from(self.frames.0) * f64::from(fmp4::TIMESCALE) / span.max(1) as f64;
        let _ = self.events.try_send(NativeEvent::Progress { out_time_us: ticks * 1000 / 90, fps });
        self.frames = (0, ticks);
    }

    async fn apply(&mut self, steps: Vec<Step>) -> Result<(), String> {
        for step in steps {
            match step {
                Step::Open { .. } => {
                    let plan = self.plan;
                    let file = files::create(&plan.recordings_dir, &plan.camera, &plan.run, UnixMs::now(), &self.init)
                        .await
                        .map_err(|e| format!("cannot create a segment under {}: {e}", plan.recordings_dir.display()))?;
                    self.say(StderrLine::Opening(file.path.to_string_lossy().into_owned())).await;
                    self.file = Some(file);
                }
                Step::Fragment(bytes) => {
                    if let Some(file) = &mut self.file {
                        file.append(&bytes).await.map_err(|e| format!("cannot write {}: {e}", file.path.display()))?;
                    }
                }
                Step::Close { start, end } => {
                    if let Some(file) = self.file.take() {
                        let second = f64::from(fmp4::TIMESCALE);
                        let listed = ListedSegment {
                            file: file.name(),
                            start_s: start as f64 / second,
                            end_s: end as f64 / second,
                        };
                        let _ = self.events.send(NativeEvent::Closed(listed)).await;
                    }
                }
            }
        }
        Ok(())
    }

    /// Closes the open segment.
    async fn finish(&mut self) -> Result<(), String> {
        let steps = self.cutter.finish();
        self.apply(steps).await
    }

    /// Logs what this run had to drop: frames the sampler fell behind on, audio outside a segment.
    fn report_losses(&self) {
        let sampler = self.sample.as_ref().map_or(0, |s| s.dropped);
        let audio = self.cutter.audio_dropped;
        if sampler > 0 || audio > 0 {
            tracing::warn!(camera = %self.plan.camera, sampler_frames = sampler, audio_frames = audio, "frames dropped in this run");
        }
    }

    async fn say(&self, line: StderrLine) {
        let _ = self.events.send(NativeEvent::Said(line)).await;
    }
}
