//! Watching one run of a camera's ffmpeg: its segment list, its log and
//! progress, the stall watchdog, and what the camera's controls say meanwhile.

use super::controls::{Controls, Signal};
use super::ffmpeg::{self, ListedSegment, StderrLine};
use super::health::{CameraHealth, CameraState};
use super::native::NativeEvent;
use super::recorder::{self, Feeder, FfmpegRun, Process, Recorder};
use super::segments::{SegmentIndexer, VideoFormat, ensure_day_dirs};
use super::supervisor::{Camera, CameraSupervisor, Outcome, RunKind};
use crate::sampler::camera::SamplerInput;
use crate::sys::lines::BoundedLines;
use crate::sys::scrub::scrub;
use crate::wallclock::UnixMs;
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::BufReader;
use tokio::process::{ChildStderr, ChildStdout};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// No progress for this long means the source stalled: ffmpeg is restarted.
pub(super) const STALL_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a stopping ffmpeg may take to close its last segment.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// ffmpeg log lines logged per camera per minute, at most.
const LOG_LINES_PER_MINUTE: u32 = 20;

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

impl Run {
    /// The recorder got to `out_time_us` of the stream: data is flowing when that is further.
    fn progressed(&mut self, out_time_us: i64) {
        if out_time_us > self.out_time_us {
            self.out_time_us = out_time_us;
            self.last_progress = Instant::now();
            self.delivered = true;
        }
    }
}

impl CameraSupervisor {
    /// Follows a running recorder until it exits.
    pub(super) async fn watch(
        &self,
        recorder: Recorder,
        camera: &mut Camera<'_>,
        controls: &mut Controls,
        runs: RunKind,
    ) -> Outcome {
        let kind = recorder.kind();
        let (mut process, list, log, events, feeder) = match recorder {
            Recorder::Ffmpeg(run) => {
                let FfmpegRun { child, stdout, stderr, feeder } = *run;
                let (list, log) =
                    (BoundedLines::new(BufReader::new(stdout)), BoundedLines::new(BufReader::new(stderr)));
                (Process::Ffmpeg(child), Some(list), Some(log), None, feeder)
            }
            Recorder::Native(run) => (Process::Native(run.task), None, None, Some(run.events), Feeder::Stop(run.stop)),
        };
        let mut watching = Watching {
            list,
            log,
            events,
            feeder: Some(feeder),
            run: Run {
                started: Instant::now(),
                last_progress: Instant::now(),
                out_time_us: -1,
                fps: 0.0,
                video: None,
                delivered: false,
                segments: SegmentIndexer::new(self.id(), &self.recordings_dir, self.store.clone(), kind),
            },
            logged: (Instant::now(), 0),
            stopping: None,
            why: String::new(),
            last_state_publish: Instant::now(),
            paused: false,
            runs,
        };
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut clock_steps = self.clock_steps.clone();
        clock_steps.mark_unchanged();
        while watching.list.is_some() || watching.log.is_some() || watching.events.is_some() {
            tokio::select! {
                event = next_event(&mut watching.events) => match event {
                    Some(NativeEvent::Said(line)) => self.on_said(line, &mut watching, camera).await,
                    Some(NativeEvent::Progress { out_time_us, fps }) => {
                        watching.run.progressed(out_time_us);
                        watching.run.fps = fps;
                        self.on_delivery(&mut watching, camera).await;
                    }
                    Some(NativeEvent::Closed(listed)) => self.on_listed(listed, &mut watching, camera).await,
                    None => watching.events = None,
                },
                line = next_line(&mut watching.list) => match line {
                    Some(line) => self.on_list_line(&line, &mut watching, camera).await,
                    None => watching.list = None,
                },
                line = next_line(&mut watching.log) => match line {
                    Some(line) => self.on_log_line(&line, &mut watching, camera).await,
                    None => watching.log = None,
                },
                _ = tick.tick() => self.on_tick(&mut watching, &mut process, camera).await,
                signal = controls.next(), if watching.stopping.is_none() => {
                    self.on_signal(signal, &mut watching, camera, controls).await;
                }
                Ok(()) = clock_steps.changed(), if watching.stopping.is_none() && runs == RunKind::Recording => {
                    // Like a pause: the segment closes on the old time, the next run starts at once.
                    tracing::info!(camera = %self.id(), "the wall clock was stepped: a new segment starts");
                    watching.stop("clock step").await;
                    watching.paused = true;
                }
            }
        }
        recorder::finish(watching.feeder.take()).await;
        let ended = process.wait().await;
        self.states.set_writing(self.id(), None);
        if controls.stopping() {
            return Outcome::Stopped;
        }
        if watching.paused {
            return Outcome::Paused;
        }
        let why = if watching.why.is_empty() { ended } else { watching.why };
        Outcome::Failed { why, ran: watching.run.started.elapsed(), delivered: watching.run.delivered }
    }

