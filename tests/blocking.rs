//! The blocking benchmark of issue 15: a retention sweep deleting 10,000 files
//! while 4 cameras record and are sampled for a worker and test events stream
//! out of the outbox. Two runs of the real service on real mosquitto and ffmpeg,
//! the same but for the footage the sweep finds: A sweeps nothing, B 10,000
//! aged segments (files and rows, added while the node runs). Each run measures
//! over the same fixed window, a `sweep` command sent a few seconds into it:
//! the longest gap between systemd watchdog pings (`WATCHDOG=1` on a notify
//! socket the test owns), the longest gap between frames of each camera (how
//! long the sampler pipe was not drained), the events per second received, and
//! the holes in each camera's recording. Prints `blocking:` lines with B/A.
//!
//! `cargo test --release --test blocking -- --nocapture`

mod support;

use serde_json::{Value, json};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{Broker, Node, TempDir, Watcher};

const SECOND: Duration = Duration::from_secs(1);
const NODE: &str = "blk";
const CAMERAS: [&str; 4] = ["cam1", "cam2", "cam3", "cam4"];
/// Aged segments run B's sweep deletes, spread over the cameras and 5 days each.
const OLD_FILES: usize = 10_000;
const OLD_DAYS: usize = 5;
/// Size of each aged file (and its row's `bytes`).
const OLD_BYTES: usize = 1024;
/// 2020-01-01T00:00:00Z: years older than `retain_days = 1`.
const OLD_BASE_MS: i64 = 1_577_836_800_000;
/// systemd's `WatchdogSec=2`: the service pings every second, and systemd would kill it
/// after 2 s without one.
const WATCHDOG_USEC: u64 = 2_000_000;
/// `test` events emitted at start (one per index commit, about 300 to 3,000 a second here):
/// enough to keep them going out through the window.
const TEST_EVENTS: u64 = 200_000;
/// The measurement window (longer when the sweep is still going), and when in it the
/// `sweep` command goes.
const WINDOW: Duration = Duration::from_secs(24);
const SWEEP_AT: Duration = Duration::from_secs(4);
/// The window goes on at least this long after the sweep's reply.
const AFTER_SWEEP: Duration = Duration::from_secs(2);
/// A hole: more than this between a segment's end and the next one's start.
const HOLE_MS: i64 = 2_000;

/// What one run measured inside its window.
#[derive(Debug)]
struct Figures {
    window: Duration,
    watchdog_gap: Duration,
    pings: usize,
    /// Most events waiting in the outbox, as the pings' `STATUS=` said.
    waiting: u64,
    /// Per camera: longest gap between frames, frames received, frames skipped (`seq` jumps).
    frame_gaps: Vec<Duration>,
    frames: Vec<usize>,
    skipped: Vec<u64>,
    events: usize,
    event_gap: Duration,
    /// Events received between the sweep command and its reply.
    events_sweeping: usize,
    /// Per camera: rows recorded by this run, and holes between them.
    rows: Vec<usize>,
    holes: Vec<usize>,
    sweep: Value,
    sweep_took: Duration,
}

impl Figures {
    fn events_per_s(&self) -> f64 {
        self.events as f64 / self.window.as_secs_f64()
    }

    fn longest_frame_gap(&self) -> Duration {
        self.frame_gaps.iter().copied().max().unwrap_or_default()
    }

    fn print(&self, run: &str) {
        eprintln!(
            "blocking: {run}: {:.1} s window: watchdog longest gap {:.3} s ({} pings); frame longest gap {} s; frames {:?}, \
             skipped {:?}; events {:.0}/s (longest gap {:.3} s, {:.0}/s while sweeping, \
             at most {} waiting); rows {:?}, \
             holes {:?}; sweep {} in {:.2} s",
            self.window.as_secs_f64(),
            self.watchdog_gap.as_secs_f64(),
            self.pings,
            self.frame_gaps.iter().map(|g| format!("{:.3}", g.as_secs_f64())).collect::<Vec<_>>().join("/"),
            self.frames,
            self.skipped,
            self.events_per_s(),
            self.event_gap.as_secs_f64(),
            self.events_sweeping as f64 / self.sweep_took.as_secs_f64().max(1e-3),
            self.waiting,
            self.rows,
            self.holes,
            self.sweep["result"],
            self.sweep_took.as_secs_f64(),
        );
    }
}

