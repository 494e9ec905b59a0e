//! The running node: built from its parts, asked for its health, reloaded
//! (see `apply.rs`) and stopped in order.

use super::RunOptions;
use super::cameras::{self, CameraDeps, CameraSet};
use super::parts::{self, Commanded, Shared};
use super::tasks::{self, ConfigTasks};
use crate::backup::job::BackupContext;
use crate::backup::scheduler::{JobReporting, RunningPolicies};
use crate::capture::modes::RecordModes;
use crate::capture::snapshot::Snapshots;
use crate::capture::stills::Stills;
use crate::commands::auth::Verifier;
use crate::commands::exec::ReloadRequest;
use crate::config::LoadedConfig;
use crate::mqtt::MqttHandle;
use crate::offers::WorkerSummary;
use crate::outbox::EventSink;
use crate::recording::guard::StorageGuard;
use crate::recording::sweeper::{ReadLocks, Sweeper};
use crate::sampler::camera::SamplerBoard;
use crate::sampler::planner::Planner;
use crate::store::{Store, StoreThread};
use crate::sys::clock::Steps;
use crate::sys::lock::{DirLock, lock_dir};
use crate::wallclock::UnixMs;
use crate::zones::service::ZoneUpdate;
use anyhow::{Context, Result};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// The node: its parts and the tasks that run them.
pub struct Node {
    pub(super) config: watch::Sender<Arc<LoadedConfig>>,
    pub(super) verifier: watch::Sender<Arc<Verifier>>,
    pub(super) cameras: CameraSet,
    pub(super) zones: mpsc::Sender<ZoneUpdate>,
    pub(super) modes: RecordModes,
    workers: watch::Receiver<WorkerSummary>,
    sampler: SamplerBoard,
    store: Store,
    store_thread: Option<StoreThread>,
    reads: ReadLocks,
    reporting: JobReporting,
    tasks: ConfigTasks,
    /// Paused recorders and the `storage_pressure` episode, kept across reloads.
    storage: StorageGuard,
    /// Scheduled snapshots: their task is started anew with the config.
    stills: Stills,
    background: Vec<JoinHandle<()>>,
    session: Option<JoinHandle<()>>,
    /// This process's hold on `data_dir`: one writer at a time.
    _lock: DirLock,
}

