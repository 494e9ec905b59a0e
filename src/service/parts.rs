//! Building the node's parts: the broker session and its subscriptions, the
//! worker and detection intake with the zone engines, statistics, the command
//! router, Home Assistant, the recording tools, and the test hooks.

use crate::backup::scheduler::JobReporting;
use crate::capture::{self, modes::RecordModes, snapshot::Snapshots};
use crate::commands::auth::Verifier;
use crate::commands::exec::{Host, ReloadRequest};
use crate::commands::router::CommandRouter;
use crate::config::LoadedConfig;
use crate::homeassistant::HomeAssistant;
use crate::mqtt::{self, IncomingMessage, MqttHandle, SessionSettings, Subscription};
use crate::offers::{OfferedFrames, WorkerSummary};
use crate::outbox::{EventSink, EventType, NewEvent};
use crate::protocol::Topics;
use crate::recording::guard::StorageGuard;
use crate::recording::sweeper::ReadLocks;
use crate::sampler::camera::SamplerBoard;
use crate::stats::StatsSources;
use crate::store::Store;
use crate::sys::clock::{ClockWatch, Steps};
use crate::wallclock::UnixMs;
use crate::workers::errors::ErrorReporter;
use crate::workers::intake::{self, IntakeCounters, IntakeLimits, LatestDetections};
use crate::workers::status::{STATUS_MAX_BYTES, WorkerRegistry};
use crate::zones::engine::ZoneEngine;
use crate::zones::service::{ZoneCounters, ZoneService, ZoneUpdate};
use anyhow::Result;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;

type Incoming = mpsc::Receiver<IncomingMessage>;

/// Largest Home Assistant birth message read (`online` / `offline`).
const BIRTH_MAX_BYTES: usize = 64;

/// What the node's subscriptions deliver.
pub struct Inbox {
    /// `P/workers/+/status`.
    pub statuses: Incoming,
    /// `P/detections/+`.
    pub detections: Incoming,
    /// `P/cmd/+`.
    pub commands: Incoming,
    /// Home Assistant's `<prefix>/status`.
    pub births: Incoming,
}

/// The broker session, started: its task, its handle, what it receives and the outbox's wake-up.
pub struct Session {
    /// The session's task.
    pub task: JoinHandle<()>,
    /// The way to the broker.
    pub mqtt: MqttHandle,
    /// What its subscriptions deliver.
    pub inbox: Inbox,
    /// Rung when an event is stored, so the session publishes it at once.
    pub outbox_wake: Arc<Notify>,
}

/// Starts the broker session with the node's subscriptions.
pub fn start_session(config: &LoadedConfig, store: &Store) -> Result<Session> {
    let settings = SessionSettings::of_node(config)?;
    let topics = Topics::new(config.topic_root());
    let (status_tx, statuses) = mpsc::channel(64);
    let (detections_tx, detections) = mpsc::channel(256);
    // As deep as the driver's queue: a burst read in one turn of the session is never dropped
    // before the router has answered it (`busy` if need be).
    let (commands_tx, commands) = mpsc::channel(256);
    let (births_tx, births) = mpsc::channel(4);
    // Every topic has its size limit, checked before anything is queued.
    let message_bytes = config.board.limits.max_message_bytes.0 as usize;
    let subscriptions = vec![
        Subscription { filter: topics.worker_statuses(), max_bytes: STATUS_MAX_BYTES, sink: status_tx },
        Subscription { filter: topics.detections(), max_bytes: message_bytes, sink: detections_tx },
        Subscription { filter: topics.commands(), max_bytes: message_bytes, sink: commands_tx },
        Subscription {
            filter: format!("{}/status", config.config.homeassistant.prefix),
            max_bytes: BIRTH_MAX_BYTES,
            sink: births_tx,
        },
    ];
    let outbox_wake = Arc::new(Notify::new());
    let (session, mqtt) = mqtt::session::session(&settings, topics, store.clone(), outbox_wake.clone(), subscriptions)?;
    let inbox = Inbox { statuses, detections, commands, births };
    Ok(Session { task: tokio::spawn(session.run()), mqtt, inbox, outbox_wake })
}

/// State shared between the parts of the node and `P/stats`.
#[derive(Clone)]
pub struct Shared {
    /// Camera states.
    pub cameras: capture::CameraStates,
    /// Sampler sizes and counters.
    pub sampler: SamplerBoard,
    /// `P/errors` and reject counters.
    pub errors: ErrorReporter,
    /// Latest detections per camera.
    pub detections: LatestDetections,
    /// Detection intake counters.
    pub intake: Arc<IntakeCounters>,
    /// Frames offered to workers.
    pub offered: Arc<OfferedFrames>,
    /// Zone event and lock counters.
    pub zones: Arc<std::sync::Mutex<ZoneCounters>>,
    /// Segments being read (backup, export): retention keeps them.
    pub reads: ReadLocks,
    /// Wall-clock steps seen since start.
    pub clock_steps: Arc<std::sync::atomic::AtomicU64>,
    /// The same, for the recorders and the zone engines to follow.
    pub steps: watch::Sender<Steps>,
    /// The storage guard's memory (paused recorders, the pressure episode), across reloads.
    pub storage: StorageGuard,
}

impl Shared {
    /// Empty state for the cameras of `config`.
    pub fn new(config: &LoadedConfig, mqtt: &MqttHandle) -> Self {
        Self {
            cameras: capture::CameraStates::default(),
            sampler: SamplerBoard::default(),
            errors: ErrorReporter::new(mqtt.clone()),
            detections: LatestDetections::default(),
            intake: Arc::new(IntakeCounters::default()),
            offered: Arc::new(OfferedFrames::new(config.config.cameras.iter().map(|c| c.id.as_str()))),
            zones: Arc::default(),
            reads: ReadLocks::default(),
            clock_steps: Arc::default(),
            steps: watch::Sender::new(Steps::default()),
            storage: StorageGuard::default(),
        }
    }
}

