//! The emulated arm64 board from the host, shared by the board tests
//! (tests/arm64_board.rs, tests/power_cuts.rs): board/qemu/boot in the
//! background, what the node publishes, a scripted worker, and the data disk
//! read back with debugfs (no mount, no root) and checked against the index.
//! Include it with `mod board_support;` beside `mod support;`.

#![allow(dead_code)]

use crate::support::{self, Message, Watcher};
use heldar_edge::wallclock::UnixMs;
use rumqttc::QoS;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub const SECOND: Duration = Duration::from_secs(1);
/// The node id of the board tests' configs.
pub const NODE: &str = "qarm";
/// Their camera.
pub const CAMERA: &str = "cam";

/// The service's resident memory budget on the qemu-arm64 board (its profile's `rss_budget`).
pub fn rss_budget_kib() -> u64 {
    let profile = heldar_edge::config::board::builtin_board("qemu-arm64").expect("qemu-arm64 profile");
    let profile: heldar_edge::config::BoardProfile = toml::from_str(profile).expect("profile");
    profile.limits.rss_budget.0 / 1024
}

/// One boot of the board: board/qemu/boot in the background.
pub struct Board {
    child: Option<Child>,
    pub pidfile: PathBuf,
    pub console: PathBuf,
    pub started: Instant,
}

impl Board {
    /// Builds (or finds cached) the guest and the cross-built release binary; returns the binary.
    pub fn prepare() -> PathBuf {
        let mut command = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/board/qemu/boot"));
        command.args(["--arch", "arm64", "--prepare"]);
        if let Some(bin) = std::env::var_os("HELDAR_ARM64_BIN") {
            command.arg("--bin").arg(bin);
        }
        let out = command.stdin(Stdio::null()).stderr(Stdio::inherit()).output().expect("board/qemu/boot --prepare");
        assert!(out.status.success(), "board/qemu/boot --prepare failed ({})", out.status);
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
    }

    /// Boots `bin` with `config` on `disk` (created when missing); files named after boot `n` in `dir`.
    pub fn boot(dir: &Path, n: u32, bin: &Path, config: &Path, disk: &Path) -> Self {
        Self::boot_with(dir, n, bin, config, disk, &[])
    }

    /// Like `boot`, with more board/qemu/boot options (`--disk-size 64M`, say).
    pub fn boot_with(dir: &Path, n: u32, bin: &Path, config: &Path, disk: &Path, extra: &[&str]) -> Self {
        let pidfile = dir.join(format!("qemu-{n}.pid"));
        let console = dir.join(format!("console-{n}.log"));
        let mut command = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/board/qemu/boot"));
        command.args(["--arch", "arm64", "--monitor", "5", "--log-level", "info"]);
        command.arg("--config").arg(config).arg("--disk").arg(disk).args(extra);
        command.arg("--log").arg(&console).arg("--pidfile").arg(&pidfile).arg("--bin").arg(bin);
        let started = Instant::now();
        let child = command.stdin(Stdio::null()).spawn().expect("board/qemu/boot");
        Self { child: Some(child), pidfile, console, started }
    }

    pub fn console(&self) -> String {
        std::fs::read_to_string(&self.console).unwrap_or_default()
    }

    /// The guest's `heldar-guest-stats` lines, as maps of their fields.
    pub fn guest_stats(&self) -> Vec<BTreeMap<String, f64>> {
        self.console()
            .lines()
            .filter_map(|l| l.split_once("heldar-guest-stats ").map(|(_, rest)| rest))
            .map(|rest| {
                rest.split_whitespace()
                    .filter_map(|kv| kv.split_once('='))
                    .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
                    .collect()
            })
            .collect()
    }

