//! The emulated arm64 board: board/qemu/boot runs the cross-built release
//! heldar-edge on Debian's arm64 kernel under qemu-system-aarch64 (TCG), with
//! the vivid virtual V4L2 camera, Debian's arm64 ffmpeg and an ext4 data disk.
//! From the host, over a real mosquitto and a scripted worker, the test checks
//! what a board in the field must do: come online, record, offer frames, turn
//! detections into zone events, stop cleanly with its footage indexed, survive
//! a hard power cut on its stock ext4 mount (nothing indexed that the disk
//! lost, at most the segment being written lost, unacknowledged events
//! resent, `seq` continuing), and stay inside its memory budget.
//! tests/power_cuts.rs cuts the power ten times.
//!
//! Needs qemu-system-arm, busybox-static, e2fsprogs, cpio, kmod, the aarch64
//! cross toolchain (scripts/setup test); the guest is cached under
//! target/qemu/arm64/. `HELDAR_ARM64_BIN=FILE` boots that binary instead of
//! letting board/qemu/boot build the release one. Prints its measurements
//! (`arm64 board:` lines) to stderr.

mod board_support;
mod support;

use board_support::{
    Board, CAMERA, NODE, SECOND, Seen, Worker, announce_worker, check_index, dump_disk, guest_load, last_segment_end,
    now_ms, play_errors, pump, rss_budget_kib,
};
use heldar_edge::wallclock::UnixMs;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use support::{Broker, TempDir, Watcher};

const SEGMENT_S: i64 = 6;

fn config(port: u16) -> String {
    format!(
        "[node]\nid = \"{NODE}\"\nboard = \"qemu-arm64\"\ndata_dir = \"/var/lib/heldar\"\n\n\
         [mqtt]\nurl = \"mqtt://10.0.2.2:{port}\"\nstats_interval_s = 2\n\n\
         [[camera]]\nid = \"{CAMERA}\"\nsource = \"v4l2:///dev/video0\"\nsegment_s = {SEGMENT_S}\n\
         sample_fps = 2\nsample_width = 320\n\n\
         [camera.v4l2]\nwidth = 640\nheight = 480\nfps = 15\nformat = \"YUYV\"\n\n\
         [[camera.zone]]\nid = \"yard\"\npolygon = [[0.2, 0.2], [0.6, 0.2], [0.6, 0.8], [0.2, 0.8]]\n\
         labels = [\"person\"]\ninertia = 2\n"
    )
}

/// Distinct pictures in a recorded segment: the recorder may repeat frames up to its output
/// rate, and `mpdecimate` drops the repeats; vivid's overlay (time, frame counter) makes
/// every captured picture differ from the one before.
fn distinct_frames(file: &Path) -> u64 {
    let out = Command::new(support::system_binary("ffmpeg", "ffmpeg"))
        .args(["-hide_banner", "-nostats", "-i"])
        .arg(file)
        .args(["-vf", "mpdecimate,showinfo", "-f", "null", "-"])
        .output()
        .expect("ffmpeg");
    String::from_utf8_lossy(&out.stderr).lines().filter(|l| l.contains("Parsed_showinfo") && l.contains(" n:")).count()
        as u64
}