/// Starts following workers, taking their detections and running the zone engines.
pub fn start_workers(
    config: &LoadedConfig,
    (events, store, mqtt): (&EventSink, &Store, &MqttHandle),
    shared: &Shared,
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
        latest: shared.detections.clone(),
        stats: shared.zones.clone(),
        clock_steps: shared.steps.subscribe(),
        frame: crate::zones::objects::FrameObjects::new(crate::zones::objects::frame_labels(&config.config.cameras)),
    };
    let errors = shared.errors.clone();
    vec![
        tokio::spawn(intake::watch_workers(statuses, registry, summary, events.clone(), errors.clone())),
        tokio::spawn(intake::take_detections(
            detections,
            shared.offered.clone(),
            intake_limits,
            errors,
            batches_tx,
            shared.intake.clone(),
        )),
        tokio::spawn(zones.run(batches_rx, zone_updates)),
    ]
}

/// Where `P/stats` reads its numbers.
pub fn stats_sources(
    config: &LoadedConfig,
    (store, mqtt): (&Store, &MqttHandle),
    shared: &Shared,
    workers: watch::Receiver<WorkerSummary>,
) -> Arc<StatsSources> {
    Arc::new(StatsSources {
        mqtt: mqtt.clone(),
        store: store.clone(),
        cameras: shared.cameras.clone(),
        sampler: shared.sampler.clone(),
        errors: shared.errors.clone(),
        detections: shared.detections.clone(),
        intake: shared.intake.clone(),
        workers,
        zones: shared.zones.clone(),
        recordings_dir: config.recordings_dir.clone(),
        rss_budget: config.board.limits.rss_budget.0,
        clock_steps: shared.clock_steps.clone(),
    })
}

/// What the command router and Home Assistant act on.
pub struct Commanded {
    /// The config in force.
    pub config: watch::Receiver<Arc<LoadedConfig>>,
    /// Who may run what.
    pub verifier: watch::Receiver<Arc<Verifier>>,
    /// Reloads asked by the `reload` command.
    pub reload: mpsc::Sender<ReloadRequest>,
    /// Where `P/stats` reads its numbers.
    pub stats: Arc<StatsSources>,
    /// Backup jobs.
    pub backups: JobReporting,
    /// Recording modes.
    pub modes: RecordModes,
    /// Snapshots on demand: the same as the scheduled ones, so their `seq` counts both.
    pub snapshots: Snapshots,
    /// When the node started.
    pub started: Instant,
}

/// Starts the command router and Home Assistant.
pub fn start_commands(
    parts: Commanded,
    (store, mqtt): (&Store, &MqttHandle),
    shared: &Shared,
    (commands, births): (Incoming, Incoming),
) -> Vec<JoinHandle<()>> {
    let config = parts.config.borrow().clone();
    let snapshots = parts.snapshots;
    let home_assistant = HomeAssistant {
        config: parts.config.clone(),
        mqtt: mqtt.clone(),
        births,
        cameras: shared.cameras.clone(),
        stats: parts.stats.clone(),
        started: parts.started,
        errors: shared.errors.clone(),
        store: store.clone(),
    };
    let host = Host {
        config: parts.config,
        store: store.clone(),
        mqtt: mqtt.clone(),
        reads: shared.reads.clone(),
        stats: parts.stats,
        started: parts.started,
        backups: parts.backups,
        reload: parts.reload,
        modes: parts.modes,
        snapshots,
        cameras: shared.cameras.clone(),
        storage: shared.storage.clone(),
    };
    let router = CommandRouter {
        incoming: commands,
        verifier: parts.verifier,
        host,
        errors: shared.errors.clone(),
        max_bytes: config.board.limits.max_message_bytes.0 as usize,
    };
    vec![tokio::spawn(home_assistant.run()), tokio::spawn(router.run())]
}

/// Checks ffmpeg and ffprobe and reconciles the index with the disk; returns the ffmpeg to use.
pub async fn find_recording_tools(config: &LoadedConfig, store: &Store) -> PathBuf {
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

/// Watches the wall clock against the boot clock every second; on a step, emits one
/// `clock_step`, counts it, and tells the recorders (through `steps`) to start anew on the
/// new time.
pub async fn watch_clock(events: EventSink, count: Arc<std::sync::atomic::AtomicU64>, steps: watch::Sender<Steps>) {
    let mut clock = ClockWatch::new(crate::sys::clock::read());
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(step) = clock.observe(crate::sys::clock::read()) else { continue };
        let (from, to) = (UnixMs(step.from_ms), UnixMs(step.to_ms));
        tracing::warn!(from = %from.to_rfc3339(), to = %to.to_rfc3339(), delta_ms = step.delta_ms, "the wall clock was stepped");
        count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        steps.send_modify(|s| {
            s.count += 1;
            s.total_delta_ms += step.delta_ms;
        });
        let event = NewEvent::new(EventType::ClockStep, None, to)
            .with("from", from.to_rfc3339())
            .with("to", to.to_rfc3339())
            .with("delta_s", step.delta_ms as f64 / 1000.0);
        if let Err(e) = events.emit(event).await {
            tracing::error!(error = %e, "clock_step not stored");
        }
    }
}

/// The test hooks of `run`: `test` events at start, a store thread that hangs.
pub fn test_hooks(options: &super::RunOptions, events: &EventSink, store: &Store) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    if options.emit_test_events > 0 {
        tasks.push(tokio::spawn(emit_test_events(events.clone(), options.emit_test_events)));
    }
    if let Some(after) = options.stall_store_after {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
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
    tasks
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