    pub async fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let child = self.child.as_mut().expect("board running");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                self.child = None;
                return status;
            }
            assert!(Instant::now() < deadline, "the board did not stop within {timeout:?}:\n{}", self.tail());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGTERM to the boot script: a clean shutdown.
    pub async fn stop(&mut self) -> ExitStatus {
        support::signal(self.child.as_ref().expect("board running"), "TERM");
        self.wait(120 * SECOND).await
    }

    /// SIGKILL to qemu: a power cut.
    pub async fn pull_the_plug(&mut self) -> ExitStatus {
        let pid = std::fs::read_to_string(&self.pidfile).expect("qemu pidfile");
        let status = Command::new("kill").args(["-KILL", pid.trim()]).status().expect("kill");
        assert!(status.success(), "kill -KILL qemu {pid}");
        self.wait(30 * SECOND).await
    }

    /// The console's last 80 lines.
    pub fn tail(&self) -> String {
        let console = self.console();
        let lines: Vec<&str> = console.lines().collect();
        lines[lines.len().saturating_sub(80)..].join("\n")
    }
}

impl Drop for Board {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // qemu first: the boot script then ends by itself and removes its files.
            if let Ok(pid) = std::fs::read_to_string(&self.pidfile) {
                let _ = Command::new("kill").args(["-KILL", pid.trim()]).status();
            }
            let deadline = Instant::now() + 5 * SECOND;
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- {} ---\n{}", self.console.display(), self.tail());
        }
    }
}

/// Service CPU and memory over the guest's monitor lines: (peak RSS KiB, service CPU %, ffmpeg CPU %, idle %).
pub fn guest_load(stats: &[BTreeMap<String, f64>]) -> Option<(f64, f64, f64, f64)> {
    let (first, last) = (stats.get(1)?, stats.last()?);
    let span = last.get("uptime")? - first.get("uptime")?;
    if span <= 0.0 {
        return None;
    }
    let pct = |k: &str| Some((last.get(k)? - first.get(k)?) / span);
    let peak = stats.iter().filter_map(|s| s.get("rss_kib").copied()).fold(0.0, f64::max);
    Some((peak, pct("cpu_ticks")?, pct("ffmpeg_ticks")?, pct("idle_ticks")? / 2.0))
}

/// Everything received, with when.
pub struct Seen {
    pub messages: Vec<(Instant, Message)>,
}

impl Seen {
    pub fn new() -> Self {
        Self { messages: Vec::new() }
    }

    /// Messages on `P/<suffix>`.
    pub fn on(&self, suffix: &str) -> impl Iterator<Item = &(Instant, Message)> {
        let topic = format!("heldar/{NODE}/{suffix}");
        self.messages.iter().filter(move |(_, m)| m.topic == topic)
    }

    /// Events (`P/events/...`), as JSON.
    pub fn events(&self) -> impl Iterator<Item = (Instant, Value)> + '_ {
        let prefix = format!("heldar/{NODE}/events/");
        self.messages.iter().filter(move |(_, m)| m.topic.starts_with(&prefix)).map(|(at, m)| (*at, m.json()))
    }

    pub fn zone_event(&self, kind: &str, track: &str) -> Option<(Instant, Value)> {
        self.events().find(|(_, e)| e["type"] == kind && e["track_id"] == track)
    }
}

impl Default for Seen {
    fn default() -> Self {
        Self::new()
    }
}

/// Receives into `seen` until `done` or `timeout`, answering frames with `worker`.
pub async fn pump(
    watcher: &mut Watcher,
    seen: &mut Seen,
    worker: &mut Worker,
    timeout: Duration,
    what: &str,
    mut done: impl FnMut(&Seen, &Worker) -> bool,
) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !done(seen, worker) {
        let Ok(message) = tokio::time::timeout_at(deadline, watcher.next_any()).await else {
            panic!("timed out after {timeout:?} waiting for {what}");
        };
        let message = message.expect("watcher open");
        if message.topic == format!("heldar/{NODE}/frames/{CAMERA}") {
            worker.answer(&watcher.client, &message).await;
        }
        seen.messages.push((Instant::now(), message));
    }
}

/// The scripted worker: answers each frame with the next step of a walk.
pub struct Worker {
    pub track: String,
    walk: Vec<(f64, f64)>,
    pub frames: Vec<(Instant, Value, Vec<u8>)>,
}