    /// The service stops the camera, or what it should do changed.
    async fn on_signal(
        &self,
        signal: Signal,
        watching: &mut Watching,
        camera: &mut Camera<'_>,
        controls: &mut Controls,
    ) {
        let held = controls.held(self.id());
        let wants_frames = controls.wants_frames();
        camera.measures.mode = Some(controls.in_force());
        match (signal, watching.runs, held) {
            (Signal::Stop, _, _) => watching.stop("stopped").await,
            (Signal::Changed, RunKind::Recording, Some(hold)) => {
                // Like a stop: the last segment is closed and indexed.
                watching.stop(hold.why()).await;
                watching.paused = true;
            }
            (Signal::Changed, RunKind::SamplingOnly, None) => {
                watching.stop("recording resumes").await;
                watching.paused = true;
            }
            (Signal::Changed, RunKind::SamplingOnly, Some(_)) if !wants_frames => {
                watching.stop("no worker takes frames").await;
                watching.paused = true;
            }
            // Still running as it should (the window in force, the next change or the rate moved): say so.
            (Signal::Changed, _, _) => self.publish_state(camera.health, camera.measures),
        }
    }

    /// A line of the segment list: a closed segment, indexed at once.
    async fn on_list_line(&self, line: &str, watching: &mut Watching, camera: &mut Camera<'_>) {
        if let Some(listed) = ffmpeg::parse_segment_list_line(line) {
            self.on_listed(listed, watching, camera).await;
        }
    }

    /// A closed segment, indexed at once.
    async fn on_listed(&self, listed: ListedSegment, watching: &mut Watching, camera: &mut Camera<'_>) {
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
        self.on_said(ffmpeg::parse_stderr_line(line), watching, camera).await;
    }

    /// What the recorder said: progress, files opened, errors.
    async fn on_said(&self, said: StderrLine, watching: &mut Watching, camera: &mut Camera<'_>) {
        if let Some(message) = self.on_stderr(said, &mut watching.run, camera.health, &mut watching.logged) {
            watching.why = message;
        }
        self.on_delivery(watching, camera).await;
    }

    /// The first data of a recording run: the camera is recording.
    async fn on_delivery(&self, watching: &mut Watching, camera: &mut Camera<'_>) {
        if watching.run.delivered
            && watching.runs == RunKind::Recording
            && camera.health.state() != CameraState::Recording
        {
            let events = camera.health.on_data(UnixMs::now());
            self.emit_health(&events).await;
            self.publish_state(camera.health, camera.measures);
        }
    }

    /// Once a second: the heartbeat, the stall watchdog, the stop grace, the state refresh.
    async fn on_tick(&self, watching: &mut Watching, process: &mut Process, camera: &mut Camera<'_>) {
        self.heartbeat.beat();
        if let Some(since) = watching.stopping {
            if since.elapsed() > STOP_GRACE {
                process.kill();
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

    /// Handles what the recorder said; returns an error message worth keeping as the failure reason.
    fn on_stderr(
        &self,
        said: StderrLine,
        run: &mut Run,
        health: &mut CameraHealth,
        logged: &mut (Instant, u32),
    ) -> Option<String> {
        match said {
            StderrLine::Progress(key, value) => {
                match key.as_str() {
                    "out_time_us" => {
                        if let Ok(us) = value.parse::<i64>() {
                            run.progressed(us);
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
                    let _ = sampler.try_send(SamplerInput::Video(codec.clone(), width, height));
                }
                run.video = Some((codec, width, height));
                None
            }
            StderrLine::Error(message) => {
                let message = scrub(&message, &self.secrets);
                if should_log(logged) {
                    tracing::warn!(camera = %self.id(), message = %message, "recorder error");
                }
                health.on_error(&message);
                Some(message)
            }
            StderrLine::Warning(message) => {
                if should_log(logged) {
                    tracing::debug!(camera = %self.id(), message = %scrub(&message, &self.secrets), "recorder warning");
                }
                None
            }
            StderrLine::Other => None,
        }
    }
}

/// The state of watching one run.
struct Watching {
    list: Option<BoundedLines<BufReader<ChildStdout>>>,
    log: Option<BoundedLines<BufReader<ChildStderr>>>,
    events: Option<mpsc::Receiver<NativeEvent>>,
    feeder: Option<Feeder>,
    run: Run,
    logged: (Instant, u32),
    stopping: Option<Instant>,
    why: String,
    last_state_publish: Instant,
    paused: bool,
    runs: RunKind,
}

impl Watching {
    /// Asks the recorder to finish (at most `STOP_GRACE` before it is killed), for `why`.
    async fn stop(&mut self, why: &str) {
        recorder::finish(self.feeder.take()).await;
        self.stopping = Some(Instant::now());
        self.why = why.to_string();
    }
}

async fn next_line<R: tokio::io::AsyncBufRead + Unpin>(lines: &mut Option<BoundedLines<R>>) -> Option<String> {
    match lines {
        Some(lines) => lines.next_line().await.ok().flatten(),
        None => std::future::pending().await,
    }
}

async fn next_event(events: &mut Option<mpsc::Receiver<NativeEvent>>) -> Option<NativeEvent> {
    match events {
        Some(events) => events.recv().await,
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
