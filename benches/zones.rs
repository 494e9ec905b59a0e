//! Zone engine throughput and the detection → event path.
//!
//! 1. In process: 8 cameras × 16 zones (8-point polygons) × 64 tracks, random walks;
//!    zone evaluations (a track tested against a zone) per second of one core, against
//!    bare point-in-polygon tests of the same points as the baseline.
//! 2. Through the real service and mosquitto: 14 scripted workers answer every frame,
//!    200 detection messages/s in all, each flipping its track in or out of a zone;
//!    latency from publishing a detection message to receiving the zone event (p50/p99)
//!    and the service's RSS over the run.
//!
//! `cargo bench --bench zones [-- SECONDS]` (default 600 s for part 2).

#[path = "../tests/support/mod.rs"]
mod support;

use embassy_time::Instant;
use heldar_edge::config::schema::{Point, ZoneConfig};
use heldar_edge::zones::engine::{Observation, ZoneEngine};
use heldar_edge::zones::geometry;
use std::collections::HashMap;
use std::time::Duration;

/// Scripted workers answering every frame (about 15 frames/s are offered).
const WORKERS: usize = 14;

fn main() {
    let seconds: u64 = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(600);
    in_process();
    end_to_end(seconds);
}

struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn zones() -> Vec<ZoneConfig> {
    (0..16)
        .map(|z| {
            let (cx, cy) = (0.15 + 0.23 * (z % 4) as f64, 0.15 + 0.23 * (z / 4) as f64);
            let polygon = (0..8)
                .map(|k| {
                    let a = std::f64::consts::TAU * k as f64 / 8.0;
                    Point([cx + 0.1 * a.cos(), cy + 0.1 * a.sin()])
                })
                .collect();
            ZoneConfig {
                id: format!("z{z}"),
                name: None,
                polygon: Some(polygon),
                line: None,
                labels: Vec::new(),
                min_confidence: 0.3,
                inertia: 2,
                dwell_s: 5,
                count_threshold: 3,
                lock: false,
                direction: None,
            }
        })
        .collect()
}

