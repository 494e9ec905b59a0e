//! `heldar-edge run`: wires the store, the MQTT session, the outbox and the
//! stats reporter together and stops them in order on SIGINT/SIGTERM.

use crate::capture::{self, CameraSupervisor, source::Source};
use crate::config::LoadedConfig;
use crate::mqtt::{self, Topics};
use crate::outbox::{EventSink, EventType, NewEvent};
use crate::store::Store;
use crate::wallclock::UnixMs;
use anyhow::{Context, Result};
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{Notify, watch};

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
    let (session, mqtt) = mqtt::session::session(&settings, topics, store.clone(), outbox_wake.clone(), Vec::new())?;
    let session_task = tokio::spawn(session.run());
    let events = EventSink::new(store.clone(), outbox_wake, config.board.limits.outbox_max);
    let camera_states = capture::CameraStates::default();
    let stats_task = tokio::spawn(crate::stats::run(
        mqtt.clone(),
        store.clone(),
        camera_states.clone(),
        (config.node_id.clone(), config.config.node.board.clone()),
        Duration::from_secs(config.config.mqtt.stats_interval_s),
    ));
    let emit_task = (options.emit_test_events > 0)
        .then(|| tokio::spawn(emit_test_events(events.clone(), options.emit_test_events)));
    let (stop_cameras, cameras_stopped) = watch::channel(false);
    let camera_tasks = start_cameras(&config, &store, (&events, &mqtt, &camera_states), cameras_stopped).await?;
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
    stats_task.abort();
    let _ = stats_task.await;
    if let Some(task) = emit_task {
        task.abort();
        let _ = task.await;
    }
    mqtt.shutdown().await;
    let _ = session_task.await;
    drop((events, store, mqtt));
    tokio::task::spawn_blocking(move || store_thread.join()).await.context("closing the index")?;
    tracing::info!("stopped");
    Ok(())
}

/// Reconciles the index with the disk, then starts one supervisor per camera.
async fn start_cameras(
    config: &LoadedConfig,
    store: &Store,
    (events, mqtt, states): (&EventSink, &mqtt::MqttHandle, &capture::CameraStates),
    stop: watch::Receiver<bool>,
) -> Result<Vec<tokio::task::JoinHandle<()>>> {
    let base = config.path.parent().unwrap_or(std::path::Path::new("."));
    let mut supervisors = Vec::new();
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
        supervisors.push((camera.clone(), source, password.into_iter().collect::<Vec<_>>()));
    }
    if supervisors.is_empty() {
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
    Ok(supervisors
        .into_iter()
        .map(|(camera, source, secrets)| {
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
                states: states.clone(),
            };
            tokio::spawn(supervisor.run(stop.clone()))
        })
        .collect())
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
