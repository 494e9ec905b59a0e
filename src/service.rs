//! `heldar-edge run`: wires the store, the MQTT session, the outbox and the
//! stats reporter together and stops them in order on SIGINT/SIGTERM.

use crate::capture::{self, CameraSupervisor, source::Source};
use crate::config::LoadedConfig;
use crate::config::schema::RecordMode;
use crate::mqtt::{self, Subscription, Topics};
use crate::outbox::{EventSink, EventType, NewEvent};
use crate::recording::sweeper::{ReadLocks, Sweeper};
use crate::sampler::budget::SampleDemand;
use crate::sampler::camera::{CameraSampler, SamplerBoard};
use crate::sampler::offered::OfferedFrames;
use crate::sampler::planner::{PlannedCamera, Planner};
use crate::store::Store;
use crate::wallclock::UnixMs;
use crate::workers::errors::ErrorReporter;
use crate::workers::intake::{self, IntakeCounters, IntakeLimits, LatestDetections};
use crate::workers::status::{WorkerRegistry, WorkerSummary};
use crate::zones::engine::ZoneEngine;
use crate::zones::service::{ZoneCounters, ZoneService};
use anyhow::{Context, Result};
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
}

/// Runs the service until SIGINT or SIGTERM.
pub async fn run(config: LoadedConfig, options: RunOptions) -> Result<()> {
    // rumqttc leaves the TLS crypto backend to us; ring cross-compiles with a plain C toolchain.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut signals = Signals::new()?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating node.data_dir {}", config.data_dir.display()))?;
    let (store, store_thread) = Store::open(&config.index_path())?;
    let outbox_wake = Arc::new(Notify::new());
    let settings = mqtt::session::settings_from_config(&config)?;
    let topics = Topics::new(config.topic_root());
    let (status_tx, status_rx) = mpsc::channel(64);
    let (detections_tx, detections_rx) = mpsc::channel(256);
    let subscriptions = vec![
        Subscription { filter: format!("{}/workers/+/status", topics.root()), sink: status_tx },
        Subscription { filter: format!("{}/detections/+", topics.root()), sink: detections_tx },
    ];
    let (session, mqtt) = mqtt::session::session(&settings, topics, store.clone(), outbox_wake.clone(), subscriptions)?;
    let session_task = tokio::spawn(session.run());
    let events = EventSink::new(store.clone(), outbox_wake, config.board.limits.outbox_max);
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
    let mut background =
        start_workers(&config, (&events, &store, &mqtt), &parts, (status_rx, detections_rx), summary_tx);
    let stats = crate::stats::StatsSources {
        mqtt: mqtt.clone(),
        store: store.clone(),
        cameras: parts.cameras.clone(),
        sampler: parts.sampler.clone(),
        errors: parts.errors.clone(),
        detections: parts.detections.clone(),
        intake: parts.intake.clone(),
        workers: summary_rx.clone(),
        zones: parts.zones.clone(),
    };
    let identity = (config.node_id.clone(), config.config.node.board.clone());
    background.push(tokio::spawn(crate::stats::run(
        stats,
        identity,
        Duration::from_secs(config.config.mqtt.stats_interval_s),
    )));
    if !config.config.backup.policies.is_empty() {
        let ctx = backup_context(&config, &store, &parts.reads);
        let backups = crate::backup::scheduler::run(ctx, config.config.backup.clone(), events.clone(), mqtt.clone());
        background.push(tokio::spawn(backups));
    }
    let sweeper = Sweeper::new(&config, store.clone(), parts.reads.clone());
    let sweep_every = Duration::from_secs(config.config.storage.sweep_interval_s);
    background.push(tokio::spawn(sweeper.run(events.clone(), sweep_every)));
    if options.emit_test_events > 0 {
        background.push(tokio::spawn(emit_test_events(events.clone(), options.emit_test_events)));
    }
    let (stop_cameras, cameras_stopped) = watch::channel(false);
    let camera_tasks =
        start_cameras(&config, &store, (&events, &mqtt, &parts), summary_rx, &mut background, cameras_stopped).await?;
    tracing::info!(
        node = %config.node_id,
        board = %config.config.node.board,
        broker = %config.config.mqtt.url,
        topic_root = %config.topic_root(),
        index = %config.index_path().display(),
        "heldar-edge running"
    );

    signals.wait_for_stop().await;
    tracing::info!("stopping");
    let _ = stop_cameras.send(true);
    for task in camera_tasks {
        // Recorders close and index their last segment; a stuck one is cut off.
        if tokio::time::timeout(Duration::from_secs(10), task).await.is_err() {
            tracing::warn!("a camera did not stop in time");
        }
    }
    for task in background {
        task.abort();
        let _ = task.await;
    }
    mqtt.shutdown().await;
    let _ = session_task.await;
    drop((events, store, mqtt, parts));
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
    (statuses, detections): (Incoming, Incoming),
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
        tokio::spawn(zones.run(batches_rx)),
    ]
}

