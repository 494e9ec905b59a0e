//! One supervisor task per camera: runs the recording ffmpeg, indexes each
//! segment the moment ffmpeg closes it, watches for stalls, restarts with
//! capped backoff, and reports the camera's state and events.

use super::ffmpeg::{self, ListedSegment, RecorderPlan, StderrLine};
use super::health::{CameraHealth, CameraState, HealthEvent};
use super::source::Source;
use crate::config::schema::{CameraConfig, RecordMode, V4l2Config};
use crate::heartbeat::{Heartbeat, beating};
use crate::mqtt::MqttHandle;
use crate::outbox::{EventSink, EventType, NewEvent};
use crate::recording::index::{self, Gap, NewSegment};
use crate::recording::layout;
use crate::sampler::camera::SamplerInput;
use crate::store::Store;
use crate::sys::backoff::{Backoff, clock_jitter};
use crate::sys::scrub::scrub;
use crate::wallclock::UnixMs;
use rumqttc::QoS;
use serde_json::json;
use std::collections::VecDeque;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStderr, ChildStdout, Command};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// No progress for this long means the source stalled: ffmpeg is restarted.
const STALL_TIMEOUT: Duration = Duration::from_secs(20);
/// A run that delivered this long resets the restart backoff.
const HEALTHY_RUN: Duration = Duration::from_secs(60);
/// How long a stopping ffmpeg may take to close its last segment.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// ffmpeg log lines logged per camera per minute, at most.
const LOG_LINES_PER_MINUTE: u32 = 20;

/// Everything a camera's supervisor needs.
#[derive(Clone)]
pub struct CameraSupervisor {
    /// The camera's config.
    pub camera: CameraConfig,
    /// Its source, credentials spliced in.
    pub source: Source,
    /// Strings scrubbed from everything logged (the camera password).
    pub secrets: Vec<String>,
    /// Root of all segments.
    pub recordings_dir: PathBuf,
    /// The board's H.264 encoder.
    pub encoder: String,
    /// The ffmpeg binary.
    pub ffmpeg: PathBuf,
    /// The index.
    pub store: Store,
    /// Where events go.
    pub events: EventSink,
    /// The broker session.
    pub mqtt: MqttHandle,
    /// Where `P/stats` finds this camera's state.
    pub states: super::CameraStates,
    /// The camera's sampler, when it is sampled.
    pub sampler: Option<mpsc::Sender<SamplerInput>>,
    /// Beats every second while the supervisor runs (the systemd watchdog watches it).
    pub heartbeat: Heartbeat,
}

/// Measurements of the current ffmpeg run.
struct Run {
    started: Instant,
    last_progress: Instant,
    out_time_us: i64,
    fps: f64,
    anchor_ms: Option<i64>,
    opened: VecDeque<String>,
    video: Option<(String, u32, u32)>,
    delivered: bool,
}

impl Run {
    fn new() -> Self {
        let now = Instant::now();
        Self {
            started: now,
            last_progress: now,
            out_time_us: -1,
            fps: 0.0,
            anchor_ms: None,
            opened: VecDeque::new(),
            video: None,
            delivered: false,
        }
    }
}

impl CameraSupervisor {
    fn id(&self) -> &str {
        &self.camera.id
    }