impl Worker {
    pub fn idle() -> Self {
        Self { track: String::new(), walk: Vec::new(), frames: Vec::new() }
    }

    /// Answers the next frames with `track` at these points (the bottom centre of its box), in order.
    pub fn walk(&mut self, track: &str, walk: &[(f64, f64)]) {
        self.track = track.to_string();
        self.walk = walk.iter().rev().copied().collect();
    }

    pub fn walking(&self) -> bool {
        !self.walk.is_empty()
    }

    pub async fn answer(&mut self, client: &rumqttc::AsyncClient, frame: &Message) {
        let newline = frame.payload.iter().position(|b| *b == b'\n').expect("a header line");
        let header: Value = serde_json::from_slice(&frame.payload[..newline]).expect("header JSON");
        self.frames.push((Instant::now(), header.clone(), frame.payload[newline + 1..].to_vec()));
        let Some((x, y)) = self.walk.pop() else { return };
        // (x, y) is the bottom centre of the person's box.
        let detections = json!({"v": 1, "worker": "walker", "camera": CAMERA, "seq": header["seq"], "ts": header["ts"],
            "detections": [{"label": "person", "confidence": 0.9, "bbox": [x - 0.05, y - 0.3, 0.1, 0.3], "track_id": self.track}]});
        client
            .publish(format!("heldar/{NODE}/detections/{CAMERA}"), QoS::AtLeastOnce, false, detections.to_string())
            .await
            .expect("publish detections");
    }
}

/// Announces the scripted worker (`walker`, label `person`) as online, retained.
pub async fn announce_worker(client: &rumqttc::AsyncClient) {
    client
        .publish(
            format!("heldar/{NODE}/workers/walker/status"),
            QoS::AtLeastOnce,
            true,
            json!({"v": 1, "state": "online", "labels": ["person"]}).to_string(),
        )
        .await
        .expect("worker status");
}

/// The latest `last_segment_end` the camera reported, in ms.
pub fn last_segment_end(seen: &Seen) -> Option<i64> {
    seen.on(&format!("cameras/{CAMERA}/state"))
        .filter_map(|(_, m)| m.json()["last_segment_end"].as_str().and_then(UnixMs::parse_rfc3339))
        .map(|t| t.0)
        .max()
}

pub fn now_ms() -> i64 {
    UnixMs::now().0
}

/// The disk image's files, copied out with debugfs (no mount, no root needed). The board
/// must be off, and shut down cleanly (debugfs does not replay the journal: see
/// `dump_disk_after_cut`).
pub fn dump_disk(disk: &Path, into: &Path) {
    let _ = std::fs::remove_dir_all(into);
    std::fs::create_dir_all(into).expect("dump dir");
    let debugfs = support::system_binary("debugfs", "e2fsprogs");
    let out =
        Command::new(debugfs).arg("-R").arg(format!("rdump / {}", into.display())).arg(disk).output().expect("debugfs");
    assert!(out.status.success(), "debugfs rdump: {}", String::from_utf8_lossy(&out.stderr));
}

/// The files of a disk image whose board lost its power: a copy of the image gets its
/// journal replayed (`e2fsck -E journal_only`, what the kernel does when it mounts it),
/// then is dumped like `dump_disk`. The image itself is left as the cut left it.
pub fn dump_disk_after_cut(disk: &Path, into: &Path) {
    let copy = into.with_extension("ext4");
    let out = Command::new("cp").arg("--sparse=always").arg(disk).arg(&copy).output().expect("cp");
    assert!(out.status.success(), "cp {}: {}", disk.display(), String::from_utf8_lossy(&out.stderr));
    let e2fsck = support::system_binary("e2fsck", "e2fsprogs");
    let out = Command::new(e2fsck).args(["-E", "journal_only", "-y"]).arg(&copy).output().expect("e2fsck");
    // 0: clean, 1: the journal was replayed.
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "e2fsck -E journal_only ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    dump_disk(&copy, into);
    let _ = std::fs::remove_file(&copy);
}

