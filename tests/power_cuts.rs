//! Power cuts on stock mounts: the emulated arm64 board (board/qemu/boot, its
//! data disk stock ext4 mounted `noatime` only: delayed allocation, a journal
//! commit every 5 s) records a vivid camera in 4 s segments, turns a scripted
//! worker's detections into zone events with evidence locks, and backs its
//! latest footage up to a local
//! destination on the same disk. Ten times, at a moment drawn by a seeded RNG
//! (in the middle of a segment, right after one closed, during a burst of zone
//! events, during a backup job, while sweeps delete: early in a boot whose
//! floor was raised, after a `sweep` command), qemu is killed and the board
//! boots again on the same disk image.
//!
//! After every cut, on a copy of the image whose journal is replayed the way
//! the kernel's mount does it: every index row's file exists, holds at least
//! the row's bytes and plays to the row's duration; no segment outside
//! `.quarantine/` lacks a row, except the newest ones (the segment being
//! written, one closed but not yet indexed) and files the `garbage` table is
//! deleting; every backup manifest entry's file has its size and SHA-256.
//! After the last cut the board runs once more and stops cleanly, and then
//! nothing at all may lack a row. A persistent QoS 1 subscriber on the events
//! must see every `seq` from 1 on (repeats allowed, one event per `seq`).
//!
//! Prints its measurements (`power cuts:` lines) to stderr: footage lost per
//! cut (from the cut back to the end of the last footage kept, as the next
//! boot's `recording_gap` reports it), boot to `online`. The seed is printed;
//! `HELDAR_POWER_CUTS_SEED=N` repeats a schedule. Needs what
//! tests/arm64_board.rs needs (board/README.md).

mod board_support;
mod support;

use board_support::{
    Board, CAMERA, NODE, SECOND, Seen, Worker, announce_worker, dump_disk, dump_disk_after_cut, index_rows,
    last_segment_end, now_ms, row_problem, segment_files,
};
use heldar_edge::wallclock::UnixMs;
use rumqttc::QoS;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::{Broker, Message, TempDir, Watcher};

const SEGMENT_S: i64 = 4;
const CUTS: usize = 10;
/// The data disk.
const DISK_SIZE: &str = "64M";
/// A boot that is cut during a sweep has its free-space floor this far above what was free
/// at the end of the boot before: its sweeps delete about this much of the oldest footage.
const SWEEP_BYTES: u64 = 200 << 10;
const BACKUP_POLICY: &str = "recent";
const BACKUP_DESTINATION: &str = "disk";
/// The backup policy's `bandwidth`, bytes per second: a job of a few segments takes seconds.
const BACKUP_BANDWIDTH: u64 = 32 << 10;

fn config(port: u16, min_free_percent: f64) -> String {
    format!(
        "[node]\nid = \"{NODE}\"\nboard = \"qemu-arm64\"\ndata_dir = \"/var/lib/heldar\"\n\n\
         [mqtt]\nurl = \"mqtt://10.0.2.2:{port}\"\nstats_interval_s = 2\n\n\
         [storage]\nmin_free_percent = {min_free_percent:.3}\nsweep_interval_s = 120\n\n\
         [events]\npre_roll_s = 2\npost_roll_s = 2\n\n\
         [[camera]]\nid = \"{CAMERA}\"\nsource = \"v4l2:///dev/video0\"\nsegment_s = {SEGMENT_S}\n\
         sample_fps = 2\nsample_width = 320\n\n\
         [camera.v4l2]\nwidth = 640\nheight = 480\nfps = 15\nformat = \"YUYV\"\n\n\
         [[camera.zone]]\nid = \"yard\"\npolygon = [[0.2, 0.2], [0.6, 0.2], [0.6, 0.8], [0.2, 0.8]]\n\
         labels = [\"person\"]\ninertia = 2\nlock = true\n\n\
         [[backup.destination]]\nid = \"{BACKUP_DESTINATION}\"\nkind = \"local\"\npath = \"/var/lib/heldar/backup\"\n\n\
         [[backup.policy]]\nid = \"{BACKUP_POLICY}\"\ndestination = \"{BACKUP_DESTINATION}\"\nevery_s = 60\n\
         lookback_s = 120\nverify = \"sha256\"\nconcurrency = 1\nbandwidth = \"{kib}KiB\"\n\n\
         [commands]\nauth = \"none\"\nallow = [\"sweep\", \"backup\"]\n",
        kib = BACKUP_BANDWIDTH >> 10
    )
}