    /// Supervises the camera until `stop` turns true; records while `mode` is not `Off`.
    pub async fn run(self, mut stop: watch::Receiver<bool>, mut mode: watch::Receiver<RecordMode>) {
        let last_end = match self
            .store
            .call({
                let camera = self.id().to_string();
                move |conn| index::last_segment_end(conn, &camera)
            })
            .await
        {
            Ok(end) => end,
            Err(e) => {
                tracing::warn!(camera = %self.id(), error = %e, "last segment unknown");
                None
            }
        };
        let mut health = CameraHealth::new(UnixMs::now(), last_end, *mode.borrow() == RecordMode::Off);
        let mut measures = Measures::default();
        self.publish_state(&health, &measures);
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        loop {
            if *mode.borrow_and_update() == RecordMode::Off {
                health.on_disabled(UnixMs::now());
                self.publish_state(&health, &measures);
                tracing::info!(camera = %self.id(), "recording off");
                let turned = beating(&self.heartbeat, async {
                    tokio::select! {
                        () = stopped(&mut stop) => false,
                        changed = mode.changed() => changed.is_ok(),
                    }
                })
                .await;
                if !turned {
                    beating(&self.heartbeat, stopped(&mut stop)).await;
                    return;
                }
                continue;
            }
            health.on_enabled(UnixMs::now());
            let outcome = self.record_once(&mut health, &mut measures, &mut stop, &mut mode).await;
            let healthy = match &outcome {
                Outcome::Stopped => return,
                Outcome::Paused => continue,
                Outcome::Failed { why, ran, delivered } => {
                    let events = health.on_failure(UnixMs::now(), why);
                    self.emit_health(&events).await;
                    self.publish_state(&health, &measures);
                    *delivered && *ran >= HEALTHY_RUN
                }
            };
            if healthy {
                backoff.reset();
            }
            let delay = backoff.next_delay(clock_jitter());
            tracing::debug!(camera = %self.id(), retry_in_ms = delay.as_millis() as u64, "restarting recorder");
            let stopping = beating(&self.heartbeat, async {
                tokio::select! {
                    () = tokio::time::sleep(delay) => false,
                    () = stopped(&mut stop) => true,
                    _ = mode.changed() => false,
                }
            })
            .await;
            if stopping {
                return;
            }
        }
    }

