//! The shell around workers: `P/workers/+/status` into the registry and
//! events, `P/detections/+` through validation into the detection consumer.

use super::Rejection;
use super::detections::{self, DetectionBatch};
use super::errors::ErrorReporter;
use super::status::{self, WorkerChange, WorkerRegistry};
use crate::mqtt::IncomingMessage;
use crate::offers::OfferedFrames;
use crate::offers::WorkerSummary;
use crate::outbox::{EventSink, EventType, NewEvent};
use crate::wallclock::UnixMs;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, watch};

/// Follows worker statuses; publishes the summary the sampler plans with.
pub async fn watch_workers(
    mut incoming: mpsc::Receiver<IncomingMessage>,
    mut registry: WorkerRegistry,
    summary: watch::Sender<WorkerSummary>,
    events: EventSink,
    errors: ErrorReporter,
) {
    while let Some(message) = incoming.recv().await {
        let worker = message.topic.rsplit('/').nth(1).unwrap_or_default().to_string();
        if let Some(size) = message.oversize() {
            let why = format!("{size} bytes, over the {} bytes a status may have", status::STATUS_MAX_BYTES);
            errors.reject(&message.topic, &Rejection::new("too_large", why).by(Some(&worker)));
            continue;
        }
        let change = status::parse_status(&message.payload)
            .map_err(|r| r.by(Some(&worker)))
            .and_then(|status| registry.apply(&worker, status));
        let change = match change {
            Ok(change) => change,
            Err(rejection) => {
                errors.reject(&message.topic, &rejection);
                continue;
            }
        };
        let Some(change) = change else { continue };
        let (kind, id) = match &change {
            WorkerChange::Online(id) => (EventType::WorkerOnline, id),
            WorkerChange::Offline(id) => (EventType::WorkerOffline, id),
        };
        tracing::info!(worker = %id, online = matches!(change, WorkerChange::Online(_)), "worker status");
        summary.send_replace(registry.summary());
        if let Err(e) = events.emit(NewEvent::new(kind, None, UnixMs::now()).with("worker", id.as_str())).await {
            tracing::error!(error = %e, "worker event not stored");
        }
    }
}

/// Limits detection messages are held to.
#[derive(Clone, Copy, Debug)]
pub struct IntakeLimits {
    /// Detections per message.
    pub max_detections: usize,
    /// Bytes per message.
    pub max_bytes: usize,
}

/// Validates detections; accepted batches go to `consumer`, refusals to `P/errors`.
pub async fn take_detections(
    mut incoming: mpsc::Receiver<IncomingMessage>,
    offered: Arc<OfferedFrames>,
    limits: IntakeLimits,
    errors: ErrorReporter,
    consumer: mpsc::Sender<DetectionBatch>,
    counters: Arc<IntakeCounters>,
) {
    while let Some(message) = incoming.recv().await {
        if let Some(size) = message.oversize() {
            let why = format!("{size} bytes, over the board's max_message_bytes of {}", limits.max_bytes);
            errors.reject(&message.topic, &Rejection::new("too_large", why));
            continue;
        }
        let camera = message.topic.rsplit('/').next().unwrap_or_default();
        let known = |c: &str| offered.knows(c);
        let offered_ts = |c: &str, seq: u64| offered.ts_of(c, seq);
        let ctx = detections::Context {
            known_camera: &known,
            offered_ts: &offered_ts,
            max_detections: limits.max_detections,
            max_bytes: limits.max_bytes,
        };
        match detections::validate(camera, &message.payload, &ctx) {
            Ok(batch) => {
                if !offered.first_answer(&batch.camera, batch.seq, &batch.worker) {
                    counters.repeats.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                counters.accepted.fetch_add(1, Ordering::Relaxed);
                if consumer.try_send(batch).is_err() {
                    counters.consumer_full.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(rejection) => errors.reject(&message.topic, &rejection),
        }
    }
}

/// Counters of the detection intake, for `P/stats`.
#[derive(Debug, Default)]
pub struct IntakeCounters {
    /// Batches accepted.
    pub accepted: AtomicU64,
    /// Repeats of (camera, seq, worker) ignored.
    pub repeats: AtomicU64,
    /// Batches dropped because the consumer was behind.
    pub consumer_full: AtomicU64,
}

/// Each camera's latest accepted batch, for `P/stats`.
#[derive(Clone, Default)]
pub struct LatestDetections(Arc<Mutex<BTreeMap<String, DetectionBatch>>>);

impl LatestDetections {
    /// Keeps `batch` as its camera's latest.
    pub fn record(&self, batch: &DetectionBatch) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).insert(batch.camera.clone(), batch.clone());
    }

    /// Summaries by camera: worker, seq, ts and the labels found.
    pub fn snapshot(&self) -> serde_json::Value {
        let latest = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let cameras = latest.iter().map(|(camera, b)| {
            let labels: Vec<&str> = b.detections.iter().map(|d| d.label.as_str()).collect();
            let value = serde_json::json!({
                "worker": b.worker, "seq": b.seq, "ts": b.ts.to_rfc3339(), "count": b.detections.len(), "labels": labels,
            });
            (camera.clone(), value)
        });
        serde_json::Value::Object(cameras.collect())
    }
}
