//! `heldar-edge run`: wires the store, the MQTT session, the outbox, the
//! cameras and the rest together, applies a reload camera by camera, and stops
//! them in order on SIGINT/SIGTERM. Also the one-shot `sweep`, `backup` and `export`.

pub mod cameras;
pub mod notify;
pub mod reload;

use crate::backup::scheduler::{JobReporting, RunningPolicies};
use crate::capture::{self, modes::RecordModes, snapshot::Snapshots};
use crate::commands::auth::Verifier;
use crate::commands::exec::Host;
use crate::commands::reply::{CommandError, Outcome};
use crate::commands::router::CommandRouter;
use crate::config::{self, LoadedConfig};
use crate::homeassistant::HomeAssistant;
use crate::mqtt::{self, Subscription};
use crate::offers::OfferedFrames;
use crate::offers::WorkerSummary;
use crate::outbox::{EventSink, EventType, NewEvent};
use crate::protocol::ErrorCode;
use crate::protocol::Topics;
use crate::recording::sweeper::{ReadLocks, Sweeper};
use crate::sampler::camera::SamplerBoard;
use crate::sampler::planner::Planner;
use crate::store::Store;
use crate::wallclock::UnixMs;
use crate::workers::errors::ErrorReporter;
use crate::workers::intake::{self, IntakeCounters, IntakeLimits, LatestDetections};
use crate::workers::status::WorkerRegistry;
use crate::zones::engine::ZoneEngine;
use crate::zones::service::{ZoneCounters, ZoneService, ZoneUpdate};
use anyhow::{Context, Result};
use cameras::{CameraDeps, CameraSet};
use reload::CameraChange;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;

/// Options of `run` beyond the config.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Test hook: emit this many `test` events at start.
    pub emit_test_events: u64,
    /// Test hook: after this long the store thread hangs (the watchdog pings must stop).
    pub stall_store_after: Option<Duration>,
}