    async fn record_once(
        &self,
        health: &mut CameraHealth,
        measures: &mut Measures,
        stop: &mut watch::Receiver<bool>,
        mode: &mut watch::Receiver<RecordMode>,
    ) -> Outcome {
        self.ensure_day_dirs();
        // Segment names have one-second resolution: never start two runs in the same second.
        let into_second = UnixMs::now().0.rem_euclid(1000) as u64;
        tokio::time::sleep(Duration::from_millis(1000 - into_second)).await;
        let mut capture = None;
        let mut v4l2 = self.camera.v4l2.clone();
        if let Source::V4l2(device) = &self.source {
            match super::v4l2::open(&self.camera, device).await {
                Ok(opened) => {
                    v4l2 = Some(opened.negotiated.clone());
                    capture = Some(opened);
                }
                Err(e) => return self.not_started(health, format!("{e:#}")),
            }
        }
        let plan = RecorderPlan {
            camera: self.id(),
            source: &self.source,
            v4l2: v4l2.as_ref(),
            segment_s: self.camera.segment_s,
            recordings_dir: &self.recordings_dir,
            encoder: &self.encoder,
            sample_stream: self.sampler.is_some(),
        };
        let args = ffmpeg::recorder_args(&plan);
        tracing::debug!(camera = %self.id(), args = %scrub(&args.join(" "), &self.secrets), "starting recorder");
        // The sampler's copy of the stream leaves ffmpeg on fd 3.
        let stream_pipe = match self.sampler.is_some().then(std::io::pipe).transpose() {
            Ok(pipe) => pipe,
            Err(e) => return self.not_started(health, format!("cannot make the sampler pipe: {e}")),
        };
        let stream_fd = stream_pipe.as_ref().map(|(_, writer)| writer.as_raw_fd());
        let mut command = Command::new(&self.ffmpeg);
        // SAFETY: prctl, dup2 and fcntl are async-signal-safe and only touch the child's
        // process state between fork and exec. PDEATHSIG: if the service dies (even by
        // SIGKILL) the kernel kills its recorder too, so a restarted service never finds an
        // orphan still writing its segments.
        unsafe {
            command.pre_exec(move || {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                if let Some(fd) = stream_fd {
                    if fd == 3 {
                        libc::fcntl(3, libc::F_SETFD, 0);
                    } else if libc::dup2(fd, 3) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let mut child = match command
            .args(&args)
            .env("TZ", "UTC")
            // stdin carries V4L2 frames, or the `q` that makes ffmpeg close its last segment cleanly.
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
        {
            Ok(child) => child,
            Err(e) => return self.not_started(health, format!("cannot start {}: {e}", self.ffmpeg.display())),
        };
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            return self.not_started(health, "ffmpeg pipes missing".into());
        };
        if let (Some(sampler), Some((reader, writer))) = (&self.sampler, stream_pipe) {
            drop(writer);
            match tokio::net::unix::pipe::Receiver::from_owned_fd(reader.into()) {
                Ok(receiver) => {
                    let _ = sampler.try_send(SamplerInput::Stream(receiver));
                }
                Err(e) => tracing::error!(camera = %self.id(), error = %e, "sampler stream unavailable"),
            }
        }
        let Some(stdin) = child.stdin.take() else {
            return self.not_started(health, "ffmpeg stdin missing".into());
        };
        let feeder = match capture {
            Some(mut capture) => {
                if let Err(e) = capture.attach(stdin) {
                    let _ = child.kill().await;
                    return self.not_started(health, format!("{e:#}"));
                }
                Some(Feeder::Capture(capture))
            }
            None => Some(Feeder::Quit(stdin)),
        };
        let recorder = Recorder { child, stdout, stderr, feeder };
        measures.format = v4l2.filter(|_| matches!(self.source, Source::V4l2(_)));
        self.watch(recorder, health, measures, (stop, mode)).await
    }

    fn not_started(&self, health: &mut CameraHealth, why: String) -> Outcome {
        tracing::error!(camera = %self.id(), error = %why, "recorder not started");
        health.on_error(&why);
        Outcome::Failed { why, ran: Duration::ZERO, delivered: false }
    }

    async fn watch(
        &self,
        recorder: Recorder,
        health: &mut CameraHealth,
        measures: &mut Measures,
        (stop, mode): (&mut watch::Receiver<bool>, &mut watch::Receiver<RecordMode>),
    ) -> Outcome {
        let Recorder { mut child, stdout, stderr, mut feeder } = recorder;
        let mut list: Option<Lines<BufReader<ChildStdout>>> = Some(BufReader::new(stdout).lines());
        let mut log: Option<Lines<BufReader<ChildStderr>>> = Some(BufReader::new(stderr).lines());
        let mut run = Run::new();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut logged = (Instant::now(), 0u32);
        let mut stopping: Option<Instant> = None;
        let mut why = String::from("ffmpeg exited");
        let mut last_state_publish = Instant::now();
        let (mut paused, mut mode_open) = (false, true);
        while list.is_some() || log.is_some() {
            tokio::select! {
                line = next_line(&mut list) => match line {
                    Some(line) => {
                        if let Some(segment) = ffmpeg::parse_segment_list_line(&line) {
                            self.on_segment(segment, &mut run, health, measures).await;
                            self.publish_state(health, measures);
                            last_state_publish = Instant::now();
                        }
                    }
                    None => list = None,
                },
                line = next_line(&mut log) => match line {
                    Some(line) => {
                        if let Some(message) = self.on_stderr(&line, &mut run, health, &mut logged) {
                            why = message;
                        }
                        if run.delivered && health.state() != CameraState::Recording {
                            let events = health.on_data(UnixMs::now());
                            self.emit_health(&events).await;
                            self.publish_state(health, measures);
                        }
                    }
                    None => log = None,
                },
                _ = tick.tick() => {
                    self.heartbeat.beat();
                    if let Some(since) = stopping {
                        if since.elapsed() > STOP_GRACE {
                            let _ = child.start_kill();
                        }
                    } else if run.last_progress.elapsed() > STALL_TIMEOUT {
                        why = format!("stalled: no data for {} s", STALL_TIMEOUT.as_secs());
                        tracing::warn!(camera = %self.id(), "recorder stalled, restarting");
                        finish(feeder.take()).await;
                        stopping = Some(Instant::now());
                    }
                    if last_state_publish.elapsed() >= Duration::from_secs(60) {
                        self.ensure_day_dirs();
                        self.publish_state(health, measures);
                        last_state_publish = Instant::now();
                    }
                }
                () = stopped(stop), if stopping.is_none() => {
                    finish(feeder.take()).await;
                    stopping = Some(Instant::now());
                    why = "stopped".into();
                }
                changed = mode.changed(), if stopping.is_none() && mode_open => {
                    mode_open = changed.is_ok();
                    if *mode.borrow() == RecordMode::Off {
                        // Like a stop: the last segment is closed and indexed.
                        finish(feeder.take()).await;
                        stopping = Some(Instant::now());
                        paused = true;
                    }
                }
            }
        }
        finish(feeder.take()).await;
        let status = child.wait().await;
        self.states.set_writing(self.id(), None);
        if *stop.borrow() {
            return Outcome::Stopped;
        }
        if paused {
            return Outcome::Paused;
        }
        let ran = run.started.elapsed();
        if why == "ffmpeg exited" {
            why = match status {
                Ok(status) => format!("ffmpeg exited ({status})"),
                Err(e) => format!("ffmpeg lost: {e}"),
            };
        }
        Outcome::Failed { why, ran, delivered: run.delivered }
    }

    /// Handles one stderr line; returns an error message worth keeping as the failure reason.
    fn on_stderr(
        &self,
        line: &str,
        run: &mut Run,
        health: &mut CameraHealth,
        logged: &mut (Instant, u32),
    ) -> Option<String> {
        match ffmpeg::parse_stderr_line(line) {
            StderrLine::Progress(key, value) => {
                match key.as_str() {
                    "out_time_us" => {
                        if let Ok(us) = value.parse::<i64>()
                            && us > run.out_time_us
                        {
                            run.out_time_us = us;
                            run.last_progress = Instant::now();
                            run.delivered = true;
                        }
                    }
                    "fps" => run.fps = value.parse().unwrap_or(run.fps),
                    _ => {}
                }
                None
            }
            StderrLine::Opening(path) => {
                self.states.set_writing(self.id(), Some(PathBuf::from(&path)));
                run.opened.push_back(path);
                if run.opened.len() > 16 {
                    run.opened.pop_front();
                }
                None
            }
            StderrLine::Video(codec, width, height) => {
                if let Some(sampler) = &self.sampler {
                    let _ = sampler.try_send(SamplerInput::Video(width, height));
                }
                run.video = Some((codec, width, height));
                None
            }
            StderrLine::Error(message) => {
                let message = scrub(&message, &self.secrets);
                if should_log(logged) {
                    tracing::warn!(camera = %self.id(), message = %message, "ffmpeg error");
                }
                health.on_error(&message);
                Some(message)
            }
            StderrLine::Warning(message) => {
                if should_log(logged) {
                    tracing::debug!(camera = %self.id(), message = %scrub(&message, &self.secrets), "ffmpeg warning");
                }
                None
            }
            StderrLine::Other => None,
        }
    }

    async fn on_segment(
        &self,
        listed: ListedSegment,
        run: &mut Run,
        health: &mut CameraHealth,
        measures: &mut Measures,
    ) {
        let now = UnixMs::now();
        // The stream clock is mapped to wall time once per run, so segments of a run are contiguous.
        let anchor = *run.anchor_ms.get_or_insert(now.0 - (listed.end_s * 1000.0).round() as i64);
        let start = UnixMs(anchor + (listed.start_s * 1000.0).round() as i64);
        let end = UnixMs(anchor + (listed.end_s * 1000.0).round() as i64);
        let Some(relative) = self.resolve(&listed.file, run, start) else {
            tracing::error!(camera = %self.id(), file = %listed.file, "closed segment not found on disk");
            return;
        };
        let full = self.recordings_dir.join(&relative);
        let bytes = std::fs::metadata(&full).map(|m| m.len()).unwrap_or(0);
        let (codec, width, height) = match &run.video {
            Some((codec, w, h)) => (Some(codec.clone()), Some(*w), Some(*h)),
            None => (None, None, None),
        };
        let duration_ms = (end.0 - start.0).max(1);
        measures.kbps = bytes as f64 * 8.0 / duration_ms as f64;
        measures.fps = run.fps;
        let segment =
            NewSegment { camera: self.id().to_string(), path: relative, start, end, bytes, codec, width, height };
        let stored = self.store.call({
            let segment = segment.clone();
            move |conn| index::insert_segment(conn, &segment)
        });
        match stored.await {
            Ok(_) => tracing::debug!(camera = %self.id(), path = %segment.path, bytes, duration_ms, "segment indexed"),
            Err(e) => tracing::error!(camera = %self.id(), path = %segment.path, error = %e, "segment not indexed"),
        }
        let events = health.on_segment(start, end);
        self.emit_health(&events).await;
    }

    /// The relative path of a listed file: from the `Opening` lines, else by its date.
    fn resolve(&self, file: &str, run: &mut Run, start: UnixMs) -> Option<String> {
        while let Some(opened) = run.opened.pop_front() {
            if Path::new(&opened).file_name().is_some_and(|name| name == file) {
                let relative = Path::new(&opened).strip_prefix(&self.recordings_dir).ok()?;
                return Some(relative.to_string_lossy().into_owned());
            }
        }
        [start, UnixMs(start.0 - 86_400_000), UnixMs(start.0 + 86_400_000)]
            .into_iter()
            .map(|day| format!("{}/{file}", layout::day_dir(self.id(), day)))
            .find(|relative| self.recordings_dir.join(relative).is_file())
    }

    fn ensure_day_dirs(&self) {
        let now = UnixMs::now();
        for day in [now, UnixMs(now.0 + 86_400_000)] {
            let dir = self.recordings_dir.join(layout::day_dir(self.id(), day));
            if let Err(e) = std::fs::create_dir_all(&dir) {
                tracing::error!(camera = %self.id(), dir = %dir.display(), error = %e, "cannot create segment directory");
            }
        }
    }

    async fn emit_health(&self, events: &[HealthEvent]) {
        for event in events {
            let now = UnixMs::now();
            let new = match event {
                HealthEvent::Online => {
                    tracing::info!(camera = %self.id(), "camera online");
                    NewEvent::new(EventType::CameraOnline, Some(self.id()), now)
                }
                HealthEvent::Offline { reason } => {
                    tracing::warn!(camera = %self.id(), reason = %reason, "camera offline");
                    NewEvent::new(EventType::CameraOffline, Some(self.id()), now).with("reason", reason.as_str())
                }
                HealthEvent::Gap { start, end, reason } => {
                    let gap = Gap { camera: self.id().to_string(), start: *start, end: *end, reason: reason.clone() };
                    if let Err(e) = self.store.call(move |conn| index::insert_gap(conn, &gap)).await {
                        tracing::error!(camera = %self.id(), error = %e, "gap not recorded");
                    }
                    NewEvent::new(EventType::RecordingGap, Some(self.id()), now)
                        .with("from", start.to_rfc3339())
                        .with("to", end.to_rfc3339())
                        .with("duration_s", (end.0 - start.0) as f64 / 1000.0)
                        .with("reason", reason.as_str())
                }
            };
            if let Err(e) = self.events.emit(new).await {
                tracing::error!(camera = %self.id(), error = %e, "event not stored");
            }
        }
    }

    fn publish_state(&self, health: &CameraHealth, measures: &Measures) {
        let topic = self.mqtt.topics().camera_state(self.id());
        let payload = state_payload(health, measures);
        self.mqtt.publish(topic, payload.to_string(), QoS::AtLeastOnce, true);
        self.states.set(self.id(), payload);
    }
}

/// How a run of ffmpeg ended.
enum Outcome {
    /// The service is stopping.
    Stopped,
    /// Recording was turned off.
    Paused,
    /// It failed or stalled.
    Failed { why: String, ran: Duration, delivered: bool },
}

/// What a camera delivers, for its state message.
#[derive(Clone, Debug, Default)]
pub struct Measures {
    /// Frames per second ffmpeg reported.
    pub fps: f64,
    /// Bit rate of the last segment.
    pub kbps: f64,
    /// The format a V4L2 device agreed to.
    pub format: Option<V4l2Config>,
}

/// The retained `P/cameras/<cam>/state` payload.
pub fn state_payload(health: &CameraHealth, measures: &Measures) -> serde_json::Value {
    let (fps, kbps) = (measures.fps, measures.kbps);
    let recording = health.state() == CameraState::Recording;
    let mut value = json!({
        "v": 1,
        "state": health.state().as_str(),
        "since": health.since().to_rfc3339(),
        "fps": if recording { (fps * 10.0).round() / 10.0 } else { 0.0 },
        "kbps": if recording { kbps.round() } else { 0.0 },
        "last_segment_end": health.last_segment_end().map(UnixMs::to_rfc3339),
        "reconnects": health.reconnects(),
    });
    if let (Some(error), false) = (health.last_error(), recording) {
        value["error"] = error.into();
    }
    if let Some(format) = &measures.format {
        value["v4l2"] = json!({
            "width": format.width,
            "height": format.height,
            "fps": format.fps,
            "format": format!("{:?}", format.format).to_uppercase(),
        });
    }
    value
}

async fn next_line<R: tokio::io::AsyncBufRead + Unpin>(lines: &mut Option<Lines<R>>) -> Option<String> {
    match lines {
        Some(lines) => lines.next_line().await.ok().flatten(),
        None => std::future::pending().await,
    }
}

/// Resolves once the service asks the cameras to stop.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

fn should_log(logged: &mut (Instant, u32)) -> bool {
    if logged.0.elapsed() > Duration::from_secs(60) {
        *logged = (Instant::now(), 0);
    }
    logged.1 += 1;
    logged.1 <= LOG_LINES_PER_MINUTE
}

/// A running recording ffmpeg and its pipes.
struct Recorder {
    child: Child,
    stdout: ChildStdout,
    stderr: ChildStderr,
    feeder: Option<Feeder>,
}

/// What feeds the recorder's stdin.
enum Feeder {
    /// Nothing but the quit key.
    Quit(tokio::process::ChildStdin),
    /// V4L2 frames.
    Capture(super::v4l2::V4l2Capture),
}

/// Asks ffmpeg to finish: it closes the current segment and lists it, as at the end of its
/// input. (A signal would interrupt its output I/O and leave the last segment unlisted.)
async fn finish(feeder: Option<Feeder>) {
    match feeder {
        Some(Feeder::Quit(mut stdin)) => {
            use tokio::io::AsyncWriteExt;
            let _ = stdin.write_all(b"q").await;
            let _ = stdin.flush().await;
        }
        Some(Feeder::Capture(capture)) => capture.stop(),
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::schema::PixelFormat;

    #[test]
    fn state_payload_shows_error_only_when_not_recording() {
        let mut health = CameraHealth::new(UnixMs(0), None, false);
        health.on_error("401 Unauthorized");
        health.on_failure(UnixMs(1000), "exit");
        let offline = state_payload(&health, &Measures { fps: 15.0, kbps: 900.0, format: None });
        assert_eq!(offline["state"], "offline");
        assert_eq!(offline["error"], "401 Unauthorized");
        assert_eq!(offline["fps"], 0.0);
        health.on_segment(UnixMs(2000), UnixMs(4000));
        let format = V4l2Config { width: 640, height: 480, fps: 15, format: PixelFormat::Yuyv };
        let recording = state_payload(&health, &Measures { fps: 14.96, kbps: 812.4, format: Some(format) });
        assert_eq!(recording["state"], "recording");
        assert_eq!(recording["fps"], 15.0);
        assert_eq!(recording["kbps"], 812.0);
        assert_eq!(recording["last_segment_end"], "1970-01-01T00:00:04.000Z");
        assert!(recording.get("error").is_none());
        assert_eq!(recording["v4l2"]["format"], "YUYV");
        assert_eq!(recording["v4l2"]["width"], 640);
    }
}
