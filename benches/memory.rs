//! Memory of the service over a long run: 8 RTSP cameras (640×360, 15 fps, the
//! native recorder, 10 s segments) recorded and sampled at 1 fps each for a
//! perception worker kept online the whole time. The service's VmRSS is read
//! every 30 s beside the segments indexed and the frames received, to show
//! whether it stays flat and within the `generic` board profile's `rss_budget`.
//! `cargo bench --bench memory [-- SECONDS]` (default 600 s).

#[path = "../tests/support/mod.rs"]
mod support;

use heldar_edge::config::BoardProfile;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Node id of the service under test, the `P` of its topics.
const NODE: &str = "bench";
/// Cameras recorded and sampled.
const CAMERAS: usize = 8;
/// Time between two readings of the service's RSS.
const INTERVAL: Duration = Duration::from_secs(30);
/// Where the steady state is taken to begin: growth is measured from here to the end.
const STEADY_S: f64 = 120.0;
/// One MiB in KiB, the unit of /proc/PID/status.
const MIB: f64 = 1024.0;

/// What the worker's subscription has seen so far, updated as messages arrive.
#[derive(Default)]
struct Received {
    /// Frames received per camera, `c0..c7`.
    frames: [AtomicU64; CAMERAS],
    /// The latest `P/stats` report.
    stats: Mutex<Option<serde_json::Value>>,
}

impl Received {
    /// Frames received from every camera together.
    fn total_frames(&self) -> u64 {
        self.frames.iter().map(|f| f.load(Ordering::Relaxed)).sum()
    }
}

/// One reading of the service.
struct Sample {
    /// Seconds since the service was started.
    elapsed: f64,
    /// The service's VmRSS, MiB.
    rss_mib: f64,
    /// Segments indexed so far, all cameras.
    segments: i64,
    /// Frames received so far, all cameras.
    frames: u64,
}

/// Runs the bench: starts everything, reads the service every 30 s, reports and checks.
fn main() {
    let seconds: u64 = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(600);
    let budget_kib = generic_rss_budget_kib();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("rt");
    let _entered = runtime.enter();
    let dir = support::TempDir::new("bench-memory");
    let broker = support::Broker::start(&dir.join("broker"));
    let camera = support::RtspCamera::start_options("640x360", false, &["--fps", "15"]);
    let mut node = support::Node::configure(&dir.0, NODE, &broker.url(), &cameras_toml(&camera.url()));
    let filters = [format!("heldar/{NODE}/frames/+"), format!("heldar/{NODE}/stats")];
    let filters: Vec<&str> = filters.iter().map(String::as_str).collect();
    let watcher = runtime.block_on(support::Watcher::connect(broker.port, "bench-worker", true, &filters));
    let client = watcher.client.clone();
    let received = Arc::new(Received::default());
    runtime.spawn(drain(watcher, Arc::clone(&received)));
    announce(&runtime, &client, "online");
    println!("{CAMERAS} cameras 640x360 15 fps, native recorder, 10 s segments, sampled at 1 fps; worker w1 online");
    println!("board generic: rss_budget {:.1} MiB; {seconds} s from the start of the service", budget_kib / MIB);

    let started = Instant::now();
    node.start(&[]);
    support::wait_for(Duration::from_secs(60), "the first segment of every camera", || {
        (0..CAMERAS).all(|i| !node.segments(&format!("c{i}")).is_empty())
    });
    let samples = sample_every_interval(&node, started, Duration::from_secs(seconds), &received);
    check_node_budget(&received, budget_kib);
    announce(&runtime, &client, "offline");
    let per_camera = check_cameras(&node, &received);
    summarise(&samples, budget_kib);
    println!("per camera (segments, frames): {per_camera}");
    println!("node log: {}", log_counts(&node.log()));
    let status = node.terminate(Duration::from_secs(20));
    println!("service exit: {status}");
}

/// The `generic` board profile's `rss_budget` in KiB, as compiled into the service.
fn generic_rss_budget_kib() -> f64 {
    let text = heldar_edge::config::board::builtin_board("generic").expect("the generic board profile");
    let profile: BoardProfile = toml::from_str(text).expect("board/generic.toml parses");
    profile.limits.rss_budget.0 as f64 / 1024.0
}

/// The `[[camera]]` tables: `c0..c7` on `url`, recorded natively in 10 s segments, sampled at 1 fps.
fn cameras_toml(url: &str) -> String {
    (0..CAMERAS)
        .map(|i| format!("\n[[camera]]\nid = \"c{i}\"\nsource = \"{url}\"\nsegment_s = 10\nsample_fps = 1\n"))
        .collect()
}

/// Publishes worker `w1`'s retained status (`online` or `offline`), as tests/sampling.rs does.
fn announce(runtime: &tokio::runtime::Runtime, client: &rumqttc::AsyncClient, state: &str) {
    let topic = format!("heldar/{NODE}/workers/w1/status");
    let status = serde_json::json!({"v": 1, "state": state, "max_fps": 10}).to_string();
    runtime.block_on(client.publish(topic, rumqttc::QoS::AtLeastOnce, true, status)).expect("worker status");
}