/// Runs the service until SIGINT or SIGTERM; SIGHUP (or the `reload` command) re-reads the config.
pub async fn run(config: LoadedConfig, options: RunOptions) -> Result<()> {
    // rumqttc leaves the TLS crypto backend to us; ring cross-compiles with a plain C toolchain.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let started = std::time::Instant::now();
    let mut signals = Signals::new()?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating node.data_dir {}", config.data_dir.display()))?;
    let verifier = Verifier::from_config(&config).with_context(|| config.path.display().to_string())?;
    let (store, store_thread) = Store::open(&config.index_path())?;
    let outbox_wake = Arc::new(Notify::new());
    let settings = mqtt::SessionSettings::from_config(
        &config.config.mqtt,
        config.config_dir(),
        config.client_id(),
        config.max_frame_bytes(),
    )?;
    let topics = Topics::new(config.topic_root());
    let (status_tx, status_rx) = mpsc::channel(64);
    let (detections_tx, detections_rx) = mpsc::channel(256);
    // As deep as the driver's queue: a burst read in one turn of the session is never dropped
    // before the router has answered it (`busy` if need be).
    let (commands_tx, commands_rx) = mpsc::channel(256);
    let (births_tx, births_rx) = mpsc::channel(4);
    let subscriptions = vec![
        Subscription { filter: topics.worker_statuses(), sink: status_tx },
        Subscription { filter: topics.detections(), sink: detections_tx },
        Subscription { filter: topics.commands(), sink: commands_tx },
        Subscription { filter: format!("{}/status", config.config.homeassistant.prefix), sink: births_tx },
    ];
    let (session, mqtt) = mqtt::session::session(&settings, topics, store.clone(), outbox_wake.clone(), subscriptions)?;
    let session_task = tokio::spawn(session.run());
    let events = EventSink::new(store.clone(), outbox_wake, config.board.limits.outbox_max);
    let modes = RecordModes::load(store.clone(), &config.config.cameras, UnixMs::now()).await?;
    let parts = Parts {
        cameras: capture::CameraStates::default(),
        sampler: SamplerBoard::default(),
        errors: ErrorReporter::new(mqtt.clone()),
        detections: LatestDetections::default(),
        intake: Arc::new(IntakeCounters::default()),
        offered: Arc::new(OfferedFrames::new(config.config.cameras.iter().map(|c| c.id.as_str()))),
        zones: Arc::default(),
        reads: ReadLocks::default(),
    };
    let (summary_tx, summary_rx) = watch::channel(WorkerSummary { online: 0, cap_fps: None });
    let (zone_updates, zone_updates_rx) = mpsc::channel(4);
    let mut background = start_workers(
        &config,
        (&events, &store, &mqtt),
        &parts,
        (status_rx, detections_rx, zone_updates_rx),
        summary_tx,
    );
    let stats = Arc::new(crate::stats::StatsSources {
        mqtt: mqtt.clone(),
        store: store.clone(),
        cameras: parts.cameras.clone(),
        sampler: parts.sampler.clone(),
        errors: parts.errors.clone(),
        detections: parts.detections.clone(),
        intake: parts.intake.clone(),
        workers: summary_rx.clone(),
        zones: parts.zones.clone(),
        recordings_dir: config.recordings_dir.clone(),
        rss_budget: config.board.limits.rss_budget.0,
    });
    let identity = (config.node_id.clone(), config.config.node.board.clone());
    background.push(tokio::spawn(crate::stats::run(
        stats.clone(),
        identity,
        Duration::from_secs(config.config.mqtt.stats_interval_s),
        started,
    )));
    background.push(tokio::spawn(modes.clone().run()));
    if options.emit_test_events > 0 {
        background.push(tokio::spawn(emit_test_events(events.clone(), options.emit_test_events)));
    }
    if let Some(after) = options.stall_store_after {
        let store = store.clone();
        background.push(tokio::spawn(async move {
            tokio::time::sleep(after).await;
            tracing::warn!("test hook: the store thread hangs now");
            let _ = store
                .call(|_| -> rusqlite::Result<()> {
                    loop {
                        std::thread::park();
                    }
                })
                .await;
        }));
    }
    let ffmpeg = find_recording_tools(&config, &store).await;
    let limits = &config.board.limits;
    let deps = CameraDeps {
        store: store.clone(),
        events: events.clone(),
        mqtt: mqtt.clone(),
        states: parts.cameras.clone(),
        sampler: parts.sampler.clone(),
        offered: parts.offered.clone(),
        modes: modes.clone(),
        ffmpeg: ffmpeg.clone(),
        recordings_dir: config.recordings_dir.clone(),
        encoder: config.board.ffmpeg.h264_encoder.clone(),
        frames: (limits.frame_slots, limits.max_frame_bytes.0 as usize),
    };
    let reporting = JobReporting { events: events.clone(), mqtt: mqtt.clone(), running: RunningPolicies::default() };
    let max_message_bytes = limits.max_message_bytes.0 as usize;
    let (config_tx, config_rx) = watch::channel(Arc::new(config));
    let (verifier_tx, verifier_rx) = watch::channel(Arc::new(verifier));
    let (reload_tx, mut reload_rx) = mpsc::channel(1);
    let snapshots = Snapshots::new(
        ffmpeg,
        deps.recordings_dir.clone(),
        config_rx.borrow().data_dir.join("snapshots"),
        deps.frames.1,
    );
    background.push(tokio::spawn(
        HomeAssistant {
            config: config_rx.clone(),
            mqtt: mqtt.clone(),
            births: births_rx,
            cameras: parts.cameras.clone(),
            stats: stats.clone(),
            started,
        }
        .run(),
    ));
    let host = Host {
        config: config_rx.clone(),
        store: store.clone(),
        mqtt: mqtt.clone(),
        reads: parts.reads.clone(),
        stats,
        started,
        backups: reporting.clone(),
        reload: reload_tx,
        modes: modes.clone(),
        snapshots,
        cameras: parts.cameras.clone(),
    };
    let router = CommandRouter {
        incoming: commands_rx,
        verifier: verifier_rx,
        host,
        errors: parts.errors.clone(),
        max_bytes: max_message_bytes,
    };
    background.push(tokio::spawn(router.run()));
    let mut node = Node {
        config: config_tx,
        verifier: verifier_tx,
        cameras: CameraSet::new(deps),
        zones: zone_updates,
        workers: summary_rx,
        sampler: parts.sampler.clone(),
        store: store.clone(),
        reads: parts.reads.clone(),
        modes: modes.clone(),
        reporting,
        tasks: NodeTasks::default(),
    };
    node.start();
    let notifier = notify::Notifier::from_env();
    notifier.send("READY=1\nSTATUS=running");
    let mut watchdog = tokio::time::interval(notifier.watchdog_every.unwrap_or(Duration::from_secs(3600)));
    watchdog.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    {
        let config = node.config.borrow();
        tracing::info!(
            node = %config.node_id,
            board = %config.config.node.board,
            broker = %config.config.mqtt.url,
            topic_root = %config.topic_root(),
            index = %config.index_path().display(),
            "heldar-edge running"
        );
    }

    loop {
        tokio::select! {
            signal = signals.next() => match signal {
                Signal::Stop => break,
                Signal::Reload => {
                    tracing::info!("SIGHUP: reloading the config");
                    let _ = node.reload().await;
                }
            },
            Some(reply) = reload_rx.recv() => {
                notifier.send("RELOADING=1");
                let outcome = node.reload().await;
                let _ = reply.send(outcome);
                notifier.send("READY=1");
            }
            _ = watchdog.tick(), if notifier.watchdog_every.is_some() => {
                let every = notifier.watchdog_every.unwrap_or_default();
                match node.health(&mqtt, every).await {
                    Ok(status) => notifier.send(&format!("WATCHDOG=1\nSTATUS={status}")),
                    Err(why) => {
                        tracing::error!(problem = %why, "a part of the node does not answer: no watchdog ping");
                        notifier.send(&format!("STATUS=not answering: {why}"));
                    }
                }
            }
        }
    }
    tracing::info!("stopping");
    notifier.send("STOPPING=1\nSTATUS=stopping: closing segments");
    // Recorders close and index their last segment; a stuck one is cut off.
    node.cameras.stop_all().await;
    node.tasks.abort_all().await;
    for task in background {
        task.abort();
        let _ = task.await;
    }
    mqtt.shutdown().await;
    let _ = session_task.await;
    drop((events, store, mqtt, parts, node, modes));
    tokio::task::spawn_blocking(move || store_thread.join()).await.context("closing the index")?;
    tracing::info!("stopped");
    Ok(())
}

