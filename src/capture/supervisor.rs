//! One supervisor task per camera: the camera's state machine. It starts the
//! recorder (`recorder.rs`) and follows each run (`watch.rs`: segments
//! indexed, stalls), restarts with capped backoff, and reports the camera's
//! state and events. While it does not record and a worker wants frames, its
//! source runs for the sampler alone.

use super::controls::{Controls, Hold, Signal};
use super::ffmpeg::{self, RecorderPlan};
use super::health::CameraHealth;
use super::modes::InForce;
use super::native;
use super::recorder::{self, Recorder};
use super::segments::ensure_day_dirs;
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
use tokio::sync::{mpsc, watch};

/// A run that delivered this long resets the restart backoff.
pub(super) const HEALTHY_RUN: Duration = Duration::from_secs(60);
/// Restarts of a failed recorder wait from 1 s, doubling to 10 s: a camera back from an
/// outage is recorded again within ~10 s, while one that stays away costs an attempt per
/// 5–10 s (a TCP connect natively, an ffmpeg start otherwise).
pub(super) const RESTART_BACKOFF: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(10));

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
    /// The sampler's planned rate: while above 0 the camera's source runs even when it does
    /// not record.
    pub frames: Option<watch::Receiver<f64>>,
    /// Beats every second while the supervisor runs (the systemd watchdog watches it).
    pub heartbeat: Heartbeat,
    /// Counts wall-clock steps: on each, the recorder closes its segment and starts anew, so
    /// its segments take the new time and never reuse a name.
    pub clock_steps: watch::Receiver<crate::sys::clock::Steps>,
    /// The cameras the storage guard paused: this one records only while it is not among them.
    pub storage_pauses: watch::Receiver<BTreeSet<String>>,
}

/// What a run of ffmpeg is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum RunKind {
    /// Segments (and the sampler's stream, when sampled).
    Recording,
    /// The sampler's stream alone: the camera does not record now.
    SamplingOnly,
}

/// How a run of ffmpeg ended.
pub(super) enum Outcome {
    /// The service is stopping.
    Stopped,
    /// Recording was turned off.
    Paused,
    /// It failed or stalled.
    Failed { why: String, ran: Duration, delivered: bool },
}

/// The supervisor's standing state across runs.
pub(super) struct Camera<'a> {
    pub(super) health: &'a mut CameraHealth,
    pub(super) measures: &'a mut Measures,
}

/// A pipe for the sampler's stream: its reading end for the sampler, its writing end for
/// the native recorder.
fn sample_pipe() -> std::io::Result<(tokio::net::unix::pipe::Receiver, tokio::net::unix::pipe::Sender)> {
    let (reader, writer) = std::io::pipe()?;
    let receiver = tokio::net::unix::pipe::Receiver::from_owned_fd(reader.into())?;
    let sender = tokio::net::unix::pipe::Sender::from_owned_fd(writer.into())?;
    Ok((receiver, sender))
}