fn in_process() {
    let zones = zones();
    let mut engines: Vec<ZoneEngine> = (0..8).map(|_| ZoneEngine::new(&zones, 64)).collect();
    let ids: Vec<String> = (0..64).map(|i| format!("t{i}")).collect();
    let mut rng = Lcg(7);
    let mut positions: Vec<[f64; 2]> = (0..64).map(|_| [rng.next() * 0.9, rng.next() * 0.9]).collect();
    let frames = 2000u64;
    let mut events = 0u64;
    let started = std::time::Instant::now();
    for frame in 0..frames {
        for p in &mut positions {
            p[0] = (p[0] + (rng.next() - 0.5) * 0.04).clamp(0.0, 0.9);
            p[1] = (p[1] + (rng.next() - 0.5) * 0.04).clamp(0.0, 0.85);
        }
        let observations: Vec<Observation<'_>> = positions
            .iter()
            .zip(&ids)
            .map(|(p, id)| Observation {
                track_id: Some(id),
                label: "person",
                confidence: 0.9,
                bbox: [p[0], p[1], 0.1, 0.15],
            })
            .collect();
        for engine in &mut engines {
            engine.observe(Instant::from_millis(frame * 200), &observations, &mut |_| events += 1);
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let evaluations = frames as f64 * 8.0 * 16.0 * 64.0;
    let polygons: Vec<Vec<[f64; 2]>> =
        zones.iter().map(|z| z.polygon.as_ref().map(|p| p.iter().map(|q| q.0).collect()).unwrap_or_default()).collect();
    let started = std::time::Instant::now();
    let mut inside = 0u64;
    for _ in 0..frames {
        for _ in 0..8 {
            for p in &positions {
                let point = geometry::anchor([p[0], p[1], 0.1, 0.15]);
                for polygon in &polygons {
                    inside += u64::from(geometry::contains(polygon, std::hint::black_box(point)));
                }
            }
        }
    }
    let bare = started.elapsed().as_secs_f64();
    std::hint::black_box(inside);
    println!("8 cameras x 16 zones x 64 tracks, {frames} frames, {events} events");
    println!("  zone engine: {:.1} M zone evaluations/s (one core)", evaluations / elapsed / 1e6);
    println!(
        "  bare point-in-polygon (baseline): {:.1} M/s; engine/bare time ratio {:.2}",
        evaluations / bare / 1e6,
        elapsed / bare
    );
}

fn end_to_end(seconds: u64) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("rt");
    runtime.block_on(async {
        let dir = support::TempDir::new("bench-zones");
        let broker = support::Broker::start(&dir.join("broker"));
        let toml = "\n[[camera]]\nid = \"lab\"\nsource = \"lavfi:testsrc2=size=320x240:rate=20\"\nsegment_s = 10\n\
                    sample_fps = 20\nsample_width = 160\n\n[[camera.zone]]\nid = \"yard\"\n\
                    polygon = [[0.2, 0.2], [0.6, 0.2], [0.6, 0.6], [0.2, 0.6]]\ninertia = 1\n";
        let mut node = support::Node::configure(&dir.0, "zb", &broker.url(), toml);
        let mut watcher =
            support::Watcher::connect(broker.port, "bench-zones", true, &["heldar/zb/frames/+", "heldar/zb/events/#"]).await;
        node.start(&[]);
        for w in 0..WORKERS {
            let status = r#"{"v":1,"state":"online"}"#;
            watcher.client.publish(format!("heldar/zb/workers/w{w}/status"), rumqttc::QoS::AtLeastOnce, true, status).await.expect("status");
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
        let mut sent: HashMap<String, std::time::Instant> = HashMap::new();
        let mut latencies = Vec::new();
        let mut inside = [false; WORKERS];
        let mut messages = 0u64;
        let mut rss = Vec::new();
        let mut next_rss = tokio::time::Instant::now();
        while let Ok(Some(m)) = tokio::time::timeout_at(deadline, watcher.next_any()).await {
            if tokio::time::Instant::now() >= next_rss {
                rss.push(support::memory_kib(node.pid(), "VmRSS:") / 1024.0);
                next_rss += Duration::from_secs(60);
            }
            if m.topic.contains("/events/lab/zone_") {
                let event: serde_json::Value = m.json();
                let key = format!("{}-{}", event["track_id"].as_str().unwrap_or(""), event["type"]);
                if let Some(at) = sent.remove(&key) {
                    latencies.push(at.elapsed().as_secs_f64() * 1000.0);
                }
                continue;
            }
            if !m.topic.ends_with("/frames/lab") {
                continue;
            }
            let newline = m.payload.iter().position(|b| *b == b'\n').expect("header");
            let header: serde_json::Value = serde_json::from_slice(&m.payload[..newline]).expect("json");
            for (w, inside) in inside.iter_mut().enumerate() {
                *inside = !*inside;
                let (x, y) = if *inside { (0.4, 0.4) } else { (0.8, 0.8) };
                let message = serde_json::json!({"v": 1, "worker": format!("w{w}"), "camera": "lab", "seq": header["seq"], "ts": header["ts"],
                    "detections": [{"label": "person", "confidence": 0.9, "bbox": [x - 0.05, y - 0.1, 0.1, 0.1], "track_id": format!("t{w}")}]});
                let kind = if *inside { "zone_enter" } else { "zone_exit" };
                sent.insert(format!("t{w}-\"{kind}\""), std::time::Instant::now());
                watcher.client.publish("heldar/zb/detections/lab", rumqttc::QoS::AtLeastOnce, false, message.to_string()).await.expect("publish");
                messages += 1;
            }
        }
        rss.push(support::memory_kib(node.pid(), "VmRSS:") / 1024.0);
        latencies.sort_by(f64::total_cmp);
        let pick = |q: f64| latencies.get(((latencies.len() as f64 - 1.0) * q) as usize).copied().unwrap_or(f64::NAN);
        println!(
            "end to end: {messages} detection messages in {seconds} s ({:.0}/s), {} events timed: p50 {:.1} ms, p99 {:.1} ms",
            messages as f64 / seconds as f64,
            latencies.len(),
            pick(0.5),
            pick(0.99)
        );
        println!("service RSS (MiB, every minute): {:?}", rss.iter().map(|r| (r * 10.0).round() / 10.0).collect::<Vec<_>>());
        node.terminate(Duration::from_secs(20));
    });
}