/// State shared between the parts of the node and `P/stats`.
struct Parts {
    cameras: capture::CameraStates,
    sampler: SamplerBoard,
    errors: ErrorReporter,
    detections: LatestDetections,
    intake: Arc<IntakeCounters>,
    offered: Arc<OfferedFrames>,
    zones: Arc<std::sync::Mutex<ZoneCounters>>,
    reads: ReadLocks,
}

type Incoming = mpsc::Receiver<mqtt::IncomingMessage>;

/// Starts following workers and taking their detections.
fn start_workers(
    config: &LoadedConfig,
    (events, store, mqtt): (&EventSink, &Store, &mqtt::MqttHandle),
    parts: &Parts,
    (statuses, detections, zone_updates): (Incoming, Incoming, mpsc::Receiver<ZoneUpdate>),
    summary: watch::Sender<WorkerSummary>,
) -> Vec<JoinHandle<()>> {
    let limits = &config.board.limits;
    let registry = WorkerRegistry::new(limits.max_workers);
    let intake_limits = IntakeLimits {
        max_detections: limits.max_detections_per_message,
        max_bytes: limits.max_message_bytes.0 as usize,
    };
    // The seam between detections and the zone engines.
    let (batches_tx, batches_rx) = mpsc::channel(256);
    let engines = config
        .config
        .cameras
        .iter()
        .filter(|c| !c.zones.is_empty())
        .map(|c| (c.id.clone(), ZoneEngine::new(&c.zones, limits.max_tracks_per_camera)))
        .collect();
    let zones = ZoneService {
        engines,
        events: events.clone(),
        store: store.clone(),
        mqtt: mqtt.clone(),
        pre_roll: Duration::from_secs(config.config.events.pre_roll_s),
        post_roll: Duration::from_secs(config.config.events.post_roll_s),
        latest: parts.detections.clone(),
        stats: parts.zones.clone(),
    };
    vec![
        tokio::spawn(intake::watch_workers(statuses, registry, summary, events.clone(), parts.errors.clone())),
        tokio::spawn(intake::take_detections(
            detections,
            parts.offered.clone(),
            intake_limits,
            parts.errors.clone(),
            batches_tx,
            parts.intake.clone(),
        )),
        tokio::spawn(zones.run(batches_rx, zone_updates)),
    ]
}