/// Width and height of a JPEG per ffprobe.
fn jpeg_size(file: &Path) -> (u64, u64) {
    let out = Command::new(support::system_binary("ffprobe", "ffmpeg"))
        .args(["-v", "error", "-show_entries", "stream=width,height", "-of", "csv=p=0"])
        .arg(file)
        .output()
        .expect("ffprobe");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut parts = text.trim().split(',').map(|p| p.parse().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_emulated_arm64_board_records_samples_raises_zone_events_and_survives_a_power_cut() {
    let prepare_started = Instant::now();
    let bin = Board::prepare();
    let prepared = prepare_started.elapsed();
    let test_started = Instant::now();
    let dir = TempDir::new("arm64-board");
    let mut broker = Broker::start(&dir.join("broker"));
    let config_file = dir.join("config.toml");
    std::fs::write(&config_file, config(broker.port)).expect("config");
    let disk = dir.join("data.ext4");
    let mut watcher = Watcher::connect(broker.port, "watch-arm64", false, &[&format!("heldar/{NODE}/#")]).await;
    let mut seen = Seen { messages: Vec::new() };
    let mut worker = Worker::idle();
    let status_online =
        |seen: &Seen, after: Instant| seen.on("status").any(|(at, m)| *at >= after && m.text() == "online");
    let recording = |seen: &Seen, after: Instant| {
        seen.on(&format!("cameras/{CAMERA}/state")).any(|(at, m)| *at >= after && m.json()["state"] == "recording")
    };

    // Boot 1, on a new disk: online, recording, frames, a walk through the zone.
    let mut board = Board::boot(&dir.0, 1, &bin, &config_file, &disk);
    let boot1 = board.started;
    pump(&mut watcher, &mut seen, &mut worker, 90 * SECOND, "P/status online from the guest", |s, _| {
        status_online(s, boot1)
    })
    .await;
    let online_1 = boot1.elapsed();
    assert!(online_1 < 60 * SECOND, "online after {online_1:?}");
    pump(&mut watcher, &mut seen, &mut worker, 60 * SECOND, "the camera recording", |s, _| recording(s, boot1)).await;
    let state = seen.on(&format!("cameras/{CAMERA}/state")).map(|(_, m)| m.json()).last().expect("state");
    assert_eq!(state["v4l2"], json!({"format": "YUYV", "width": 640, "height": 480, "fps": 15}), "{state}");
    let stats = seen.on("stats").map(|(_, m)| m.json()).last().expect("P/stats");
    assert_eq!(stats["board"], "qemu-arm64", "{stats}");

    announce_worker(&watcher.client).await;
    worker.walk(
        "p1",
        &[
            (0.1, 0.5),
            (0.1, 0.5),
            (0.3, 0.5),
            (0.35, 0.5),
            (0.4, 0.5),
            (0.45, 0.5),
            (0.7, 0.5),
            (0.75, 0.5),
            (0.8, 0.5),
        ],
    );
    pump(&mut watcher, &mut seen, &mut worker, 60 * SECOND, "zone_enter and zone_exit of p1", |s, _| {
        s.zone_event("zone_exit", "p1").is_some()
    })
    .await;
    // A few more frames and segments, for the rates.
    let segments_before = last_segment_end(&seen);
    pump(&mut watcher, &mut seen, &mut worker, 40 * SECOND, "two more segments", |s, w| {
        s.on(&format!("cameras/{CAMERA}/state"))
            .filter_map(|(_, m)| m.json()["last_segment_end"].as_str().map(String::from))
            .collect::<BTreeSet<_>>()
            .len()
            >= 4
            && last_segment_end(s) > segments_before
            && w.frames.len() >= 16
    })
    .await;
    let errors: Vec<String> = seen.on("errors").map(|(_, m)| m.text()).collect();
    assert!(errors.is_empty(), "detections refused: {errors:?}");

    // The frames: headers, seq, ts, decodable JPEGs of the sampled size.
    let frames = std::mem::take(&mut worker.frames);
    let mut previous: Option<(u64, i64)> = None;
    for (_, header, jpeg) in &frames {
        assert_eq!(header["v"], 1, "{header}");
        assert_eq!(header["camera"], CAMERA, "{header}");
        assert_eq!(header["format"], "jpeg", "{header}");
        assert_eq!((header["width"].as_u64(), header["height"].as_u64()), (Some(320), Some(240)), "{header}");
        let seq = header["seq"].as_u64().expect("seq");
        let ts = UnixMs::parse_rfc3339(header["ts"].as_str().expect("ts")).expect("RFC 3339 ts").0;
        if let Some((last_seq, last_ts)) = previous {
            assert_eq!(seq, last_seq + 1, "frame seq increases by one");
            assert!(ts > last_ts, "frame ts increases");
        }
        previous = Some((seq, ts));
        assert!(jpeg.starts_with(&[0xFF, 0xD8]) && jpeg.ends_with(&[0xFF, 0xD9]), "a whole JPEG");
    }
    for (i, (_, _, jpeg)) in [&frames[0], &frames[frames.len() / 2], &frames[frames.len() - 1]].into_iter().enumerate()
    {
        let file = dir.join(&format!("frame-{i}.jpg"));
        std::fs::write(&file, jpeg).expect("write frame");
        assert!(support::plays(&file), "frame {i} decodes: {}", play_errors(&file));
        assert_eq!(jpeg_size(&file), (320, 240), "frame {i} is 320x240");
    }
    let span = frames[frames.len() - 1].0.duration_since(frames[0].0).as_secs_f64();
    let sampled_fps = (frames.len() - 1) as f64 / span;

    let enter = seen.zone_event("zone_enter", "p1").expect("zone_enter of p1").1;
    let exit = seen.zone_event("zone_exit", "p1").expect("zone_exit of p1").1;
    assert_eq!((enter["zone"].as_str(), exit["zone"].as_str()), (Some("yard"), Some("yard")));
    assert_eq!(enter["label"], "person");
    assert_eq!(exit["seq"].as_i64(), enter["seq"].as_i64().map(|s| s + 1), "contiguous seq: {enter} {exit}");
    assert!(exit["dwell_s"].as_f64().is_some_and(|d| d > 0.0), "{exit}");

    // A clean shutdown: the disk holds the segments and an index that matches them.
    let stopped = board.stop().await;
    assert!(stopped.success(), "clean shutdown of boot 1 ({stopped}):\n{}", board.tail());
    let console_1 = board.console();
    assert!(console_1.contains("heldar-guest-poweroff"), "the guest powered off:\n{}", board.tail());
    assert!(console_1.contains("stopped"), "the service stopped cleanly");
    let load_1 = guest_load(&board.guest_stats());
    drop(board);
    let dump_1 = dir.join("disk-1");
    dump_disk(&disk, &dump_1);
    let rows_1 = check_index(&dump_1);
    assert!(rows_1.len() >= 3, "segments of boot 1: {rows_1:?}");
    let distinct = rows_1
        .iter()
        .skip(1)
        .take(3)
        .map(|r| (distinct_frames(&dump_1.join("recordings").join(&r.path)), (r.end_ms - r.start_ms) as f64 / 1000.0))
        .fold((0, 0.0), |(f, s), (df, ds)| (f + df, s + ds));
    let captured_fps = distinct.0 as f64 / distinct.1;

    // Boot 2 on the same disk: a second walk into the zone; then the broker goes away,
    // the track times out inside the zone (an event the broker cannot acknowledge), and
    // the power is cut in the middle of a segment.
    let boot2_ms = now_ms();
    let mut board = Board::boot(&dir.0, 2, &bin, &config_file, &disk);
    let boot2 = board.started;
    pump(&mut watcher, &mut seen, &mut worker, 90 * SECOND, "online after the reboot", |s, _| status_online(s, boot2))
        .await;
    let online_2 = boot2.elapsed();
    // The reboot's gap is reported when the first segment of boot 2 closes: before the walk,
    // so that p2's events follow each other.
    pump(&mut watcher, &mut seen, &mut worker, 60 * SECOND, "recording after the reboot, its gap reported", |s, _| {
        recording(s, boot2) && s.events().any(|(at, e)| at >= boot2 && e["type"] == "recording_gap")
    })
    .await;
    worker.walk("p2", &[(0.1, 0.5), (0.1, 0.5), (0.3, 0.5), (0.35, 0.5), (0.4, 0.5)]);
    pump(&mut watcher, &mut seen, &mut worker, 60 * SECOND, "zone_enter of p2, the walk over", |s, w| {
        s.zone_event("zone_enter", "p2").is_some() && !w.walking()
    })
    .await;
    let last_sighting = Instant::now();
    pump(&mut watcher, &mut seen, &mut worker, 30 * SECOND, "a segment closed after boot 2", |s, _| {
        last_segment_end(s) > Some(boot2_ms)
    })
    .await;
    let segment_end = last_segment_end(&seen).expect("a segment end");
    let seq_before_cut = seen.events().filter_map(|(_, e)| e["seq"].as_i64()).max().expect("events");
    broker.stop();
    // The zone engine lets a track go 10 s after its last sighting (ticks every second).
    tokio::time::sleep((last_sighting + 14 * SECOND).saturating_duration_since(Instant::now())).await;
    // Segments start every SEGMENT_S from the last one that closed: cut two thirds into one.
    let period = SEGMENT_S * 1000;
    let wait_ms = (segment_end + period * 2 / 3 - now_ms()).rem_euclid(period);
    tokio::time::sleep(Duration::from_millis(wait_ms as u64)).await;
    let cut_ms = now_ms();
    let killed = board.pull_the_plug().await;
    assert!(!killed.success(), "boot 2 ended by the power cut");
    let load_2 = guest_load(&board.guest_stats());
    drop(board);
    broker.restart();

    // Boot 3: what the disk kept of the cut segment is indexed, the unacknowledged event
    // resent, seq continues.
    let mut board = Board::boot(&dir.0, 3, &bin, &config_file, &disk);
    let boot3 = board.started;
    pump(&mut watcher, &mut seen, &mut worker, 90 * SECOND, "online after the power cut", |s, _| {
        status_online(s, boot3)
    })
    .await;
    let online_3 = boot3.elapsed();
    pump(&mut watcher, &mut seen, &mut worker, 60 * SECOND, "the resent zone_exit of p2 and a new segment", |s, _| {
        s.zone_event("zone_exit", "p2").is_some()
            && last_segment_end(s) > Some(cut_ms + 1000)
            && s.events().any(|(at, e)| at >= boot3 && e["type"] == "recording_gap")
    })
    .await;
    let stopped = board.stop().await;
    assert!(stopped.success(), "clean shutdown of boot 3 ({stopped}):\n{}", board.tail());
    let load_3 = guest_load(&board.guest_stats());
    drop(board);

    let (exit_at, exit_2) = seen.zone_event("zone_exit", "p2").expect("zone_exit of p2");
    let enter_2 = seen.zone_event("zone_enter", "p2").expect("zone_enter of p2").1;
    assert!(exit_at >= boot3, "p2's zone_exit, stored while the broker was away, was sent after the reboot");
    assert!(exit_2["seq"].as_i64() > Some(seq_before_cut), "{exit_2}");
    let events: Vec<String> = seen.events().map(|(_, e)| e.to_string()).collect();
    assert_eq!(exit_2["seq"].as_i64(), enter_2["seq"].as_i64().map(|s| s + 1), "{enter_2} {exit_2}; all: {events:#?}");
    // Every event: one id per seq (repeats are the same event), seq contiguous from 1.
    let mut by_seq: BTreeMap<i64, String> = BTreeMap::new();
    for (_, event) in seen.events() {
        let seq = event["seq"].as_i64().expect("seq");
        let id = event["id"].as_str().expect("id").to_string();
        let known = by_seq.entry(seq).or_insert_with(|| id.clone());
        assert_eq!(*known, id, "seq {seq} is one event");
    }
    let seqs: Vec<i64> = by_seq.keys().copied().collect();
    assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>(), "seq contiguous across three boots");
    let first_new_in_3 = seen
        .events()
        .filter(|(at, e)| *at >= boot3 && e["seq"].as_i64() > Some(seq_before_cut) && e["type"] == "recording_gap")
        .filter_map(|(_, e)| e["seq"].as_i64())
        .min()
        .expect("a recording_gap after the power cut");
    assert!(first_new_in_3 > exit_2["seq"].as_i64().unwrap_or(0), "seq continues after the resent events");

    let dump_3 = dir.join("disk-3");
    dump_disk(&disk, &dump_3);
    let rows_3 = check_index(&dump_3);
    // The data disk is stock ext4 (delayed allocation): the segment being written may have
    // been in memory only, and then nothing of it is left; what is left is indexed up to its
    // last whole fragment. Every segment closed before the cut was synced at its close.
    let before_cut: Vec<_> = rows_3.iter().filter(|r| r.start_ms <= cut_ms).collect();
    let kept_until = before_cut.iter().map(|r| r.end_ms).max().expect("footage before the cut");
    assert!(kept_until <= cut_ms + 500, "nothing indexed past the cut at {cut_ms}: {before_cut:?}");
    let lost_ms = cut_ms - kept_until;
    assert!(
        lost_ms < period + 1500,
        "footage lost at the cut: at most the segment being written; kept until {kept_until}, cut at {cut_ms}: \
         {before_cut:?}"
    );
    assert!(rows_3.len() > rows_1.len() + 2, "boots 2 and 3 recorded too: {rows_3:?}");

    // Memory: the service's RSS (P/stats process.rss_kib) stays within the board's budget.
    let rss: Vec<u64> = seen.on("stats").filter_map(|(_, m)| m.json()["process"]["rss_kib"].as_u64()).collect();
    let peak_guest = [load_1, load_2, load_3].iter().flatten().map(|l| l.0).fold(0.0, f64::max);
    eprintln!(
        "arm64 board: online after {:.1} s (new disk), {:.1} s (reboot), {:.1} s (after the power cut)",
        online_1.as_secs_f64(),
        online_2.as_secs_f64(),
        online_3.as_secs_f64()
    );
    eprintln!(
        "arm64 board: the power cut {:.1} s into a segment lost {:.1} s of footage",
        (period * 2 / 3) as f64 / 1000.0,
        lost_ms as f64 / 1000.0
    );
    eprintln!(
        "arm64 board: {sampled_fps:.2} fps sampled ({} frames), {captured_fps:.1} fps captured (distinct pictures in segments)",
        frames.len()
    );
    for (boot, load) in [(1, load_1), (2, load_2), (3, load_3)] {
        if let Some((peak, service, ffmpeg, idle)) = load {
            eprintln!(
                "arm64 board: boot {boot}: service peak VmRSS {peak:.0} KiB, CPU {service:.1} % (of one core), \
                 ffmpeg {ffmpeg:.1} %, guest idle {idle:.1} %"
            );
        }
    }
    eprintln!(
        "arm64 board: P/stats process.rss_kib peak {:?} KiB over {} reports; test took {:.1} s after {:.1} s of preparation",
        rss.iter().max(),
        rss.len(),
        test_started.elapsed().as_secs_f64(),
        prepared.as_secs_f64()
    );
    let budget = rss_budget_kib();
    assert!(peak_guest > 0.0 && peak_guest <= budget as f64, "guest VmRSS peak {peak_guest} KiB over {budget} KiB");
    assert!(rss.len() >= 10, "P/stats reports process.rss_kib ({} of them do)", rss.len());
    let peak = rss.iter().copied().max().unwrap_or(0);
    assert!(peak <= budget, "service RSS {peak} KiB over the budget of {budget} KiB");
}
