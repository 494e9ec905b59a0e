//! One supervisor task per camera: the camera's state machine. It starts the
//! recorder (`recorder.rs`), has each closed segment indexed
//! (`segments.rs`), watches for stalls, restarts with capped backoff, and
//! reports the camera's state and events.

use super::controls::{Controls, Hold, Signal};
use super::ffmpeg::{self, RecorderPlan, StderrLine};
use super::health::{CameraHealth, CameraState};
use super::modes::InForce;
use super::recorder::{self, Feeder, Recorder};
use super::segments::{SegmentIndexer, VideoFormat, ensure_day_dirs};
use super::source::Source;
use super::state::Measures;
use crate::config::schema::CameraConfig;
use crate::heartbeat::{Heartbeat, beating};
use crate::mqtt::MqttHandle;
use crate::outbox::EventSink;
use crate::recording::index;
use crate::sampler::camera::SamplerInput;
use crate::store::Store;
use crate::sys::backoff::{Backoff, clock_jitter};
use crate::sys::scrub::scrub;
use crate::wallclock::UnixMs;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{ChildStderr, ChildStdout};
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
    /// Counts wall-clock steps: on each, the recorder closes its segment and starts anew, so
    /// its segments take the new time and never reuse a name.
    pub clock_steps: watch::Receiver<crate::sys::clock::Steps>,
    /// The cameras the storage guard paused: this one records only while it is not among them.
    pub storage_pauses: watch::Receiver<BTreeSet<String>>,
}

/// Measurements of the current ffmpeg run.
struct Run {
    started: Instant,
    last_progress: Instant,
    out_time_us: i64,
    fps: f64,
    video: Option<VideoFormat>,
    delivered: bool,
    segments: SegmentIndexer,
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

/// The supervisor's standing state across runs.
struct Camera<'a> {
    health: &'a mut CameraHealth,
    measures: &'a mut Measures,
}

impl CameraSupervisor {
    fn id(&self) -> &str {
        &self.camera.id
    }