/// When the power goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Moment {
    /// Somewhere in the middle of a segment.
    MidSegment,
    /// Right after a segment closed (0.5 s after ffmpeg's close at the latest: the segment
    /// is being synced and indexed, or just was).
    AfterClose,
    /// While a track walks in and out of a locking zone.
    EventBurst,
    /// Early in a boot whose floor was raised: its first sweep deletes the oldest footage,
    /// and a `sweep` command follows.
    Sweep,
    /// While a backup job copies (started by a command, or resumed after a cut).
    Backup,
}

/// SplitMix64: a seeded, repeatable schedule.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// Uniform in [lo, hi).
    fn between(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

/// Each kind of moment twice, in random order; the sweeps in the second half, once there is
/// footage enough for them to delete.
fn schedule(rng: &mut Rng) -> Vec<Moment> {
    use Moment::*;
    let mut early = vec![MidSegment, MidSegment, AfterClose, AfterClose, EventBurst, EventBurst, Backup, Backup];
    rng.shuffle(&mut early);
    let mut moments: Vec<Moment> = early;
    let from = CUTS / 2 + 1;
    for _ in 0..2 {
        let at = from + rng.below(moments.len() + 1 - from);
        moments.insert(at, Sweep);
    }
    assert_eq!(moments.len(), CUTS);
    moments
}

/// Receives for `duration`, answering frames with `worker`; `until` ends it early.
async fn pump_for(
    watcher: &mut Watcher,
    seen: &mut Seen,
    worker: &mut Worker,
    duration: Duration,
    mut until: impl FnMut(&Seen) -> bool,
) {
    let deadline = tokio::time::Instant::now() + duration;
    while !until(seen) {
        let Ok(message) = tokio::time::timeout_at(deadline, watcher.next_any()).await else { return };
        let message = message.expect("watcher open");
        if message.topic == format!("heldar/{NODE}/frames/{CAMERA}") {
            worker.answer(&watcher.client, &message).await;
        }
        seen.messages.push((Instant::now(), message));
    }
}

/// Whatever arrived and was not read yet (the board is off: nothing more is coming).
async fn drain(watcher: &mut Watcher, seen: &mut Seen) {
    for message in watcher.collect(Duration::from_millis(300), |_| false).await {
        seen.messages.push((Instant::now(), message));
    }
}

fn ms_of(value: &Value) -> Option<i64> {
    value.as_str().and_then(UnixMs::parse_rfc3339).map(|t| t.0)
}

/// The `recording_gap` that covers `cut_ms`: (from, to) in ms.
fn gap_over(seen: &Seen, cut_ms: i64) -> Option<(i64, i64)> {
    seen.events()
        .filter(|(_, e)| e["type"] == "recording_gap")
        .filter_map(|(_, e)| Some((ms_of(&e["from"])?, ms_of(&e["to"])?)))
        .find(|(from, to)| *from <= cut_ms + 1000 && *to > cut_ms)
}

fn replied(seen: &Seen, id: &str) -> Option<Value> {
    seen.on(&format!("replies/{id}")).map(|(_, m)| m.json()).next()
}

async fn command(client: &rumqttc::AsyncClient, name: &str, id: &str, args: Value) {
    client
        .publish(
            format!("heldar/{NODE}/cmd/{name}"),
            QoS::AtLeastOnce,
            false,
            json!({"v": 2, "id": id, "args": args}).to_string(),
        )
        .await
        .expect("publish command");
}

/// The sort key of a segment path, `<camera>/<day>/<HHMMSS>`: when it opened, to the second.
fn opened(path: &str) -> &str {
    let cut = path.rfind('/').map_or(0, |slash| slash + 1);
    let end = path[cut..].find('-').map_or(path.len(), |dash| cut + dash);
    &path[..end]
}

fn sha256_hex(file: &Path) -> Option<String> {
    let bytes = std::fs::read(file).ok()?;
    Some(Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect())
}

/// What a dumped data directory holds, and what is wrong with it.
#[derive(Debug, Default)]
struct DiskCheck {
    rows: usize,
    /// Bytes of each indexed segment.
    row_bytes: BTreeMap<String, i64>,
    newest_end_ms: Option<i64>,
    /// Segments without a row, newer than every row (being written or not yet indexed).
    pending: Vec<(String, u64)>,
    /// Rows of the `garbage` table: deletions under way.
    garbage_rows: usize,
    /// Segments without a row that the `garbage` table is deleting.
    garbage: usize,
    quarantined: Vec<(String, u64)>,
    manifest: usize,
    partial: usize,
    problems: Vec<String>,
}

/// Checks a dumped data directory. `cut`: the power was just cut (pending segments allowed);
/// `verified`: (path, size) of footage already checked to play, not decoded again.
fn check_disk(data: &Path, cut: bool, verified: &mut BTreeSet<(String, u64)>) -> DiskCheck {
    let mut check = DiskCheck::default();
    let recordings = data.join("recordings");
    let rows = index_rows(data);
    check.rows = rows.len();
    check.row_bytes = rows.iter().map(|r| (r.path.clone(), r.bytes)).collect();
    check.newest_end_ms = rows.iter().map(|r| r.end_ms).max();
    for row in &rows {
        let size = std::fs::metadata(recordings.join(&row.path)).map(|m| m.len()).ok();
        if size.is_some_and(|size| verified.contains(&(row.path.clone(), size))) {
            continue;
        }
        match row_problem(&recordings, row, false) {
            Some(problem) => check.problems.push(format!("index row: {problem}")),
            None => {
                verified.insert((row.path.clone(), size.unwrap_or(0)));
            }
        }
    }
    let index = rusqlite::Connection::open(data.join("index.db")).expect("index.db");
    let garbage: BTreeSet<String> = index
        .prepare("SELECT path FROM garbage")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .unwrap_or_default();
    check.garbage_rows = garbage.len();
    let indexed: BTreeSet<&str> = rows.iter().map(|r| r.path.as_str()).collect();
    let newest = rows.iter().map(|r| opened(&r.path)).max().unwrap_or("");
    for (path, size) in segment_files(&recordings, false) {
        if indexed.contains(path.as_str()) {
            continue;
        }
        if garbage.contains(&path) {
            check.garbage += 1;
        } else if cut && opened(&path) >= newest {
            check.pending.push((path, size));
        } else {
            check.problems.push(format!("{path} ({size} bytes) is on the disk without an index row"));
        }
    }
    if check.pending.len() > 2 {
        check.problems.push(format!("{} segments without a row at the cut: {:?}", check.pending.len(), check.pending));
    }
    check.quarantined = segment_files(&recordings.join(".quarantine"), true).into_iter().collect();
    let manifest: Vec<(String, i64, Option<String>)> = index
        .prepare("SELECT path, bytes, sha256 FROM backup_manifest WHERE destination = ?1 ORDER BY path")
        .expect("prepare")
        .query_map([BACKUP_DESTINATION], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("manifest");
    check.manifest = manifest.len();
    let backup = data.join("backup");
    for (path, bytes, sha256) in &manifest {
        let file = backup.join(path);
        match std::fs::metadata(&file) {
            Err(_) => {
                check.problems.push(format!("backup manifest: {path} ({bytes} bytes) is done but not on the disk"))
            }
            Ok(meta) if meta.len() as i64 != *bytes => check
                .problems
                .push(format!("backup manifest: {path}: {} bytes on the disk, {bytes} in the manifest", meta.len())),
            Ok(_) => match (sha256, sha256_hex(&file)) {
                (Some(want), Some(got)) if *want != got => {
                    check.problems.push(format!("backup manifest: {path}: SHA-256 {got}, the manifest says {want}"))
                }
                (None, _) => {
                    check.problems.push(format!("backup manifest: {path} has no SHA-256 (verify = \"sha256\")"))
                }
                _ => {}
            },
        }
    }
    check.partial = walk_files(&backup).iter().filter(|p| p.to_string_lossy().ends_with(".partial")).count();
    check
}

fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() { stack.push(path) } else { files.push(path) }
        }
    }
    files
}