/// Everything received, with when it arrived.
#[derive(Default)]
struct Arrivals {
    /// (arrival, events waiting in the outbox)
    pings: Vec<(Instant, u64)>,
    /// (arrival, camera index, seq)
    frames: Vec<(Instant, usize, u64)>,
    events: Vec<Instant>,
    replies: Vec<(Instant, Value)>,
}

type Shared = Arc<Mutex<Arrivals>>;

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, Arrivals> {
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

/// Receives the notify datagrams on a thread of its own; stops when `stop` is set.
fn receive_pings(socket: UnixDatagram, shared: Shared, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        socket.set_read_timeout(Some(Duration::from_millis(100))).expect("timeout");
        let mut buf = [0u8; 4096];
        while !stop.load(Ordering::Relaxed) {
            if let Ok(n) = socket.recv(&mut buf) {
                let at = Instant::now();
                let text = String::from_utf8_lossy(&buf[..n]);
                if text.contains("WATCHDOG=1") {
                    // `STATUS=4 cameras, mqtt connected, 12 events waiting`
                    let waiting = text.split(", ").find_map(|p| p.strip_suffix(" events waiting")?.parse().ok());
                    lock(&shared).pings.push((at, waiting.unwrap_or(0)));
                }
            }
        }
    })
}

/// Drains `watcher` into `shared`, stamping each message as it comes.
fn receive_messages(mut watcher: Watcher, shared: Shared) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(message) = watcher.next_any().await {
            let at = Instant::now();
            let topic = message.topic.as_str();
            if let Some(camera) = topic.strip_prefix(&format!("heldar/{NODE}/frames/")) {
                let newline = message.payload.iter().position(|b| *b == b'\n').unwrap_or(message.payload.len());
                let header: Value = serde_json::from_slice(&message.payload[..newline]).unwrap_or_default();
                let (Some(index), Some(seq)) = (CAMERAS.iter().position(|c| *c == camera), header["seq"].as_u64())
                else {
                    panic!("a frame without camera or seq on {topic}: {header}");
                };
                lock(&shared).frames.push((at, index, seq));
            } else if topic.starts_with(&format!("heldar/{NODE}/events/")) {
                lock(&shared).events.push(at);
            } else if topic.starts_with(&format!("heldar/{NODE}/replies/")) {
                lock(&shared).replies.push((at, message.json()));
            }
        }
    })
}

/// The longest gap between consecutive `times` in `[from, to]`, the window's edges included.
fn longest_gap(times: impl Iterator<Item = Instant>, from: Instant, to: Instant) -> Duration {
    let mut inside: Vec<Instant> = times.filter(|t| *t >= from && *t <= to).collect();
    inside.sort();
    let mut points = vec![from];
    points.extend(inside);
    points.push(to);
    points.windows(2).map(|w| w[1] - w[0]).max().unwrap_or_default()
}

/// Waits for `condition` off the runtime's worker thread (the receiving tasks keep running).
fn wait_for(timeout: Duration, what: &str, condition: impl FnMut() -> bool) {
    tokio::task::block_in_place(|| support::wait_for(timeout, what, condition));
}

/// `HELDAR_BLOCKING_FREEZE_S`: run B's node is frozen (SIGSTOP) that long right after the
/// sweep command, to see the benchmark fail on a runtime that blocks for seconds.
fn freeze() -> Option<Duration> {
    let seconds: f64 = std::env::var("HELDAR_BLOCKING_FREEZE_S").ok()?.parse().ok()?;
    Some(Duration::from_secs_f64(seconds))
}