/// Checks ffmpeg and ffprobe and reconciles the index with the disk; returns the ffmpeg to use.
async fn find_recording_tools(config: &LoadedConfig, store: &Store) -> PathBuf {
    let ffmpeg = crate::sys::process::find_program("ffmpeg");
    if config.config.cameras.is_empty() {
        return ffmpeg.unwrap_or_else(|| "ffmpeg".into());
    }
    if let Err(e) = std::fs::create_dir_all(&config.recordings_dir) {
        tracing::error!(dir = %config.recordings_dir.display(), error = %e, "cannot create the recordings directory");
    }
    match crate::sys::process::find_program("ffprobe") {
        Some(ffprobe) => {
            if let Err(e) = crate::recording::reconcile::reconcile(store, &config.recordings_dir, &ffprobe).await {
                tracing::error!(error = format!("{e:#}"), "reconciling index and disk failed");
            }
        }
        None => tracing::error!("ffprobe not found (apt-get install ffmpeg): unindexed segments are not reconciled"),
    }
    if ffmpeg.is_none() {
        tracing::error!("ffmpeg not found: cameras cannot record until it is installed (apt-get install ffmpeg)");
    }
    ffmpeg.unwrap_or_else(|| "ffmpeg".into())
}

/// Tasks that are started anew when the config changes.
#[derive(Default)]
struct NodeTasks {
    planner: Option<JoinHandle<()>>,
    sweeper: Option<JoinHandle<()>>,
    backups: Option<JoinHandle<()>>,
}

impl NodeTasks {
    fn replace(slot: &mut Option<JoinHandle<()>>, task: Option<JoinHandle<()>>) {
        if let Some(old) = std::mem::replace(slot, task) {
            old.abort();
        }
    }

    async fn abort_all(&mut self) {
        for task in [self.planner.take(), self.sweeper.take(), self.backups.take()].into_iter().flatten() {
            task.abort();
            let _ = task.await;
        }
    }
}

/// The parts of the running node that a reload changes.
struct Node {
    config: watch::Sender<Arc<LoadedConfig>>,
    verifier: watch::Sender<Arc<Verifier>>,
    cameras: CameraSet,
    zones: mpsc::Sender<ZoneUpdate>,
    workers: watch::Receiver<WorkerSummary>,
    sampler: SamplerBoard,
    store: Store,
    reads: ReadLocks,
    modes: RecordModes,
    reporting: JobReporting,
    tasks: NodeTasks,
}

impl Node {
    fn current(&self) -> Arc<LoadedConfig> {
        self.config.borrow().clone()
    }