/// A row of the segment index.
#[derive(Clone, Debug)]
pub struct Row {
    pub path: String,
    pub start_ms: i64,
    pub end_ms: i64,
    pub bytes: i64,
}

/// The camera's index rows in a dumped data directory, oldest first.
pub fn index_rows(data: &Path) -> Vec<Row> {
    let index = rusqlite::Connection::open(data.join("index.db")).expect("index.db");
    index
        .prepare("SELECT path, start_ms, end_ms, bytes FROM segments WHERE camera = ?1 ORDER BY start_ms")
        .expect("prepare")
        .query_map([CAMERA], |r| Ok(Row { path: r.get(0)?, start_ms: r.get(1)?, end_ms: r.get(2)?, bytes: r.get(3)? }))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

/// Every `.mp4` under `recordings` (relative paths) with its size; `.quarantine/` included
/// or not.
pub fn segment_files(recordings: &Path, with_quarantine: bool) -> BTreeMap<String, u64> {
    let mut files = BTreeMap::new();
    let mut stack = vec![recordings.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                if with_quarantine || entry.file_name() != ".quarantine" {
                    stack.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "mp4") {
                let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
                files.insert(path.strip_prefix(recordings).expect("inside").to_string_lossy().into_owned(), size);
            }
        }
    }
    files
}

/// What is wrong with the footage of `row` (its file under `recordings`), `None` when
/// nothing: the file exists, holds at least the row's bytes (exactly, when `exact`), ffmpeg
/// decodes it without an error and it plays for as long as the row says.
pub fn row_problem(recordings: &Path, row: &Row, exact: bool) -> Option<String> {
    let file = recordings.join(&row.path);
    let Ok(meta) = std::fs::metadata(&file) else {
        return Some(format!(
            "{}: indexed ({} bytes, {} ms) but not on the disk",
            row.path,
            row.bytes,
            row.end_ms - row.start_ms
        ));
    };
    let size = meta.len() as i64;
    if size < row.bytes || (exact && size != row.bytes) {
        return Some(format!("{}: {size} bytes on the disk, {} in the index", row.path, row.bytes));
    }
    if let Some(errors) = decode_errors(&file) {
        return Some(format!("{} ({size} bytes) does not play: {errors}", row.path));
    }
    let indexed = (row.end_ms - row.start_ms) as f64 / 1000.0;
    match support::ffprobe_duration(&file) {
        Some(played) if (played - indexed).abs() <= indexed * 0.1 + 0.25 => None,
        played => Some(format!("{} ({size} bytes): ffprobe {played:?} s, index {indexed} s", row.path)),
    }
}

/// Checks the dumped disk: every segment file has a row, every row a file of its size
/// that plays for as long as the row says. Returns the rows, oldest first.
pub fn check_index(data: &Path) -> Vec<Row> {
    let rows = index_rows(data);
    let recordings = data.join("recordings");
    let files: BTreeSet<String> = segment_files(&recordings, true).into_keys().collect();
    let indexed: BTreeSet<String> = rows.iter().map(|r| r.path.clone()).collect();
    assert_eq!(indexed, files, "the index and the disk hold the same segments");
    for row in &rows {
        if let Some(problem) = row_problem(&recordings, row, true) {
            panic!("{problem}");
        }
    }
    rows
}

/// What ffmpeg says decoding `file` to the end (empty: nothing wrong).
pub fn play_errors(file: &Path) -> String {
    decode_errors(file).unwrap_or_default()
}

/// `None` when ffmpeg decodes every frame of `file` without an error (`support::plays`),
/// else what it said.
pub fn decode_errors(file: &Path) -> Option<String> {
    let out = Command::new(support::system_binary("ffmpeg", "ffmpeg"))
        .args(["-v", "error", "-i"])
        .arg(file)
        .args(["-f", "null", "-"])
        .output()
        .expect("ffmpeg");
    let errors = String::from_utf8_lossy(&out.stderr).into_owned();
    (!out.status.success() || !errors.is_empty()).then(|| format!("{} {errors}", out.status))
}