fn config() -> String {
    let mut toml =
        "\n[storage]\nsweep_interval_s = 3600\n\n[commands]\nauth = \"none\"\nallow = [\"sweep\"]\n".to_string();
    for camera in CAMERAS {
        toml.push_str(&format!(
            "\n[[camera]]\nid = \"{camera}\"\nsource = \"lavfi:testsrc2=size=320x240:rate=10\"\nsegment_s = 2\n\
             sample_fps = 2\nretain_days = 1\n"
        ));
    }
    toml
}

/// Writes `count` small aged segments spread over the cameras and `OLD_DAYS` days, each a
/// file and its row (`bytes` the file's size, so reconciliation would leave them alone).
/// Returns their paths under the recordings directory.
fn add_old_footage(node: &Node, count: usize) -> Vec<PathBuf> {
    let recordings = node.dir.join("data/recordings");
    let mut conn = heldar_edge::store::open_connection(&node.index()).expect("index");
    let tx = conn.transaction().expect("transaction");
    let mut files = Vec::with_capacity(count);
    let per_day = count.div_ceil(CAMERAS.len() * OLD_DAYS);
    for n in 0..count {
        let camera = CAMERAS[n % CAMERAS.len()];
        let (day, i) = ((n / CAMERAS.len()) / per_day, (n / CAMERAS.len()) % per_day);
        let start = heldar_edge::wallclock::UnixMs(OLD_BASE_MS + day as i64 * 86_400_000 + i as i64 * 2_000);
        let (_, _, _, hour, minute, second, _) = start.civil();
        let relative = format!(
            "{}/{hour:02}{minute:02}{second:02}-old.mp4",
            heldar_edge::recording::layout::day_dir(camera, start)
        );
        let file = recordings.join(&relative);
        if i == 0 {
            std::fs::create_dir_all(file.parent().expect("day dir")).expect("day dir");
        }
        std::fs::write(&file, [0u8; OLD_BYTES]).expect("old file");
        let segment = heldar_edge::recording::index::NewSegment {
            camera: camera.into(),
            path: relative,
            start,
            end: heldar_edge::wallclock::UnixMs(start.0 + 2_000),
            bytes: OLD_BYTES as u64,
            codec: None,
            width: None,
            height: None,
        };
        heldar_edge::recording::index::insert_segment(&tx, &segment).expect("insert");
        files.push(file);
    }
    tx.commit().expect("commit");
    // Footage this old was written back long ago: the window must not pay for these writes.
    let synced = std::process::Command::new("sync").arg("-f").arg(&recordings).status().expect("sync");
    assert!(synced.success(), "sync -f {}", recordings.display());
    files
}