/// Counts the frames and keeps the latest stats arriving on `watcher`, until the runtime ends.
async fn drain(mut watcher: support::Watcher, received: Arc<Received>) {
    let frames = format!("heldar/{NODE}/frames/c");
    let stats = format!("heldar/{NODE}/stats");
    while let Some(message) = watcher.next_any().await {
        let camera = message.topic.strip_prefix(&frames).and_then(|i| i.parse::<usize>().ok());
        if let Some(count) = camera.and_then(|i| received.frames.get(i)) {
            count.fetch_add(1, Ordering::Relaxed);
        } else if message.topic == stats {
            *received.stats.lock().expect("stats") = Some(message.json());
        }
    }
}

/// Reads the service now, prints the reading as a table row and returns it.
fn sample(node: &support::Node, started: Instant, received: &Received) -> Sample {
    let rss_kib = support::memory_kib(node.pid(), "VmRSS:");
    assert!(rss_kib > 0.0, "the service is gone (no VmRSS); log:\n{}", node.log());
    let sample = Sample {
        elapsed: started.elapsed().as_secs_f64(),
        rss_mib: rss_kib / MIB,
        segments: node.count("SELECT count(*) FROM segments"),
        frames: received.total_frames(),
    };
    println!("{:>9.0} | {:>7.1} | {:>8} | {:>7}", sample.elapsed, sample.rss_mib, sample.segments, sample.frames);
    sample
}

/// Reads the service now and then on every 30 s tick after `started`, the last at `run` after it.
fn sample_every_interval(node: &support::Node, started: Instant, run: Duration, received: &Received) -> Vec<Sample> {
    println!("{:>9} | {:>7} | {:>8} | {:>7}", "elapsed s", "RSS MiB", "segments", "frames");
    let first = sample(node, started, received);
    let mut tick = (first.elapsed / INTERVAL.as_secs_f64()) as u32 + 1;
    let mut samples = vec![first];
    loop {
        let due = (INTERVAL * tick).min(run);
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            std::thread::sleep(wait);
        }
        samples.push(sample(node, started, received));
        if due >= run {
            return samples;
        }
        tick += 1;
    }
}

/// Checks the service reports the generic board and its budget in `P/stats`, and prints its own RSS figure.
fn check_node_budget(received: &Received, budget_kib: f64) {
    let stats = received.stats.lock().expect("stats").clone().expect("a P/stats report from the service");
    assert_eq!(stats["board"], "generic", "the service runs on the generic board profile");
    let reported = stats["process"]["rss_budget_kib"].as_f64().expect("process.rss_budget_kib");
    assert_eq!(reported, budget_kib, "P/stats reports the generic profile's rss_budget");
    let rss = stats["process"]["rss_kib"].as_f64().unwrap_or(0.0);
    println!("last P/stats: rss {:.1} MiB, budget {:.1} MiB", rss / MIB, reported / MIB);
}

/// Panics unless every camera has segments and frames; returns the per-camera counts as text.
fn check_cameras(node: &support::Node, received: &Received) -> String {
    assert!(received.total_frames() > 0, "no frame received: sampling did not run; log:\n{}", node.log());
    let mut counts = Vec::new();
    for (i, frames) in received.frames.iter().enumerate() {
        let camera = format!("c{i}");
        let segments = node.segments(&camera).len();
        let frames = frames.load(Ordering::Relaxed);
        assert!(segments > 0, "{camera} has no segment; log:\n{}", node.log());
        assert!(frames > 0, "no frame of {camera} received; log:\n{}", node.log());
        counts.push(format!("{camera} {segments}/{frames}"));
    }
    counts.join(", ")
}

/// Prints the first, largest and last RSS, the growth after the 2-minute mark, and the verdict.
fn summarise(samples: &[Sample], budget_kib: f64) {
    let first = samples.first().expect("a sample");
    let last = samples.last().expect("a sample");
    let max = samples.iter().map(|s| s.rss_mib).fold(0.0, f64::max);
    let budget = budget_kib / MIB;
    println!("RSS: first {:.1} MiB, max {max:.1} MiB, last {:.1} MiB", first.rss_mib, last.rss_mib);
    match samples.iter().find(|s| s.elapsed >= STEADY_S) {
        Some(steady) if last.elapsed > steady.elapsed => {
            let growth = last.rss_mib - steady.rss_mib;
            let per_hour = growth / (last.elapsed - steady.elapsed) * 3600.0;
            println!(
                "growth from {:.0} s to {:.0} s: {growth:+.1} MiB ({per_hour:+.1} MiB/h)",
                steady.elapsed, last.elapsed
            );
        }
        _ => println!("growth from the 2-minute mark: n/a (the run ends by {STEADY_S:.0} s)"),
    }
    println!("budget (generic rss_budget): {budget:.1} MiB");
    println!("within budget: {} (max {max:.1} of {budget:.1} MiB)", if max <= budget { "yes" } else { "no" });
}

/// How many lines of the service's log are warnings and errors, with the first of each.
fn log_counts(log: &str) -> String {
    let mut out = Vec::new();
    for level in [" WARN ", " ERROR "] {
        let lines: Vec<&str> = log.lines().filter(|l| l.contains(level)).collect();
        let first = lines.first().map(|l| format!(" (first: {l})")).unwrap_or_default();
        out.push(format!("{} {}{first}", lines.len(), level.trim()));
    }
    out.join(", ")
}
