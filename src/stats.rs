//! `P/stats`: the periodic health report of the node.

use crate::mqtt::{MqttHandle, SessionStats};
use crate::outbox::{self, OutboxCounts};
use crate::store::Store;
use crate::wallclock::UnixMs;
use rumqttc::QoS;
use serde_json::{Value, json};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Everything one report is made of.
#[derive(Clone, Debug)]
pub struct StatsInput {
    /// Node id.
    pub node: String,
    /// Board profile name.
    pub board: String,
    /// When the report is made.
    pub now: UnixMs,
    /// Seconds since start.
    pub uptime_s: u64,
    /// MQTT session counters: connected, connects, publishes dropped, incoming dropped.
    pub mqtt: (bool, u64, u64, u64),
    /// Outbox depth and counters, when the index answered.
    pub outbox: Option<OutboxCounts>,
    /// Events published and acknowledged since start.
    pub events: (u64, u64),
    /// More sections by name: cameras, sampler, workers, detections, rejects.
    pub sections: Vec<(&'static str, Value)>,
}

/// The JSON of one `P/stats` message.
pub fn stats_payload(input: &StatsInput) -> Value {
    let (connected, connects, dropped, incoming_dropped) = input.mqtt;
    let outbox = input.outbox.map_or(Value::Null, |c| {
        json!({
            "depth": c.unsent,
            "dropped": c.dropped,
            "last_seq": c.last_seq,
            "published": input.events.0,
            "acked": input.events.1,
        })
    });
    let mut report = json!({
        "v": 1,
        "ts": input.now.to_rfc3339(),
        "node": input.node,
        "version": env!("CARGO_PKG_VERSION"),
        "board": input.board,
        "uptime_s": input.uptime_s,
        "mqtt": {
            "connected": connected,
            "connects": connects,
            "publishes_dropped": dropped,
            "incoming_dropped": incoming_dropped,
        },
        "outbox": outbox,
    });
    for (name, section) in &input.sections {
        report[*name] = section.clone();
    }
    report
}

fn session_counters(stats: &SessionStats) -> (bool, u64, u64, u64) {
    (
        stats.connected.load(Ordering::Relaxed),
        stats.connects.load(Ordering::Relaxed),
        stats.publishes_dropped.load(Ordering::Relaxed),
        stats.incoming_dropped.load(Ordering::Relaxed),
    )
}

/// Where a report's numbers come from.
pub struct StatsSources {
    /// The broker session.
    pub mqtt: MqttHandle,
    /// The index (outbox depth).
    pub store: Store,
    /// Camera states.
    pub cameras: crate::capture::CameraStates,
    /// Sampler counters.
    pub sampler: crate::sampler::camera::SamplerBoard,
    /// Rejects by reason.
    pub errors: crate::workers::errors::ErrorReporter,
    /// Latest detections per camera.
    pub detections: crate::workers::intake::LatestDetections,
    /// Detection intake counters.
    pub intake: std::sync::Arc<crate::workers::intake::IntakeCounters>,
    /// Online workers.
    pub workers: tokio::sync::watch::Receiver<crate::offers::WorkerSummary>,
    /// Zone events and locks.
    pub zones: std::sync::Arc<std::sync::Mutex<crate::zones::service::ZoneCounters>>,
    /// Root of the segments (free space of its file system).
    pub recordings_dir: std::path::PathBuf,
    /// The board's `rss_budget` in bytes.
    pub rss_budget: u64,
    /// Wall-clock steps seen since start.
    pub clock_steps: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl StatsSources {
    fn sections(&self) -> Vec<(&'static str, Value)> {
        let workers = *self.workers.borrow();
        let intake = &self.intake;
        vec![
            ("cameras", self.cameras.snapshot()),
            ("sampler", self.sampler.snapshot()),
            ("workers", json!({"online": workers.online, "max_fps": workers.cap_fps})),
            (
                "detections",
                json!({
                    "accepted": intake.accepted.load(Ordering::Relaxed),
                    "repeats": intake.repeats.load(Ordering::Relaxed),
                    "consumer_full": intake.consumer_full.load(Ordering::Relaxed),
                    "latest": self.detections.snapshot(),
                }),
            ),
            ("rejects", self.errors.snapshot()),
            ("process", {
                let rss = std::fs::read_to_string("/proc/self/status").ok().and_then(|s| rss_kib(&s));
                if rss.is_some_and(|kib| kib * 1024 > self.rss_budget) {
                    tracing::warn!(rss_kib = rss, budget_kib = self.rss_budget / 1024, "over the board's rss_budget");
                }
                json!({"rss_kib": rss, "rss_budget_kib": self.rss_budget / 1024})
            }),
            (
                "clock",
                json!({
                    "synchronised": crate::sys::clock::synchronised(),
                    "steps": self.clock_steps.load(Ordering::Relaxed),
                }),
            ),
            ("zones", {
                let z = *self.zones.lock().unwrap_or_else(|p| p.into_inner());
                json!({"events": z.events, "locks": z.locks})
            }),
        ]
    }
}

/// The `storage` section: free and total bytes of the recordings file system, and the
/// bytes of all indexed segments (`null` where unknown).
pub fn storage_section(disk: Option<(u64, u64)>, recorded: Option<u64>) -> Value {
    let free_percent =
        disk.filter(|(_, total)| *total > 0).map(|(free, total)| (free as f64 * 1000.0 / total as f64).round() / 10.0);
    json!({
        "free_bytes": disk.map(|d| d.0),
        "total_bytes": disk.map(|d| d.1),
        "free_percent": free_percent,
        "recordings_bytes": recorded,
    })
}

/// The resident set size in KiB from the text of `/proc/<pid>/status` (`VmRSS:  1234 kB`).
pub fn rss_kib(status: &str) -> Option<u64> {
    status.lines().find_map(|line| line.strip_prefix("VmRSS:")?.split_whitespace().next()?.parse().ok())
}

impl StatsSources {
    /// One report now, as `P/stats` carries it (and the `status` command answers).
    pub async fn report(&self, (node, board): (&str, &str), uptime: Duration) -> Value {
        let outbox = match self.store.call(outbox::counts).await {
            Ok(counts) => Some(counts),
            Err(e) => {
                tracing::warn!(error = %e, "outbox counters unavailable");
                None
            }
        };
        let recorded: Option<u64> =
            self.store.call(crate::recording::index::camera_totals).await.ok().map(|t| t.iter().map(|c| c.bytes).sum());
        let dir = self.recordings_dir.clone();
        // statvfs can block on a busy or network file system: off the runtime thread.
        let space = tokio::task::spawn_blocking(move || crate::sys::disk::disk_space(&dir).ok()).await.ok().flatten();
        let mut sections = self.sections();
        let mut storage = storage_section(space, recorded);
        // Scheduled snapshots live under the data directory, beside the recordings.
        storage["snapshots_bytes"] = self.store.call(crate::capture::stills::stills_bytes).await.ok().into();
        sections.push(("storage", storage));
        let session = self.mqtt.stats();
        let input = StatsInput {
            node: node.to_string(),
            board: board.to_string(),
            now: UnixMs::now(),
            uptime_s: uptime.as_secs(),
            mqtt: session_counters(session),
            outbox,
            events: (session.events_published.load(Ordering::Relaxed), session.events_acked.load(Ordering::Relaxed)),
            sections,
        };
        stats_payload(&input)
    }
}

/// Publishes `P/stats` every `interval` until the task is dropped; `started` is the service's start.
pub async fn run(
    sources: std::sync::Arc<StatsSources>,
    (node, board): (String, String),
    interval: Duration,
    started: Instant,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let report = sources.report((&node, &board), started.elapsed()).await;
        let topic = sources.mqtt.topics().stats();
        sources.mqtt.publish(topic, report.to_string(), QoS::AtMostOnce, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_has_version_uptime_and_outbox_depth() {
        let input = StatsInput {
            node: "n1".into(),
            board: "generic".into(),
            now: UnixMs(0),
            uptime_s: 42,
            mqtt: (true, 2, 3, 0),
            outbox: Some(OutboxCounts { unsent: 5, dropped: 1, last_seq: 9 }),
            events: (10, 4),
            sections: vec![("cameras", json!({"front": {"state": "recording"}}))],
        };
        let v = stats_payload(&input);
        assert_eq!(v["v"], 1);
        assert_eq!(v["uptime_s"], 42);
        assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(v["mqtt"]["connects"], 2);
        assert_eq!(v["outbox"]["depth"], 5);
        assert_eq!(v["outbox"]["dropped"], 1);
        assert_eq!(v["outbox"]["acked"], 4);
        assert_eq!(v["cameras"]["front"]["state"], "recording");
    }

    #[test]
    fn storage_reports_free_space_and_recordings() {
        let v = storage_section(Some((250, 1000)), Some(600));
        assert_eq!(v, json!({"free_bytes": 250, "total_bytes": 1000, "free_percent": 25.0, "recordings_bytes": 600}));
        assert!(storage_section(None, None)["free_percent"].is_null());
    }

    #[test]
    fn reads_the_resident_set_size() {
        assert_eq!(rss_kib("Name:\theldar-edge\nVmHWM:\t  9000 kB\nVmRSS:\t    7312 kB\n"), Some(7312));
        assert_eq!(rss_kib("Name:\tx\n"), None);
    }
}