    /// Whether every part answers: the store within `within`, the MQTT session's loop and each
    /// camera's supervisor beating. `Ok` carries a one-line state for systemd's `STATUS=`.
    async fn health(&self, mqtt: &mqtt::MqttHandle, within: Duration) -> Result<String, String> {
        let depth = tokio::time::timeout(within, self.store.call(crate::outbox::counts))
            .await
            .map_err(|_| format!("the index did not answer within {} ms", within.as_millis()))?
            .map_err(|e| format!("the index failed: {e:#}"))?
            .unsent;
        let session = mqtt.stats();
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
    fn start(&mut self) {
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
    fn start_tasks(&mut self, config: &LoadedConfig, backups: bool) {
        let store = self.store.clone();
        let planner = Planner {
            cameras: self.cameras.planned(&config.config.cameras),
            max_total_fps: config.max_total_fps(),
            workers: self.workers.clone(),
            board: self.sampler.clone(),
            mqtt: self.reporting.mqtt.clone(),
        };
        NodeTasks::replace(&mut self.tasks.planner, Some(tokio::spawn(planner.run())));
        let sweeper = Sweeper::new(config, store.clone(), self.reads.clone());
        let every = Duration::from_secs(config.config.storage.sweep_interval_s);
        NodeTasks::replace(
            &mut self.tasks.sweeper,
            Some(tokio::spawn(sweeper.run(self.reporting.events.clone(), every))),
        );
        if backups {
            let scheduler = (!config.config.backup.policies.is_empty()).then(|| {
                let ctx = backup_context(config, &store, &self.reads);
                tokio::spawn(crate::backup::scheduler::run(ctx, config.config.backup.clone(), self.reporting.clone()))
            });
            NodeTasks::replace(&mut self.tasks.backups, scheduler);
        }
    }

    /// Re-reads the config file and applies what changed, camera by camera; an invalid file,
    /// or one that changes what needs a restart, changes nothing.
    async fn reload(&mut self) -> Outcome {
        let old = self.current();
        let outcome = self.try_reload(&old).await;
        match &outcome {
            Ok(summary) => tracing::info!(changes = %summary, "config reloaded"),
            Err(e) => {
                for line in e.message.lines() {
                    tracing::error!(problem = %line, "config not reloaded");
                }
            }
        }
        outcome
    }

    async fn try_reload(&mut self, old: &LoadedConfig) -> Outcome {
        let invalid = |message: String| CommandError::new(ErrorCode::Failed, message);
        let new = config::load(&old.path).map_err(|e| invalid(format!("{e}\nnothing was changed")))?;
        let verifier = Verifier::from_config(&new).map_err(|e| invalid(format!("{e:#}\nnothing was changed")))?;
        let mut plan = reload::plan(old, &new);
        if !plan.restart_required.is_empty() {
            return Err(invalid(format!(
                "{}: changes to {} need a restart of the service (systemctl restart heldar-edge); nothing was changed",
                new.path.display(),
                plan.restart_required.join(", ")
            )));
        }
        let mut sources = BTreeMap::new();
        for (i, camera) in new.config.cameras.iter().enumerate() {
            let source = cameras::camera_source(&new, i, camera).map_err(|e| invalid(format!("{e:#}")))?;
            sources.insert(camera.id.clone(), source);
        }
        // A changed password (same file, new content) restarts the recorder too.
        for (id, change) in &mut plan.cameras {
            let running = self.cameras.source(id);
            if matches!(change, CameraChange::Updated(_) | CameraChange::Unchanged)
                && running != sources.get(id.as_str()).map(|(s, _)| s)
            {
                *change = CameraChange::Restarted;
            }
        }
        let limits = &new.board.limits;
        let mut engines = Vec::new();
        for (id, change) in &plan.cameras {
            let camera = new.config.cameras.iter().find(|c| c.id == *id);
            let before = old.config.cameras.iter().find(|c| c.id == *id);
            match (change, camera) {
                (CameraChange::Removed, _) => self.cameras.stop(id, true).await,
                (CameraChange::Restarted, Some(camera)) => {
                    self.cameras.stop(id, false).await;
                    if let Some((source, secrets)) = sources.remove(id) {
                        self.cameras.start(camera.clone(), source, secrets);
                    }
                }
                (CameraChange::Added, Some(camera)) => {
                    if let Some((source, secrets)) = sources.remove(id) {
                        self.cameras.start(camera.clone(), source, secrets);
                    }
                }
                (_, Some(camera)) => self.cameras.update(camera.clone()),
                _ => {}
            }
            let zones = camera.map(|c| c.zones.as_slice()).unwrap_or_default();
            if before.map(|c| c.zones.as_slice()).unwrap_or_default() != zones {
                let engine = (!zones.is_empty()).then(|| ZoneEngine::new(zones, limits.max_tracks_per_camera));
                engines.push((id.clone(), engine));
            }
        }
        self.modes.configure(&new.config.cameras, UnixMs::now()).await;
        let rolls =
            (Duration::from_secs(new.config.events.pre_roll_s), Duration::from_secs(new.config.events.post_roll_s));
        if (!engines.is_empty() || plan.events) && self.zones.send(ZoneUpdate { engines, rolls }).await.is_err() {
            tracing::error!("the zone engines are gone: zones not reloaded");
        }
        self.start_tasks(&new, plan.backup);
        self.verifier.send_replace(Arc::new(verifier));
        self.config.send_replace(Arc::new(new));
        Ok(plan.summary())
    }
}

fn backup_context(config: &LoadedConfig, store: &Store, reads: &ReadLocks) -> crate::backup::job::BackupContext {
    crate::backup::job::BackupContext {
        store: store.clone(),
        recordings_dir: config.recordings_dir.clone(),
        reads: reads.clone(),
        config_dir: config.path.parent().map(std::path::Path::to_path_buf).unwrap_or_default(),
    }
}

/// `heldar-edge backup POLICY`: runs one policy now with a progress bar on stderr; its
/// `backup_done`/`backup_failed` event goes to the outbox (a running service publishes it).
pub async fn backup_once(config: LoadedConfig, policy_id: &str) -> Result<crate::backup::job::JobProgress> {
    let backup = &config.config.backup;
    let policy = backup
        .policies
        .iter()
        .find(|p| p.id == policy_id)
        .with_context(|| format!("no [[backup.policy]] with id {policy_id:?}"))?;
    let dest = backup
        .destinations
        .iter()
        .find(|d| d.id == policy.destination)
        .with_context(|| format!("policy {policy_id}: no destination {:?}", policy.destination))?;
    with_index(&config, |store| async { run_backup(&config, policy, dest, store).await }).await
}

async fn run_backup(
    config: &LoadedConfig,
    policy: &crate::config::schema::PolicyConfig,
    dest: &crate::config::schema::DestinationConfig,
    store: Store,
) -> Result<crate::backup::job::JobProgress> {
    let ctx = backup_context(config, &store, &ReadLocks::default());
    let bar = |p: &crate::backup::job::JobProgress| {
        let fraction = if p.bytes_total == 0 { 1.0 } else { p.bytes_done as f64 / p.bytes_total as f64 };
        let filled = (fraction * 30.0).round() as usize;
        eprint!(
            "\r[{}{}] {}/{} files, {:.1}/{:.1} MiB ",
            "#".repeat(filled.min(30)),
            ".".repeat(30 - filled.min(30)),
            p.files_done,
            p.files_total,
            p.bytes_done as f64 / 1048576.0,
            p.bytes_total as f64 / 1048576.0
        );
    };
    let done = crate::backup::job::run_job(&ctx, policy, dest, &bar).await;
    let events = EventSink::new(store.clone(), Arc::new(Notify::new()), config.board.limits.outbox_max);
    events.emit(crate::backup::scheduler::finished_event(&done)).await?;
    Ok(done)
}

/// `heldar-edge export`: writes one archive of a window of footage.
pub async fn export_once(
    config: LoadedConfig,
    request: crate::backup::export::ExportRequest,
) -> Result<crate::backup::export::ExportResult> {
    let recordings_dir = config.recordings_dir.clone();
    with_index(&config, |store| async move {
        crate::backup::export::export(&store, &recordings_dir, &ReadLocks::default(), request).await
    })
    .await
}

/// Opens the index for a one-shot command, runs `f` with it, and closes it cleanly.
async fn with_index<T, F, Fut>(config: &LoadedConfig, f: F) -> Result<T>
where
    F: FnOnce(Store) -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let (store, store_thread) = Store::open(&config.index_path())?;
    let result = f(store).await;
    tokio::task::spawn_blocking(move || store_thread.join()).await.context("closing the index")?;
    result
}

/// `heldar-edge sweep`: one retention pass on the index and recordings of `config`.
pub async fn sweep_once(config: LoadedConfig) -> Result<crate::recording::sweeper::SweepReport> {
    with_index(&config, |store| async { Sweeper::new(&config, store, ReadLocks::default()).sweep(UnixMs::now()).await })
        .await
}

async fn emit_test_events(events: EventSink, count: u64) {
    for i in 0..count {
        let event = NewEvent::new(EventType::Test, None, UnixMs::now()).with("n", i);
        if let Err(e) = events.emit(event).await {
            tracing::error!(error = %e, "test event not stored");
            return;
        }
    }
    tracing::info!(count, "test events emitted");
}

/// What a signal asks of the service.
enum Signal {
    /// SIGINT or SIGTERM.
    Stop,
    /// SIGHUP.
    Reload,
}

struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
            terminate: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            hangup: signal(SignalKind::hangup()).context("installing the SIGHUP handler")?,
        })
    }

    async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = self.interrupt.recv() => Signal::Stop,
            _ = self.terminate.recv() => Signal::Stop,
            _ = self.hangup.recv() => Signal::Reload,
        }
    }
}