/// Reconciles the index with the disk, then starts one supervisor per camera, a sampler per
/// sampled camera and the sampling planner.
async fn start_cameras(
    config: &LoadedConfig,
    store: &Store,
    (events, mqtt, parts): (&EventSink, &mqtt::MqttHandle, &Parts),
    workers: watch::Receiver<WorkerSummary>,
    background: &mut Vec<JoinHandle<()>>,
    stop: watch::Receiver<bool>,
) -> Result<Vec<JoinHandle<()>>> {
    let base = config.path.parent().unwrap_or(std::path::Path::new("."));
    let mut cameras = Vec::new();
    for (i, camera) in config.config.cameras.iter().enumerate() {
        let password = match &camera.password_file {
            Some(file) => Some(
                mqtt::session::read_secret(&base.join(file))
                    .with_context(|| format!("{}: camera[{i}].password_file", config.path.display()))?,
            ),
            None => None,
        };
        let source = Source::of_camera(camera, password.as_deref())
            .with_context(|| format!("{}: camera[{i}].source", config.path.display()))?;
        cameras.push((camera.clone(), source, password.into_iter().collect::<Vec<_>>()));
    }
    if cameras.is_empty() {
        return Ok(Vec::new());
    }
    std::fs::create_dir_all(&config.recordings_dir)
        .with_context(|| format!("creating the recordings directory {}", config.recordings_dir.display()))?;
    let ffmpeg = capture::find_program("ffmpeg");
    match capture::find_program("ffprobe") {
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
    let ffmpeg = ffmpeg.unwrap_or_else(|| "ffmpeg".into());
    let limits = &config.board.limits;
    let mut planned = Vec::new();
    let mut supervisors = Vec::new();
    for (camera, source, secrets) in cameras {
        let sampler = if camera.sample_fps > 0.0 && camera.record != RecordMode::Off {
            let (inputs_tx, inputs) = mpsc::channel(8);
            let (rate_tx, rate) = watch::channel(0.0);
            planned.push(PlannedCamera {
                demand: SampleDemand {
                    camera: camera.id.clone(),
                    sample_fps: camera.sample_fps,
                    priority: camera.priority,
                },
                width: camera.sample_width,
                rate: rate_tx,
            });
            let sampler = CameraSampler {
                camera: camera.id.clone(),
                sample_width: camera.sample_width,
                ffmpeg: ffmpeg.clone(),
                frame_slots: limits.frame_slots,
                max_frame_bytes: limits.max_frame_bytes.0 as usize,
                inputs,
                rate,
                offered: parts.offered.clone(),
                mqtt: mqtt.clone(),
                board: parts.sampler.clone(),
            };
            background.push(tokio::spawn(sampler.run()));
            Some(inputs_tx)
        } else {
            None
        };
        let supervisor = CameraSupervisor {
            camera,
            source,
            secrets,
            recordings_dir: config.recordings_dir.clone(),
            encoder: config.board.ffmpeg.h264_encoder.clone(),
            ffmpeg: ffmpeg.clone(),
            store: store.clone(),
            events: events.clone(),
            mqtt: mqtt.clone(),
            states: parts.cameras.clone(),
            sampler,
        };
        supervisors.push(tokio::spawn(supervisor.run(stop.clone())));
    }
    let planner = Planner {
        cameras: planned,
        max_total_fps: config.max_total_fps(),
        workers,
        board: parts.sampler.clone(),
        mqtt: mqtt.clone(),
    };
    background.push(tokio::spawn(planner.run()));
    Ok(supervisors)
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

    async fn wait_for_stop(&mut self) {
        loop {
            tokio::select! {
                _ = self.interrupt.recv() => return,
                _ = self.terminate.recv() => return,
                _ = self.hangup.recv() => {
                    tracing::warn!("SIGHUP: live reload is not supported by this version; restart to apply config changes");
                }
            }
        }
    }
}