impl Node {
    /// Opens the index, starts the session and every part, then the cameras. Returns the node
    /// and the reloads the `reload` command asks for.
    pub async fn start(config: LoadedConfig, options: &RunOptions) -> Result<(Node, mpsc::Receiver<ReloadRequest>)> {
        let started = std::time::Instant::now();
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating node.data_dir {}", config.data_dir.display()))?;
        let lock = lock_dir(&config.data_dir).with_context(|| config.data_dir.display().to_string())?;
        let verifier = Verifier::from_config(&config).with_context(|| config.path.display().to_string())?;
        let (store, store_thread) = Store::open(&config.index_path())?;
        let session = parts::start_session(&config, &store)?;
        let (mqtt, inbox) = (session.mqtt, session.inbox);
        let events = EventSink::new(store.clone(), session.outbox_wake, config.board.limits.outbox_max);
        let modes = RecordModes::load(store.clone(), &config.config, UnixMs::now()).await?;
        let shared = Shared::new(&config, &mqtt);
        let (summary_tx, workers) = watch::channel(WorkerSummary::default());
        let (zones, zone_updates) = mpsc::channel(4);
        let intake = (inbox.statuses, inbox.detections, zone_updates);
        let mut background = parts::start_workers(&config, (&events, &store, &mqtt), &shared, intake, summary_tx);
        let stats = parts::stats_sources(&config, (&store, &mqtt), &shared, workers.clone());
        let identity = (config.node_id.clone(), config.config.node.board.clone());
        let every = Duration::from_secs(config.config.mqtt.stats_interval_s);
        background.push(tokio::spawn(crate::stats::run(stats.clone(), identity, every, started)));
        background.extend(parts::test_hooks(options, &events, &store));
        let ffmpeg = parts::find_recording_tools(&config, &store).await;
        let (steps_tx, steps) = (shared.steps.clone(), shared.steps.subscribe());
        background.push(tokio::spawn(modes.clone().run(shared.steps.subscribe())));
        background.push(tokio::spawn(parts::watch_clock(events.clone(), shared.clock_steps.clone(), steps_tx)));
        let snapshot_dir = config.data_dir.join("snapshots");
        let snapshots =
            Snapshots::new(ffmpeg.clone(), config.recordings_dir.clone(), snapshot_dir, config.max_frame_bytes());
        let parts = (&store, &mqtt, &shared.cameras);
        let stills = Stills::new(&config, snapshots.clone(), parts, shared.steps.subscribe());
        let deps = camera_deps(&config, (&store, &events, &mqtt), &shared, &modes, (ffmpeg.clone(), steps));
        let reporting = JobReporting { events, mqtt: mqtt.clone(), running: RunningPolicies::default() };
        let (config, config_rx) = watch::channel(Arc::new(config));
        let (verifier, verifier_rx) = watch::channel(Arc::new(verifier));
        let (reload, reloads) = mpsc::channel(1);
        let parts = (store.clone(), shared.reads.clone(), shared.cameras.clone());
        background.extend(crate::viewing::start(config_rx.clone(), parts, snapshots.clone()).await?);
        let commanded = Commanded {
            config: config_rx,
            verifier: verifier_rx,
            reload,
            stats,
            backups: reporting.clone(),
            modes: modes.clone(),
            snapshots,
            started,
        };
        background.extend(parts::start_commands(commanded, (&store, &mqtt), &shared, (inbox.commands, inbox.births)));
        let mut node = Node {
            config,
            verifier,
            cameras: CameraSet::new(deps),
            zones,
            modes,
            workers,
            sampler: shared.sampler,
            store,
            store_thread: Some(store_thread),
            reads: shared.reads,
            reporting,
            tasks: ConfigTasks::default(),
            storage: shared.storage.clone(),
            stills,
            background,
            session: Some(session.task),
            _lock: lock,
        };
        node.start_cameras();
        Ok((node, reloads))
    }

    /// The config in force.
    pub fn current(&self) -> Arc<LoadedConfig> {
        self.config.borrow().clone()
    }

    /// The broker session.
    pub fn mqtt(&self) -> &MqttHandle {
        &self.reporting.mqtt
    }

    /// Logs what the node is and where it talks.
    pub fn log_started(&self) {
        let config = self.current();
        tracing::info!(
            node = %config.node_id,
            board = %config.config.node.board,
            broker = %config.config.mqtt.url,
            topic_root = %config.topic_root(),
            index = %config.index_path().display(),
            "heldar-edge running"
        );
    }

    /// Whether every part answers: the store within `within`, the MQTT session's loop and each
    /// camera's supervisor beating. `Ok` carries a one-line state for systemd's `STATUS=`.
    pub async fn health(&self, within: Duration) -> Result<String, String> {
        let depth = tokio::time::timeout(within, self.store.call(crate::outbox::counts))
            .await
            .map_err(|_| format!("the index did not answer within {} ms", within.as_millis()))?
            .map_err(|e| format!("the index failed: {e:#}"))?
            .unsent;
        let session = self.mqtt().stats();
        if session.heartbeat.age() > Duration::from_secs(5) {
            return Err("the MQTT session is not polling".into());
        }
        let stalled = self.cameras.stalled(Duration::from_secs(10));
        if !stalled.is_empty() {
            return Err(format!("camera supervisors not ticking: {}", stalled.join(", ")));
        }
        let connected = session.connected.load(std::sync::atomic::Ordering::Relaxed);
        Ok(format!(
            "{} cameras, mqtt {}, {depth} events waiting",
            self.cameras.running(),
            if connected { "connected" } else { "disconnected" }
        ))
    }