/// What reconciliation made of segments without a row, per its log in a console: the playable
/// seconds of each one it indexed (0 for one it removed or quarantined).
fn reconciled_segments(console: &str) -> BTreeMap<String, f64> {
    let mut found = BTreeMap::new();
    for line in console.lines() {
        let field = |name: &str| {
            let start = line.find(&format!(" {name}="))? + name.len() + 2;
            let value = line[start..].split_whitespace().next()?;
            Some(value.trim_matches('"').to_string())
        };
        let Some(path) = field("path") else { continue };
        if line.contains("unindexed segment indexed") {
            found.insert(path, field("duration_s").and_then(|d| d.parse().ok()).unwrap_or(0.0));
        } else if line.contains("segment without a frame removed") || line.contains("unplayable segment quarantined") {
            found.insert(path, 0.0);
        }
    }
    found
}

/// The fields of the service's `index and disk reconciled` line in a console, if any.
fn reconciled(console: &str) -> Option<String> {
    let line = console.lines().find(|l| l.contains("index and disk reconciled"))?;
    let fields: Vec<&str> = line.split_whitespace().filter(|w| w.contains('=')).collect();
    Some(fields.join(" "))
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

fn max(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::NAN, f64::max)
}

fn status_online(seen: &Seen, after: Instant) -> bool {
    seen.on("status").any(|(at, m)| *at >= after && m.text() == "online")
}

