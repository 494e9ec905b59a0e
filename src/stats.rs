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
    pub workers: tokio::sync::watch::Receiver<crate::workers::status::WorkerSummary>,
    /// Zone events and locks.
    pub zones: std::sync::Arc<std::sync::Mutex<crate::zones::service::ZoneCounters>>,
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
            (
                "process",
                json!({"rss_kib": std::fs::read_to_string("/proc/self/status").ok().and_then(|s| rss_kib(&s))}),
            ),
            ("zones", {
                let z = *self.zones.lock().unwrap_or_else(|p| p.into_inner());
                json!({"events": z.events, "locks": z.locks})
            }),
        ]
    }
}

/// The resident set size in KiB from the text of `/proc/<pid>/status` (`VmRSS:  1234 kB`).
pub fn rss_kib(status: &str) -> Option<u64> {
    status.lines().find_map(|line| line.strip_prefix("VmRSS:")?.split_whitespace().next()?.parse().ok())
}

/// Publishes `P/stats` every `interval` until the task is dropped.
pub async fn run(sources: StatsSources, (node, board): (String, String), interval: Duration) {
    let (mqtt, store) = (&sources.mqtt, &sources.store);
    let started = Instant::now();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let outbox = match store.call(outbox::counts).await {
            Ok(counts) => Some(counts),
            Err(e) => {
                tracing::warn!(error = %e, "outbox counters unavailable");
                None
            }
        };
        let session = mqtt.stats();
        let input = StatsInput {
            node: node.clone(),
            board: board.clone(),
            now: UnixMs::now(),
            uptime_s: started.elapsed().as_secs(),
            mqtt: session_counters(session),
            outbox,
            events: (session.events_published.load(Ordering::Relaxed), session.events_acked.load(Ordering::Relaxed)),
            sections: sources.sections(),
        };
        let topic = mqtt.topics().stats();
        mqtt.publish(topic, stats_payload(&input).to_string(), QoS::AtMostOnce, false);
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
    fn reads_the_resident_set_size() {
        assert_eq!(rss_kib("Name:\theldar-edge\nVmHWM:\t  9000 kB\nVmRSS:\t    7312 kB\n"), Some(7312));
        assert_eq!(rss_kib("Name:\tx\n"), None);
    }
}