impl CameraSupervisor {
    pub(super) fn id(&self) -> &str {
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
        let mut controls = Controls::new(stop, mode, self.storage_pauses.clone(), self.frames.clone());
        let off = matches!(controls.held(self.id()), Some(Hold::Off | Hold::Schedule));
        let mut health = CameraHealth::new(UnixMs::now(), last_end, off);
        let mut measures = Measures { mode: Some(controls.in_force()), ..Measures::default() };
        self.publish_state(&health, &measures);
        let mut backoff = Backoff::new(RESTART_BACKOFF.0, RESTART_BACKOFF.1);
        loop {
            let held = controls.held(self.id());
            measures.mode = Some(controls.in_force());
            // Only a sampler fed by this camera's recorder needs its source while not recording.
            if let Some(hold) = held
                && !(self.sampler.is_some() && controls.wants_frames())
            {
                if !self.wait_while_held(hold, &mut health, &measures, &mut controls).await {
                    return;
                }
                continue;
            }
            let mut state = Camera { health: &mut health, measures: &mut measures };
            let outcome = match held {
                None => {
                    state.health.on_enabled(UnixMs::now());
                    self.record_once(&mut state, &mut controls, RunKind::Recording).await
                }
                Some(hold) => {
                    // Not recording, but a worker wants frames: the source runs for the sampler alone.
                    self.hold(hold, state.health, state.measures);
                    self.record_once(&mut state, &mut controls, RunKind::SamplingOnly).await
                }
            };
            let healthy = match outcome {
                Outcome::Stopped => return,
                Outcome::Paused => continue,
                Outcome::Failed { why, ran, delivered } if held.is_some() => {
                    tracing::warn!(camera = %self.id(), error = %why, "source for sampling failed");
                    delivered && ran >= HEALTHY_RUN
                }
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
        self.hold(hold, health, measures);
        beating(&self.heartbeat, controls.next()).await == Signal::Changed
    }

    /// Notes that recording is held for `hold`, in the health state and the camera state.
    fn hold(&self, hold: Hold, health: &mut CameraHealth, measures: &Measures) {
        match hold {
            Hold::Off | Hold::Schedule => health.on_disabled(UnixMs::now(), hold.gap_reason()),
            Hold::Storage => health.on_paused(UnixMs::now(), hold.why()),
        }
        self.publish_state(health, measures);
        tracing::info!(camera = %self.id(), why = hold.why(), "not recording");
    }

    /// Starts one run of the recorder (or of the source for the sampler alone) and watches it
    /// to its end.
    async fn record_once(&self, camera: &mut Camera<'_>, controls: &mut Controls, runs: RunKind) -> Outcome {
        ensure_day_dirs(&self.recordings_dir, self.id());
        // Started at once: the run's token keeps its file names apart from the last run's,
        // even within the same second.
        let run = crate::recording::layout::run_token(UnixMs::now());
        if let Source::Rtsp(url) = &self.source
            && self.camera.native_capture()
        {
            return self.record_natively(url, run, camera, controls, runs).await;
        }
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
            segments: runs == RunKind::Recording,
            run: &run,
        };
        let args = ffmpeg::recorder_args(&plan);
        tracing::debug!(camera = %self.id(), args = %scrub(&args.join(" "), &self.secrets), "starting recorder");
        let (run, stream) = match recorder::spawn(&self.ffmpeg, &args, self.sampler.is_some(), capture) {
            Ok(started) => started,
            Err(why) => return self.not_started(camera.health, why),
        };
        if let (Some(sampler), Some(stream)) = (&self.sampler, stream) {
            let _ = sampler.try_send(SamplerInput::Stream(stream));
        }
        camera.measures.format = v4l2.filter(|_| matches!(self.source, Source::V4l2(_)));
        self.watch(Recorder::Ffmpeg(Box::new(run)), camera, controls, runs).await
    }

    /// One run of the native recorder.
    async fn record_natively(
        &self,
        url: &str,
        run: String,
        camera: &mut Camera<'_>,
        controls: &mut Controls,
        runs: RunKind,
    ) -> Outcome {
        let sample = match &self.sampler {
            Some(sampler) => match sample_pipe() {
                Ok((receiver, sender)) => {
                    let _ = sampler.try_send(SamplerInput::Stream(receiver));
                    Some(sender)
                }
                Err(e) => {
                    tracing::error!(camera = %self.id(), error = %e, "sampler stream unavailable");
                    None
                }
            },
            None => None,
        };
        let plan = native::NativePlan {
            camera: self.id().to_string(),
            url: url.to_string(),
            segment_s: self.camera.segment_s,
            recordings_dir: self.recordings_dir.clone(),
            run,
            segments: runs == RunKind::Recording,
            sample,
            sample_rate: controls.frames.clone(),
        };
        tracing::debug!(camera = %self.id(), "starting the native recorder");
        camera.measures.format = None;
        self.watch(native::spawn(plan), camera, controls, runs).await
    }

    fn not_started(&self, health: &mut CameraHealth, why: String) -> Outcome {
        tracing::error!(camera = %self.id(), error = %why, "recorder not started");
        health.on_error(&why);
        Outcome::Failed { why, ran: Duration::ZERO, delivered: false }
    }
}