    /// Supervises the camera until `stop` turns true; records while `mode` is not `Off` and
    /// the storage guard has not paused it.
    pub async fn run(self, stop: watch::Receiver<bool>, mode: watch::Receiver<InForce>) {
        let camera = self.id().to_string();
        let last_end = match self.store.call(move |conn| index::last_segment_end(conn, &camera)).await {
            Ok(end) => end,
            Err(e) => {
                tracing::warn!(camera = %self.id(), error = %e, "last segment unknown");
                None
            }
        };
        let mut controls = Controls::new(stop, mode, self.storage_pauses.clone());
        let off = matches!(controls.held(self.id()), Some(Hold::Off | Hold::Schedule));
        let mut health = CameraHealth::new(UnixMs::now(), last_end, off);
        let mut measures = Measures { mode: Some(controls.in_force()), ..Measures::default() };
        self.publish_state(&health, &measures);
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        loop {
            let held = controls.held(self.id());
            measures.mode = Some(controls.in_force());
            if let Some(hold) = held {
                if !self.wait_while_held(hold, &mut health, &measures, &mut controls).await {
                    return;
                }
                continue;
            }
            health.on_enabled(UnixMs::now());
            let mut state = Camera { health: &mut health, measures: &mut measures };
            let healthy = match self.record_once(&mut state, &mut controls).await {
                Outcome::Stopped => return,
                Outcome::Paused => continue,
                Outcome::Failed { why, ran, delivered } => {
                    let events = health.on_failure(UnixMs::now(), &why);
                    self.emit_health(&events).await;
                    self.publish_state(&health, &measures);
                    delivered && ran >= HEALTHY_RUN
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
                    signal = controls.next() => signal == Signal::Stop,
                }
            })
            .await;
            if stopping {
                return;
            }
        }
    }

    /// Waits while recording is held (off, or paused for storage); `false` when the service
    /// stops meanwhile.
    async fn wait_while_held(
        &self,
        hold: Hold,
        health: &mut CameraHealth,
        measures: &Measures,
        controls: &mut Controls,
    ) -> bool {
        match hold {
            Hold::Off | Hold::Schedule => health.on_disabled(UnixMs::now(), hold.gap_reason()),
            Hold::Storage => health.on_paused(UnixMs::now(), hold.why()),
        }
        self.publish_state(health, measures);
        tracing::info!(camera = %self.id(), why = hold.why(), "not recording");
        beating(&self.heartbeat, controls.next()).await == Signal::Changed
    }

    /// Starts one run of the recorder and watches it to its end.
    async fn record_once(&self, camera: &mut Camera<'_>, controls: &mut Controls) -> Outcome {
        ensure_day_dirs(&self.recordings_dir, self.id());
        // Started at once: the run's token keeps its file names apart from the last run's,
        // even within the same second.
        let run = crate::recording::layout::run_token(UnixMs::now());
        let (mut capture, mut v4l2) = (None, self.camera.v4l2.clone());
        if let Source::V4l2(device) = &self.source {
            match super::v4l2::open(&self.camera, device).await {
                Ok(opened) => {
                    v4l2 = Some(opened.negotiated.clone());
                    capture = Some(opened);
                }
                Err(e) => return self.not_started(camera.health, format!("{e:#}")),
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
            run: &run,
        };
        let args = ffmpeg::recorder_args(&plan);
        tracing::debug!(camera = %self.id(), args = %scrub(&args.join(" "), &self.secrets), "starting recorder");
        let (recorder, stream) = match recorder::spawn(&self.ffmpeg, &args, self.sampler.is_some(), capture) {
            Ok(started) => started,
            Err(why) => return self.not_started(camera.health, why),
        };
        if let (Some(sampler), Some(stream)) = (&self.sampler, stream) {
            let _ = sampler.try_send(SamplerInput::Stream(stream));
        }
        camera.measures.format = v4l2.filter(|_| matches!(self.source, Source::V4l2(_)));
        self.watch(recorder, camera, controls).await
    }

    fn not_started(&self, health: &mut CameraHealth, why: String) -> Outcome {
        tracing::error!(camera = %self.id(), error = %why, "recorder not started");
        health.on_error(&why);
        Outcome::Failed { why, ran: Duration::ZERO, delivered: false }
    }

    /// Follows a running recorder until it exits.
    async fn watch(&self, recorder: Recorder, camera: &mut Camera<'_>, controls: &mut Controls) -> Outcome {
        let Recorder { mut child, stdout, stderr, feeder } = recorder;
        let mut watching = Watching {
            list: Some(BufReader::new(stdout).lines()),
            log: Some(BufReader::new(stderr).lines()),
            feeder,
            run: Run {
                started: Instant::now(),
                last_progress: Instant::now(),
                out_time_us: -1,
                fps: 0.0,
                video: None,
                delivered: false,
                segments: SegmentIndexer::new(self.id(), &self.recordings_dir, self.store.clone()),
            },
            logged: (Instant::now(), 0),
            stopping: None,
            why: String::from("ffmpeg exited"),
            last_state_publish: Instant::now(),
            paused: false,
        };
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut clock_steps = self.clock_steps.clone();
        clock_steps.mark_unchanged();
        while watching.list.is_some() || watching.log.is_some() {
            tokio::select! {
                line = next_line(&mut watching.list) => match line {
                    Some(line) => self.on_list_line(&line, &mut watching, camera).await,
                    None => watching.list = None,
                },
                line = next_line(&mut watching.log) => match line {
                    Some(line) => self.on_log_line(&line, &mut watching, camera).await,
                    None => watching.log = None,
                },
                _ = tick.tick() => self.on_tick(&mut watching, &mut child, camera).await,
                signal = controls.next(), if watching.stopping.is_none() => match (signal, controls.held(self.id())) {
                    (Signal::Stop, _) => watching.stop("stopped").await,
                    (Signal::Changed, Some(hold)) => {
                        // Like a stop: the last segment is closed and indexed.
                        watching.stop(hold.why()).await;
                        watching.paused = true;
                    }
                    (Signal::Changed, None) => {
                        // Still recording (the window in force or the next change moved): say so.
                        camera.measures.mode = Some(controls.in_force());
                        self.publish_state(camera.health, camera.measures);
                    }
                },
                Ok(()) = clock_steps.changed(), if watching.stopping.is_none() => {
                    // Like a pause: the segment closes on the old time, the next run starts at once.
                    tracing::info!(camera = %self.id(), "the wall clock was stepped: a new segment starts");
                    watching.stop("clock step").await;
                    watching.paused = true;
                }
            }
        }
        recorder::finish(watching.feeder.take()).await;
        let status = child.wait().await;
        self.states.set_writing(self.id(), None);
        if controls.stopping() {
            return Outcome::Stopped;
        }
        if watching.paused {
            return Outcome::Paused;
        }
        let mut why = watching.why;
        if why == "ffmpeg exited" {
            why = match status {
                Ok(status) => format!("ffmpeg exited ({status})"),
                Err(e) => format!("ffmpeg lost: {e}"),
            };
        }
        Outcome::Failed { why, ran: watching.run.started.elapsed(), delivered: watching.run.delivered }
    }

    /// A line of the segment list: a closed segment, indexed at once.
    async fn on_list_line(&self, line: &str, watching: &mut Watching, camera: &mut Camera<'_>) {
        let Some(listed) = ffmpeg::parse_segment_list_line(line) else { return };
        let run = &mut watching.run;
        if let Some(segment) = run.segments.index(listed, run.video.as_ref()).await {
            let duration_ms = (segment.end.0 - segment.start.0).max(1);
            camera.measures.kbps = segment.bytes as f64 * 8.0 / duration_ms as f64;
            camera.measures.fps = run.fps;
            let events = camera.health.on_segment(segment.start, segment.end);
            self.emit_health(&events).await;
        }
        self.publish_state(camera.health, camera.measures);
        watching.last_state_publish = Instant::now();
    }

    /// A line of ffmpeg's log: progress, files opened, errors.
    async fn on_log_line(&self, line: &str, watching: &mut Watching, camera: &mut Camera<'_>) {
        if let Some(message) = self.on_stderr(line, &mut watching.run, camera.health, &mut watching.logged) {
            watching.why = message;
        }
        if watching.run.delivered && camera.health.state() != CameraState::Recording {
            let events = camera.health.on_data(UnixMs::now());
            self.emit_health(&events).await;
            self.publish_state(camera.health, camera.measures);
        }
    }

    /// Once a second: the heartbeat, the stall watchdog, the stop grace, the state refresh.
    async fn on_tick(&self, watching: &mut Watching, child: &mut tokio::process::Child, camera: &mut Camera<'_>) {
        self.heartbeat.beat();
        if let Some(since) = watching.stopping {
            if since.elapsed() > STOP_GRACE {
                let _ = child.start_kill();
            }
        } else if watching.run.last_progress.elapsed() > STALL_TIMEOUT {
            tracing::warn!(camera = %self.id(), "recorder stalled, restarting");
            watching.stop(&format!("stalled: no data for {} s", STALL_TIMEOUT.as_secs())).await;
        }
        if watching.last_state_publish.elapsed() >= Duration::from_secs(60) {
            ensure_day_dirs(&self.recordings_dir, self.id());
            self.publish_state(camera.health, camera.measures);
            watching.last_state_publish = Instant::now();
        }
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
                run.segments.opened(path);
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
}

/// The state of watching one run.
struct Watching {
    list: Option<Lines<BufReader<ChildStdout>>>,
    log: Option<Lines<BufReader<ChildStderr>>>,
    feeder: Option<Feeder>,
    run: Run,
    logged: (Instant, u32),
    stopping: Option<Instant>,
    why: String,
    last_state_publish: Instant,
    paused: bool,
}

impl Watching {
    /// Asks the recorder to finish (at most `STOP_GRACE` before it is killed), for `why`.
    async fn stop(&mut self, why: &str) {
        recorder::finish(self.feeder.take()).await;
        self.stopping = Some(Instant::now());
        self.why = why.to_string();
    }
}

async fn next_line<R: tokio::io::AsyncBufRead + Unpin>(lines: &mut Option<Lines<R>>) -> Option<String> {
    match lines {
        Some(lines) => lines.next_line().await.ok().flatten(),
        None => std::future::pending().await,
    }
}

fn should_log(logged: &mut (Instant, u32)) -> bool {
    if logged.0.elapsed() > Duration::from_secs(60) {
        *logged = (Instant::now(), 0);
    }
    logged.1 += 1;
    logged.1 <= LOG_LINES_PER_MINUTE
}
