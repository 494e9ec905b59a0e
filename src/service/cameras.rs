//! The running cameras: one recorder supervisor and, for a sampled camera, one
//! sampler each. Started and stopped one by one, so a reload touches only the
//! cameras it changes.

use crate::capture::feed::SampleFeed;
use crate::capture::modes::RecordModes;
use crate::capture::source::Source;
use crate::capture::{CameraStates, CameraSupervisor};
use crate::config::LoadedConfig;
use crate::config::schema::CameraConfig;
use crate::heartbeat::Heartbeat;
use crate::mqtt::MqttHandle;
use crate::offers::OfferedFrames;
use crate::outbox::EventSink;
use crate::sampler::budget::SampleDemand;
use crate::sampler::camera::{CameraSampler, SamplerBoard};
use crate::sampler::decoder::HardwareDecoders;
use crate::sampler::planner::PlannedCamera;
use crate::store::Store;
use anyhow::{Context, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// How long a stopping recorder may take to close and index its last segment.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// What every camera's tasks share.
#[derive(Clone)]
pub struct CameraDeps {
    /// The index.
    pub store: Store,
    /// Events.
    pub events: EventSink,
    /// The broker session.
    pub mqtt: MqttHandle,
    /// Camera states for `P/stats`.
    pub states: CameraStates,
    /// Sampler sizes and counters.
    pub sampler: SamplerBoard,
    /// Frames offered to workers.
    pub offered: Arc<OfferedFrames>,
    /// Recording modes.
    pub modes: RecordModes,
    /// The ffmpeg binary.
    pub ffmpeg: PathBuf,
    /// Root of the segments.
    pub recordings_dir: PathBuf,
    /// The board's H.264 encoder.
    pub encoder: String,
    /// The board's hardware decoders, for the samplers.
    pub decoders: HardwareDecoders,
    /// Sampler ring slots and largest frame (board profile).
    pub frames: (usize, usize),
    /// Counts wall-clock steps: each one starts every recorder anew on the new time.
    pub clock_steps: watch::Receiver<crate::sys::clock::Steps>,
    /// Cameras whose recorder the storage guard paused.
    pub storage_pauses: watch::Receiver<BTreeSet<String>>,
}

struct RunningCamera {
    config: CameraConfig,
    source: Source,
    stop: watch::Sender<bool>,
    supervisor: JoinHandle<()>,
    rate: Option<Arc<watch::Sender<f64>>>,
    heartbeat: Heartbeat,
}

/// A camera's source with its password read from `password_file`, and the secrets to scrub.
pub fn camera_source(config: &LoadedConfig, index: usize, camera: &CameraConfig) -> Result<(Source, Vec<String>)> {
    let base = config.config_dir();
    let password = match &camera.password_file {
        Some(file) => Some(
            crate::config::secret::read_secret(&base.join(file))
                .with_context(|| format!("{}: camera[{index}].password_file", config.path.display()))?,
        ),
        None => None,
    };
    let source = Source::of_camera(camera, password.as_deref())
        .with_context(|| format!("{}: camera[{index}].source", config.path.display()))?;
    Ok((source, password.into_iter().collect()))
}

/// The running cameras by id.
pub struct CameraSet {
    deps: CameraDeps,
    running: BTreeMap<String, RunningCamera>,
}

impl CameraSet {
    /// No cameras yet.
    pub fn new(deps: CameraDeps) -> Self {
        Self { deps, running: BTreeMap::new() }
    }

    /// The source a running camera records.
    pub fn source(&self, id: &str) -> Option<&Source> {
        self.running.get(id).map(|c| &c.source)
    }

    /// Starts `camera` recording `source`.
    pub fn start(&mut self, camera: CameraConfig, source: Source, secrets: Vec<String>) {
        let deps = &self.deps;
        let id = camera.id.clone();
        deps.offered.ensure(&id);
        let (sampler, rate) = if camera.sample_fps > 0.0 {
            let (inputs_tx, inputs) = mpsc::channel(8);
            let (rate_tx, rate) = watch::channel(0.0);
            let sampler = CameraSampler {
                camera: id.clone(),
                sample_width: camera.sample_width,
                ffmpeg: deps.ffmpeg.clone(),
                frame_slots: deps.frames.0,
                max_frame_bytes: deps.frames.1,
                inputs,
                rate,
                offered: deps.offered.clone(),
                mqtt: deps.mqtt.clone(),
                board: deps.sampler.clone(),
                decoders: deps.decoders.clone(),
                clock_steps: deps.clock_steps.clone(),
            };
            // The sampler ends when what feeds it (holding `inputs_tx`) does.
            tokio::spawn(sampler.run());
            (Some(inputs_tx), Some(Arc::new(rate_tx)))
        } else {
            (None, None)
        };
        let (stop, stopped) = watch::channel(false);
        // With a `sample_source`, its own ffmpeg feeds the sampler; the recorder does not.
        let sampler = match (Source::sample_of_camera(&camera, secrets.first().map(String::as_str)), sampler, &rate) {
            (Some(sub), Some(inputs), Some(rate)) => {
                let feed = SampleFeed {
                    camera: id.clone(),
                    source: sub,
                    secrets: secrets.clone(),
                    ffmpeg: deps.ffmpeg.clone(),
                    encoder: deps.encoder.clone(),
                    sampler: inputs,
                    frames: rate.subscribe(),
                };
                tokio::spawn(feed.run(stopped.clone()));
                None
            }
            (_, sampler, _) => sampler,
        };
        let mode = match deps.modes.watch(&id) {
            Some(mode) => mode,
            None => watch::channel(crate::capture::modes::InForce::configured(camera.record)).1,
        };
        let supervisor = CameraSupervisor {
            camera: camera.clone(),
            source: source.clone(),
            secrets,
            recordings_dir: deps.recordings_dir.clone(),
            encoder: deps.encoder.clone(),
            ffmpeg: deps.ffmpeg.clone(),
            store: deps.store.clone(),
            events: deps.events.clone(),
            mqtt: deps.mqtt.clone(),
            states: deps.states.clone(),
            sampler,
            frames: rate.as_ref().map(|rate| rate.subscribe()),
            heartbeat: Heartbeat::new(),
            clock_steps: deps.clock_steps.clone(),
            storage_pauses: deps.storage_pauses.clone(),
        };
        let heartbeat = supervisor.heartbeat.clone();
        let supervisor = tokio::spawn(supervisor.run(stopped, mode));
        tracing::info!(camera = %id, "camera started");
        self.running.insert(id, RunningCamera { config: camera, source, stop, supervisor, rate, heartbeat });
    }

    /// Stops camera `id`: its recorder closes and indexes its last segment.
    pub async fn stop(&mut self, id: &str, forget: bool) {
        let Some(camera) = self.running.remove(id) else { return };
        let _ = camera.stop.send(true);
        stop_within(id, camera.supervisor).await;
        if forget {
            self.deps.offered.remove(id);
            self.deps.states.remove(id);
        }
        tracing::info!(camera = %id, "camera stopped");
    }

    /// Clears a removed camera's retained state on the broker (an empty retained message).
    pub fn clear_state(&self, id: &str) {
        let topic = self.deps.mqtt.topics().camera_state(id);
        self.deps.mqtt.publish(topic, Vec::new(), rumqttc::QoS::AtLeastOnce, true);
    }

    /// Stops every camera, all at once.
    pub async fn stop_all(&mut self) {
        for camera in self.running.values() {
            let _ = camera.stop.send(true);
        }
        for (id, camera) in std::mem::take(&mut self.running) {
            stop_within(&id, camera.supervisor).await;
        }
    }

    /// Cameras whose supervisor has not beaten for `limit`, or has ended.
    pub fn stalled(&self, limit: Duration) -> Vec<&str> {
        self.running
            .iter()
            .filter(|(_, c)| c.heartbeat.age() > limit || c.supervisor.is_finished())
            .map(|(id, _)| id.as_str())
            .collect()
    }

    /// How many cameras run.
    pub fn running(&self) -> usize {
        self.running.len()
    }

    /// Replaces the config of a camera whose recorder keeps running.
    pub fn update(&mut self, camera: CameraConfig) {
        if let Some(running) = self.running.get_mut(&camera.id) {
            running.config = camera;
        }
    }

    /// The sampled cameras, for the planner, in `order`.
    pub fn planned(&self, order: &[CameraConfig]) -> Vec<PlannedCamera> {
        order
            .iter()
            .filter_map(|c| {
                let running = self.running.get(&c.id)?;
                let rate = running.rate.clone()?;
                Some(PlannedCamera {
                    demand: SampleDemand {
                        camera: c.id.clone(),
                        sample_fps: running.config.sample_fps,
                        priority: running.config.priority,
                    },
                    width: running.config.sample_width,
                    rate,
                })
            })
            .collect()
    }
}

/// Waits `STOP_TIMEOUT` for a stopping supervisor; then aborts it (its recorder dies with it,
/// `kill_on_drop`), so two supervisors never run for one camera.
async fn stop_within(id: &str, mut supervisor: JoinHandle<()>) {
    if tokio::time::timeout(STOP_TIMEOUT, &mut supervisor).await.is_err() {
        tracing::warn!(camera = %id, "the camera did not stop in time: cut off");
        supervisor.abort();
        let _ = supervisor.await;
    }
}