/// One run: the node up with its cameras sampled and events flowing, `old` aged segments
/// added, then the window with a `sweep` command in it.
async fn run(name: &str, old: usize) -> Figures {
    let dir = TempDir::new(&format!("blocking-{name}"));
    let broker = Broker::start(&dir.join("broker"));
    let shared = Shared::default();
    let stop = Arc::new(AtomicBool::new(false));
    let socket_path = dir.join("notify.sock");
    let pinger = receive_pings(UnixDatagram::bind(&socket_path).expect("bind"), shared.clone(), stop.clone());
    let mut receivers = Vec::new();
    let mut client = None;
    let filters = ["frames/+", "events/#", "replies/+"].map(|f| format!("heldar/{NODE}/{f}"));
    for (i, filter) in filters.iter().enumerate() {
        let watcher = Watcher::connect(broker.port, &format!("blk-{name}-{i}"), true, &[filter.as_str()]).await;
        client = Some(watcher.client.clone());
        receivers.push(receive_messages(watcher, shared.clone()));
    }
    let client = client.expect("a client");
    // A worker online (retained, so the node finds it when it subscribes): frames flow.
    let status = json!({"v": 1, "state": "online", "max_fps": 20}).to_string();
    let topic = format!("heldar/{NODE}/workers/w1/status");
    client.publish(topic, rumqttc::QoS::AtLeastOnce, true, status).await.expect("worker status");

    let mut node = Node::configure(&dir.0, NODE, &broker.url(), &config());
    let started_ms = heldar_edge::wallclock::UnixMs::now().0;
    let usec = WATCHDOG_USEC.to_string();
    let env = [("NOTIFY_SOCKET", socket_path.to_str().expect("path")), ("WATCHDOG_USEC", usec.as_str())];
    node.start_with_env(&["--emit-test-events", &TEST_EVENTS.to_string()], &env);
    wait_for(60 * SECOND, "every camera recording and sampled, events flowing", || {
        let arrivals = lock(&shared);
        CAMERAS.iter().all(|c| !node.segments(c).is_empty())
            && (0..CAMERAS.len()).all(|i| arrivals.frames.iter().any(|f| f.1 == i))
            && arrivals.events.len() > 100
            && !arrivals.pings.is_empty()
    });

    let old_files = if old > 0 {
        let adding = Instant::now();
        let files = tokio::task::block_in_place(|| add_old_footage(&node, old));
        let added = Instant::now();
        eprintln!("blocking: {name}: {old} aged files and rows added in {:.2} s", (added - adding).as_secs_f64());
        wait_for(10 * SECOND, "two pings after the footage was added", || {
            lock(&shared).pings.iter().filter(|p| p.0 > added).count() >= 2
        });
        files
    } else {
        Vec::new()
    };
    let aged = |node: &Node| node.count(&format!("SELECT count(*) FROM segments WHERE start_ms < {started_ms}"));
    assert_eq!(aged(&node), old as i64, "the aged rows are in the index");

    let from = Instant::now();
    tokio::time::sleep(SWEEP_AT).await;
    let id = format!("sweep-{name}");
    let request = json!({"v": 2, "id": id, "args": {}}).to_string();
    let sent = Instant::now();
    let cmd = format!("heldar/{NODE}/cmd/sweep");
    client.publish(cmd, rumqttc::QoS::AtLeastOnce, false, request).await.expect("sweep");
    if let Some(freeze) = freeze().filter(|_| old > 0) {
        support::signal_pid(node.pid(), "STOP");
        tokio::time::sleep(freeze).await;
        support::signal_pid(node.pid(), "CONT");
    }
    tokio::time::sleep_until((from + WINDOW).into()).await;
    // A sweep still going at the window's end extends the window to just after its reply.
    wait_for(120 * SECOND, "the sweep's reply", || !lock(&shared).replies.is_empty());
    let replied = lock(&shared).replies[0].0;
    tokio::time::sleep_until((replied + AFTER_SWEEP).into()).await;
    let to = Instant::now();
    let status = node.terminate(30 * SECOND);
    assert!(status.success(), "a clean stop: {status:?}");
    stop.store(true, Ordering::Relaxed);
    pinger.join().expect("ping thread");
    for receiver in receivers {
        receiver.abort();
    }

    let arrivals = lock(&shared);
    let (replied, sweep) = arrivals.replies[0].clone();
    assert_eq!(sweep["ok"], true, "{sweep}");
    assert_eq!(sweep["result"]["aged"], old, "the sweep aged out exactly the old footage: {sweep}");
    let camera_frames = |i: usize| arrivals.frames.iter().filter(move |f| f.1 == i && f.0 >= from && f.0 <= to);
    let skipped = |i: usize| {
        let seqs: Vec<u64> = camera_frames(i).map(|f| f.2).collect();
        seqs.windows(2).map(|w| w[1].saturating_sub(w[0] + 1)).sum()
    };
    let fresh: Vec<Vec<support::SegmentRow>> = CAMERAS
        .iter()
        .map(|c| node.segments(c).into_iter().filter(|r| r.start_ms >= started_ms - 60_000).collect())
        .collect();
    let holes =
        |rows: &[support::SegmentRow]| rows.windows(2).filter(|w| w[1].start_ms - w[0].end_ms > HOLE_MS).count();
    let figures = Figures {
        window: to - from,
        watchdog_gap: longest_gap(arrivals.pings.iter().map(|p| p.0), from, to),
        pings: arrivals.pings.iter().filter(|p| p.0 >= from && p.0 <= to).count(),
        waiting: arrivals.pings.iter().filter(|p| p.0 >= from && p.0 <= to).map(|p| p.1).max().unwrap_or(0),
        frame_gaps: (0..CAMERAS.len()).map(|i| longest_gap(camera_frames(i).map(|f| f.0), from, to)).collect(),
        frames: (0..CAMERAS.len()).map(|i| camera_frames(i).count()).collect(),
        skipped: (0..CAMERAS.len()).map(skipped).collect(),
        events: arrivals.events.iter().filter(|t| **t >= from && **t <= to).count(),
        event_gap: longest_gap(arrivals.events.iter().copied(), from, to),
        events_sweeping: arrivals.events.iter().filter(|t| **t >= sent && **t <= replied).count(),
        rows: fresh.iter().map(Vec::len).collect(),
        holes: fresh.iter().map(|rows| holes(rows)).collect(),
        sweep,
        sweep_took: replied - sent,
    };
    figures.print(name);
    for (camera, rows) in CAMERAS.iter().zip(&fresh) {
        let gaps: Vec<(i64, i64)> = rows
            .windows(2)
            .filter(|w| w[1].start_ms - w[0].end_ms > HOLE_MS)
            .map(|w| (w[0].end_ms, w[1].start_ms))
            .collect();
        assert!(gaps.is_empty(), "run {name}: holes in {camera}'s recording (end, next start): {gaps:?}");
    }
    // Everything aged is gone: rows, garbage rows, files and their day directories.
    assert_eq!(aged(&node), 0, "run {name}: aged rows left in the index");
    assert_eq!(node.count("SELECT count(*) FROM garbage"), 0, "run {name}: garbage rows left");
    let left: Vec<&PathBuf> = old_files.iter().filter(|f| f.exists()).collect();
    assert!(left.is_empty(), "run {name}: {} aged files left, e.g. {:?}", left.len(), left.first());
    let old_days = old_files.iter().filter_map(|f| f.parent()).filter(|d| d.exists()).count();
    assert_eq!(old_days, 0, "run {name}: the emptied old day directories are removed");
    figures
}