fn latest_stats(seen: &Seen) -> Option<Value> {
    seen.on("stats").map(|(_, m)| m.json()).last()
}

/// One cut: what, when, and what it cost.
struct Cut {
    moment: Moment,
    boot: u32,
    at_ms: i64,
    /// When the camera started recording in that boot, if it had.
    recording_since_ms: Option<i64>,
    /// The end of the newest indexed footage on the disk the cut left.
    indexed_until_ms: Option<i64>,
    /// Segments without a row on that disk, for the next start to index.
    pending: Vec<String>,
    note: String,
    online_s: Option<f64>,
}

/// When the camera last said it was recording since, in the boot started at `boot_ms`.
fn recording_since(seen: &Seen, boot_ms: i64) -> Option<i64> {
    seen.on(&format!("cameras/{CAMERA}/state"))
        .map(|(_, m)| m.json())
        .filter(|state| state["state"] == "recording")
        .filter_map(|state| ms_of(&state["since"]))
        .filter(|since| *since >= boot_ms)
        .max()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_board_keeps_its_index_true_through_ten_power_cuts_on_a_stock_ext4_mount() {
    let seed = std::env::var("HELDAR_POWER_CUTS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| UnixMs::now().0 as u64 ^ u64::from(std::process::id()) << 32);
    eprintln!("power cuts: seed {seed} (HELDAR_POWER_CUTS_SEED={seed} repeats this schedule)");
    let mut rng = Rng(seed);
    let moments = schedule(&mut rng);
    eprintln!("power cuts: schedule {moments:?}");

    let prepare_started = Instant::now();
    let bin = Board::prepare();
    let prepared = prepare_started.elapsed();
    let test_started = Instant::now();
    let dir = TempDir::new("power-cuts");
    let broker = Broker::start(&dir.join("broker"));
    let config_file = dir.join("config.toml");
    std::fs::write(&config_file, config(broker.port, 0.0)).expect("config");
    let disk = dir.join("data.ext4");
    let events_topic = format!("heldar/{NODE}/events/#");
    let mut subscriber = Watcher::connect(broker.port, "power-cuts-events", false, &[&events_topic]).await;
    let mut watcher = Watcher::connect(broker.port, "power-cuts-watch", true, &[&format!("heldar/{NODE}/#")]).await;
    announce_worker(&watcher.client).await;
    let mut seen = Seen::new();
    let mut worker = Worker::idle();
    let mut verified = BTreeSet::new();
    let mut cuts: Vec<Cut> = Vec::new();
    let mut reconciled_files = BTreeMap::new();
    let mut previous_rows: BTreeMap<String, i64> = BTreeMap::new();
    let mut floors = Vec::new();
    let period = SEGMENT_S * 1000;

    let mut n = 1;
    let mut board = Board::boot_with(&dir.0, n, &bin, &config_file, &disk, &["--disk-size", DISK_SIZE]);
    let mut boot_ms = now_ms();
    let mut online_first = None;
    for (k, moment) in moments.iter().copied().enumerate() {
        // Up: online; then (but for a sweep, cut early) a segment closed in this boot and,
        // after a cut, the recording_gap over it.
        let booted = board.started;
        pump_for(&mut watcher, &mut seen, &mut worker, 90 * SECOND, |s| status_online(s, booted)).await;
        assert!(status_online(&seen, booted), "boot {n}: not online within 90 s:\n{}", board.tail());
        let online_s = booted.elapsed().as_secs_f64();
        match cuts.last_mut() {
            Some(cut) => cut.online_s = Some(online_s),
            None => online_first = Some(online_s),
        }
        if n == 1 {
            let console = board.console();
            let mount = console.lines().find(|l| l.contains("init: data disk")).unwrap_or_default().to_string();
            assert!(
                mount.contains("ext4") && !mount.contains("nodelalloc") && !mount.contains("commit="),
                "the data disk is mounted stock: {mount}"
            );
            eprintln!("power cuts: {mount}");
        }
        if moment != Moment::Sweep {
            let what = format!("boot {n}: a segment closed after the boot");
            pump_for(&mut watcher, &mut seen, &mut worker, 90 * SECOND, |s| last_segment_end(s) > Some(boot_ms)).await;
            assert!(last_segment_end(&seen) > Some(boot_ms), "{what}:\n{}", board.tail());
            if let Some(cut) = cuts.last() {
                let at = cut.at_ms;
                pump_for(&mut watcher, &mut seen, &mut worker, 30 * SECOND, |s| gap_over(s, at).is_some()).await;
                assert!(
                    gap_over(&seen, at).is_some(),
                    "boot {n}: no recording_gap over the cut at {}:\n{}",
                    UnixMs(at).to_rfc3339(),
                    board.tail()
                );
            }
            // A few seconds more of recording, so that there is footage to lose and to sweep.
            let dwell = Duration::from_millis(rng.between(2000.0, 10000.0) as u64);
            pump_for(&mut watcher, &mut seen, &mut worker, dwell, |_| false).await;
        }
        worker.frames.clear();

        // The moment.
        let note = match moment {
            Moment::MidSegment => {
                let end = last_segment_end(&seen).expect("a segment end");
                let into = (period as f64 * rng.between(0.15, 0.85)) as i64;
                let wait = (end + into - now_ms()).rem_euclid(period);
                pump_for(&mut watcher, &mut seen, &mut worker, Duration::from_millis(wait as u64), |_| false).await;
                format!("{:.1} s into a segment", into as f64 / 1000.0)
            }
            Moment::AfterClose => {
                // Segments follow each other: the next closes a period after the last one did.
                let end = last_segment_end(&seen).expect("a segment end");
                let after = rng.between(0.0, 500.0) as i64;
                let wait = (end + after - now_ms()).rem_euclid(period);
                pump_for(&mut watcher, &mut seen, &mut worker, Duration::from_millis(wait as u64), |_| false).await;
                let reported = last_segment_end(&seen).is_some_and(|e| e > end);
                let indexed = if reported { "indexed and reported" } else { "not reported yet" };
                format!("{after} ms after a segment's close (that segment {indexed} at the cut)")
            }
            Moment::EventBurst => {
                // In and out of the zone every second or so: zone_enter/zone_exit and locks.
                let track = format!("b{k}");
                let (out, inside) = ((0.75, 0.5), (0.35, 0.5));
                let walk = [out, out, inside, inside, out, out, inside, inside, out, out, inside, inside, out, out];
                worker.walk(&track, &walk);
                let entered = |s: &Seen| s.zone_event("zone_enter", &track).is_some();
                pump_for(&mut watcher, &mut seen, &mut worker, 30 * SECOND, entered).await;
                assert!(seen.zone_event("zone_enter", &track).is_some(), "boot {n}: no zone_enter of {track}");
                let after = rng.between(0.0, 4000.0) as u64;
                pump_for(&mut watcher, &mut seen, &mut worker, Duration::from_millis(after), |_| false).await;
                let events = seen.events().filter(|(_, e)| e["track_id"] == track.as_str()).count();
                format!("{after} ms after the zone_enter of {track} ({events} zone events so far)")
            }
            Moment::Sweep => {
                let id = format!("sweep-{k}");
                command(&watcher.client, "sweep", &id, json!({})).await;
                let after = rng.between(0.0, 2000.0) as u64;
                pump_for(&mut watcher, &mut seen, &mut worker, Duration::from_millis(after), |_| false).await;
                let reply = replied(&seen, &id).map_or_else(|| "none yet".to_string(), |r| r["result"].to_string());
                let console = board.console();
                let swept: Vec<&str> = console.lines().filter(|l| l.contains("retention swept")).collect();
                let free: Vec<u64> = seen
                    .on("stats")
                    .filter(|(at, _)| *at >= booted)
                    .filter_map(|(_, m)| m.json()["storage"]["free_bytes"].as_u64())
                    .collect();
                format!(
                    "{after} ms after online and the sweep command (reply {reply}; sweeps logged before the cut: \
                     {swept:?}; free bytes in this boot's P/stats {free:?})"
                )
            }
            Moment::Backup => {
                let id = format!("backup-{k}");
                command(&watcher.client, "backup", &id, json!({"policy": BACKUP_POLICY})).await;
                pump_for(&mut watcher, &mut seen, &mut worker, 20 * SECOND, |s| replied(s, &id).is_some()).await;
                let reply = replied(&seen, &id).unwrap_or_else(|| panic!("boot {n}: no reply to {id}"));
                // `busy`: the job a previous cut interrupted runs again; that one is cut.
                let job = reply["result"]["job"].as_i64();
                let progress = |s: &Seen| {
                    s.messages.iter().rev().find_map(|(_, m)| {
                        let rest = m.topic.strip_prefix(&format!("heldar/{NODE}/backup/"))?;
                        (job.is_none() || rest.parse().ok() == job).then(|| m.json())
                    })
                };
                pump_for(&mut watcher, &mut seen, &mut worker, 10 * SECOND, |s| progress(s).is_some()).await;
                // Within what is left of the job at the policy's bandwidth.
                let left = progress(&seen).map_or(0, |p| {
                    p["bytes_total"].as_u64().unwrap_or(0).saturating_sub(p["bytes_done"].as_u64().unwrap_or(0))
                });
                let left_ms = (left * 1000 / BACKUP_BANDWIDTH) as f64;
                let after = rng.between(0.0, (left_ms * 0.9).max(300.0)) as u64;
                pump_for(&mut watcher, &mut seen, &mut worker, Duration::from_millis(after), |_| false).await;
                let last = progress(&seen).map_or_else(
                    || "none".to_string(),
                    |p| format!("job {} {} {}/{} files", p["job"], p["status"], p["files_done"], p["files_total"]),
                );
                let answer = if reply["ok"] == true { reply["result"].to_string() } else { reply["error"].to_string() };
                format!("{after} ms into a backup (reply {answer}; last progress: {last})")
            }
        };

        // The cut.
        let at_ms = now_ms();
        let at_boot_s = board.started.elapsed().as_secs_f64();
        let killed = board.pull_the_plug().await;
        assert!(!killed.success(), "boot {n} ended by the power cut");
        if let Some(fields) = reconciled(&board.console()) {
            eprintln!("power cuts: boot {n} reconciled at its start: {fields}");
        }
        reconciled_files.extend(reconciled_segments(&board.console()));
        drop(board);
        drain(&mut watcher, &mut seen).await;
        let free_at_cut = latest_stats(&seen).and_then(|s| s["storage"]["free_bytes"].as_u64());
        let total = latest_stats(&seen).and_then(|s| s["storage"]["total_bytes"].as_u64());

        // What the cut left, as the next mount will see it.
        let dump = dir.join(&format!("cut-{}", k + 1));
        dump_disk_after_cut(&disk, &dump);
        let check = check_disk(&dump, true, &mut verified);
        let indexed_behind = check.newest_end_ms.map(|end| (at_ms - end) as f64 / 1000.0);
        let deleted: Vec<i64> =
            previous_rows.iter().filter(|(path, _)| !check.row_bytes.contains_key(*path)).map(|(_, b)| *b).collect();
        eprintln!(
            "power cuts: cut {}/{CUTS} ({moment:?}, {note}) at {:.1} s of boot {n}: {} rows ({} deleted since the \
             last cut, {} bytes), newest indexed footage {indexed_behind:.1?} s before the cut, without a row yet \
             {:?}, garbage {} rows ({} files left), quarantined {}, backup manifest {} ({} .partial)",
            k + 1,
            at_boot_s,
            check.rows,
            deleted.len(),
            deleted.iter().sum::<i64>(),
            check.pending,
            check.garbage_rows,
            check.garbage,
            check.quarantined.len(),
            check.manifest,
            check.partial,
        );
        assert!(
            check.problems.is_empty(),
            "after power cut {} ({moment:?}, {note}), the disk (dumped to {}) does not hold what the index \
             and the backup manifest say:\n{}\nconsole of boot {n}: {}",
            k + 1,
            dump.display(),
            check.problems.join("\n"),
            dir.join(&format!("console-{n}.log")).display()
        );
        if std::env::var_os("HELDAR_KEEP_TEST_DIRS").is_none() {
            let _ = std::fs::remove_dir_all(&dump);
        }
        let recording_since_ms = recording_since(&seen, boot_ms).filter(|since| *since < at_ms);
        let pending = check.pending.iter().map(|(path, _)| path.clone()).collect();
        let indexed_until_ms = check.newest_end_ms;
        cuts.push(Cut { moment, boot: n, at_ms, recording_since_ms, indexed_until_ms, pending, note, online_s: None });
        previous_rows = check.row_bytes;

        // The next boot; one to be cut during a sweep gets a floor above what is free now.
        let floor_percent = match (moments.get(k + 1), free_at_cut, total) {
            (Some(Moment::Sweep), Some(free), Some(total)) => {
                let percent = (free + SWEEP_BYTES) as f64 * 100.0 / total as f64;
                let floor = (total as f64 * percent / 100.0).ceil() as u64;
                floors.push(format!(
                    "boot {}: min_free_percent {percent:.4} (floor {floor} bytes of {total}; {free} free in the last \
                     P/stats of boot {n})",
                    n + 1
                ));
                eprintln!("power cuts: {}", floors.last().expect("floor"));
                percent
            }
            _ => 0.0,
        };
        std::fs::write(&config_file, config(broker.port, floor_percent)).expect("config");
        n += 1;
        board = Board::boot(&dir.0, n, &bin, &config_file, &disk);
        boot_ms = now_ms();
    }

    // The last boot: online, the last cut's gap, a few segments more; then a clean stop.
    let booted = board.started;
    pump_for(&mut watcher, &mut seen, &mut worker, 90 * SECOND, |s| status_online(s, booted)).await;
    assert!(status_online(&seen, booted), "boot {n}: not online within 90 s:\n{}", board.tail());
    cuts.last_mut().expect("cuts").online_s = Some(booted.elapsed().as_secs_f64());
    let at = cuts.last().expect("cuts").at_ms;
    pump_for(&mut watcher, &mut seen, &mut worker, 90 * SECOND, |s| gap_over(s, at).is_some()).await;
    assert!(gap_over(&seen, at).is_some(), "boot {n}: no recording_gap over the last cut:\n{}", board.tail());
    for _ in 0..3 {
        let before = last_segment_end(&seen);
        pump_for(&mut watcher, &mut seen, &mut worker, 30 * SECOND, |s| last_segment_end(s) > before).await;
    }
    let stopped = board.stop().await;
    assert!(stopped.success(), "clean shutdown of boot {n} ({stopped}):\n{}", board.tail());
    assert!(board.console().contains("heldar-guest-poweroff"), "the guest powered off:\n{}", board.tail());
    if let Some(fields) = reconciled(&board.console()) {
        eprintln!("power cuts: boot {n} reconciled at its start: {fields}");
    }
    reconciled_files.extend(reconciled_segments(&board.console()));
    drop(board);
    drain(&mut watcher, &mut seen).await;

    // Everything, after the clean stop: every row plays, nothing lacks a row, backups verify.
    let dump = dir.join("final");
    dump_disk(&disk, &dump);
    let mut fresh = BTreeSet::new();
    let check = check_disk(&dump, false, &mut fresh);
    let deleted: Vec<i64> =
        previous_rows.iter().filter(|(path, _)| !check.row_bytes.contains_key(*path)).map(|(_, b)| *b).collect();
    eprintln!(
        "power cuts: after the clean stop: {} rows ({} deleted since the last cut, {} bytes; all decoded again), \
         garbage {}, quarantined {:?}, backup manifest {} ({} .partial)",
        check.rows,
        deleted.len(),
        deleted.iter().sum::<i64>(),
        check.garbage,
        check.quarantined,
        check.manifest,
        check.partial
    );
    assert!(
        check.problems.is_empty(),
        "after the clean stop that followed {CUTS} power cuts, the disk (dumped to {}) does not hold what the \
         index and the backup manifest say:\n{}",
        dump.display(),
        check.problems.join("\n")
    );
    assert!(check.rows >= 3, "footage kept: {} rows", check.rows);
    assert!(check.manifest > 0, "the backups copied something");

    // Events: the persistent QoS 1 subscriber saw every seq, each one event.
    let received: Vec<Message> = subscriber.collect(2 * SECOND, |_| false).await;
    let mut by_seq: BTreeMap<i64, String> = BTreeMap::new();
    let mut conflicts = Vec::new();
    for event in received.iter().map(Message::json).chain(seen.events().map(|(_, e)| e)) {
        let seq = event["seq"].as_i64().expect("seq");
        let id = event["id"].as_str().expect("id").to_string();
        let known = by_seq.entry(seq).or_insert_with(|| id.clone());
        if *known != id {
            conflicts.push(format!("seq {seq}: {known} and {id}"));
        }
    }
    assert!(conflicts.is_empty(), "one event per seq: {conflicts:?}");
    let subscribed: BTreeSet<i64> = received.iter().filter_map(|m| m.json()["seq"].as_i64()).collect();
    let last = subscribed.iter().max().copied().unwrap_or(0);
    let missing: Vec<i64> = (1..=last).filter(|s| !subscribed.contains(s)).collect();
    let kinds: BTreeMap<String, usize> = received.iter().fold(BTreeMap::new(), |mut kinds, m| {
        *kinds.entry(m.json()["type"].as_str().unwrap_or("?").to_string()).or_default() += 1;
        kinds
    });
    eprintln!(
        "power cuts: the persistent subscriber got {} event messages, seq 1..={last}, {} repeats; {kinds:?}",
        received.len(),
        received.len() - subscribed.len()
    );
    assert!(missing.is_empty(), "seq gaps seen by the persistent QoS 1 subscriber: {missing:?}");
    let dropped = latest_stats(&seen).and_then(|s| s["outbox"]["dropped"].as_u64());
    assert_eq!(dropped, Some(0), "events dropped by the outbox");

    // The figures. Footage lost: from the cut back to the end of the footage kept before it
    // (what was indexed on the disk the cut left, and what the next start indexed of the
    // segments without a row), or to the start of the boot's recording when all it recorded
    // was lost; nothing when it had not recorded yet. The recording_gap the node reported
    // over the cut is printed beside it (a sweep may have deleted footage before it was sent).
    let mut lost = Vec::new();
    for (i, cut) in cuts.iter().enumerate() {
        let recovered: f64 = cut.pending.iter().filter_map(|p| reconciled_files.get(p)).sum();
        let kept_until = cut.indexed_until_ms.map(|end| end + (recovered * 1000.0) as i64);
        let cut_lost = match (cut.recording_since_ms, kept_until) {
            (Some(since), Some(until)) => Some((cut.at_ms - until.max(since)).max(0) as f64 / 1000.0),
            (Some(since), None) => Some((cut.at_ms - since) as f64 / 1000.0),
            (None, _) => None,
        };
        lost.extend(cut_lost);
        let gap = gap_over(&seen, cut.at_ms).map(|(from, _)| (cut.at_ms - from) as f64 / 1000.0);
        eprintln!(
            "power cuts: cut {} (boot {}): {:?}, {}: footage lost {} ({recovered:.1} s recovered from {} segments \
             without a row; the recording_gap over it starts {gap:.1?} s before it), next boot online after {:.1?} s",
            i + 1,
            cut.boot,
            cut.moment,
            cut.note,
            cut_lost.map_or_else(|| "none (not recording yet)".to_string(), |s| format!("{s:.1} s")),
            cut.pending.len(),
            cut.online_s
        );
    }
    let online: Vec<f64> = cuts.iter().filter_map(|c| c.online_s).collect();
    eprintln!(
        "power cuts: footage lost per cut: median {:.1} s, max {:.1} s ({} cuts that had recorded, {SEGMENT_S} s segments)",
        median(&lost),
        max(&lost),
        lost.len()
    );
    eprintln!(
        "power cuts: boot to online after a cut: median {:.1} s, max {:.1} s ({} boots; the first, on a new disk: {:.1?} s)",
        median(&online),
        max(&online),
        online.len(),
        online_first
    );
    eprintln!(
        "power cuts: test took {:.1} s after {:.1} s of preparation (seed {seed})",
        test_started.elapsed().as_secs_f64(),
        prepared.as_secs_f64()
    );
    assert_eq!(online.len(), CUTS, "boot to online measured after every cut");
    assert!(lost.len() >= CUTS - 2, "footage lost measured for the cuts that had recorded: {lost:?}");
    // A cut loses at most the segment being written and the one being closed.
    assert!(max(&lost) <= (2 * SEGMENT_S + 2) as f64, "footage lost per cut: {lost:?}");
}