    /// Starts every camera and the tasks that follow the config.
    fn start_cameras(&mut self) {
        let config = self.current();
        for (i, camera) in config.config.cameras.iter().enumerate() {
            match cameras::camera_source(&config, i, camera) {
                Ok((source, secrets)) => self.cameras.start(camera.clone(), source, secrets),
                Err(e) => tracing::error!(camera = %camera.id, error = format!("{e:#}"), "camera not started"),
            }
        }
        self.start_tasks(&config, true);
    }

    /// (Re)starts the planner and the sweeper, and the backup scheduler when `backups`.
    pub(super) fn start_tasks(&mut self, config: &LoadedConfig, backups: bool) {
        let planner = Planner {
            cameras: self.cameras.planned(&config.config.cameras),
            max_total_fps: config.max_total_fps(),
            workers: self.workers.clone(),
            board: self.sampler.clone(),
            mqtt: self.reporting.mqtt.clone(),
        };
        tasks::replace(&mut self.tasks.planner, Some(tokio::spawn(planner.run())));
        let sweeper = Sweeper::new(config, self.store.clone(), self.reads.clone());
        let every = Duration::from_secs(config.config.storage.sweep_interval_s);
        let sweeping = tokio::spawn(self.storage.clone().run(sweeper, self.reporting.events.clone(), every));
        tasks::replace(&mut self.tasks.sweeper, Some(sweeping));
        let stills = Stills::cameras(config, |id| self.cameras.source(id).cloned());
        let taking = tokio::spawn(self.stills.clone().run(stills, config.config.node.time_zone()));
        tasks::replace(&mut self.tasks.stills, Some(taking));
        if backups {
            let scheduler = (!config.config.backup.policies.is_empty()).then(|| {
                let ctx = BackupContext::new(config, &self.store, &self.reads);
                tokio::spawn(crate::backup::scheduler::run(ctx, config.config.backup.clone(), self.reporting.clone()))
            });
            tasks::replace(&mut self.tasks.backups, scheduler);
        }
    }

    /// Stops the node in order: recorders close and index their last segment (a stuck one is
    /// cut off), the tasks end, `offline` goes out, and the index closes last.
    pub async fn stop(mut self) -> Result<()> {
        self.cameras.stop_all().await;
        self.tasks.abort_all().await;
        tasks::abort_all(std::mem::take(&mut self.background)).await;
        self.mqtt().shutdown().await;
        if let Some(session) = self.session.take() {
            let _ = session.await;
        }
        let store_thread = self.store_thread.take();
        // Every handle on the store goes first: its thread ends when the last one is gone.
        drop(self);
        if let Some(thread) = store_thread {
            tokio::task::spawn_blocking(move || thread.join()).await.context("closing the index")?;
        }
        Ok(())
    }
}

/// What every camera's tasks share.
fn camera_deps(
    config: &LoadedConfig,
    (store, events, mqtt): (&Store, &EventSink, &MqttHandle),
    shared: &Shared,
    modes: &RecordModes,
    (ffmpeg, clock_steps): (std::path::PathBuf, watch::Receiver<Steps>),
) -> CameraDeps {
    let limits = &config.board.limits;
    CameraDeps {
        store: store.clone(),
        events: events.clone(),
        mqtt: mqtt.clone(),
        states: shared.cameras.clone(),
        sampler: shared.sampler.clone(),
        offered: shared.offered.clone(),
        modes: modes.clone(),
        ffmpeg,
        recordings_dir: config.recordings_dir.clone(),
        encoder: config.board.ffmpeg.h264_encoder.clone(),
        decoders: crate::sampler::decoder::HardwareDecoders {
            h264: config.board.ffmpeg.h264_decoder.clone(),
            hevc: config.board.ffmpeg.hevc_decoder.clone(),
        },
        frames: (limits.frame_slots, limits.max_frame_bytes.0 as usize),
        clock_steps,
        storage_pauses: shared.storage.pauses(),
    }
}