fn ratio(b: Duration, a: Duration) -> f64 {
    b.as_secs_f64() / a.as_secs_f64().max(1e-3)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_of_ten_thousand_files_blocks_neither_the_watchdog_nor_the_sampler() {
    let started = Instant::now();
    let a = run("a", 0).await;
    let b = run("b", OLD_FILES).await;
    eprintln!(
        "blocking: B/A: watchdog longest gap {:.2}, frame longest gap {:.2}, events/s {:.2}; wall time {:.0} s",
        ratio(b.watchdog_gap, a.watchdog_gap),
        ratio(b.longest_frame_gap(), a.longest_frame_gap()),
        b.events_per_s() / a.events_per_s().max(1e-3),
        started.elapsed().as_secs_f64(),
    );
    let watchdog = Duration::from_micros(WATCHDOG_USEC);
    for (run, f) in [("A", &a), ("B", &b)] {
        assert!(
            f.watchdog_gap < watchdog,
            "run {run}: {:?} without a watchdog ping: systemd would kill",
            f.watchdog_gap
        );
        assert!(
            f.longest_frame_gap() < 3 * SECOND,
            "run {run}: a camera's frames stopped for {:?} (sampled at 2 fps)",
            f.longest_frame_gap()
        );
        assert!(
            f.event_gap < 3 * SECOND,
            "run {run}: no event went out for {:?} ({} in the window)",
            f.event_gap,
            f.events
        );
    }
}
