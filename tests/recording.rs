//! Recording from a real RTSP camera (GStreamer's RTSP server) with real
//! ffmpeg: segments close and are indexed at once, outages give one offline
//! event, a recorded gap and an online event, a `kill -9` leaves a playable
//! segment that the next start indexes, and bad sources keep retrying
//! without disturbing the others; a deletion or a write that a crash cut
//! short is finished or re-probed at the next start.

mod support;

use std::time::{Duration, Instant};
use support::{Broker, Message, Node, RtspCamera, TempDir, Watcher};

const SECOND: Duration = Duration::from_secs(1);

fn camera_toml(id: &str, source: &str, segment_s: u64, extra: &str) -> String {
    format!("\n[[camera]]\nid = \"{id}\"\nsource = \"{source}\"\nsegment_s = {segment_s}\n{extra}")
}

/// Events of `kind` among `messages`.
fn events<'a>(messages: &'a [Message], kind: &str) -> Vec<&'a Message> {
    messages.iter().filter(|m| m.topic.contains("/events/") && m.topic.ends_with(&format!("/{kind}"))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtsp_segments_are_indexed_as_they_close_and_play() {
    let dir = TempDir::new("rtsp-record");
    let broker = Broker::start(&dir.join("broker"));
    let camera = RtspCamera::start();
    let mut watcher =
        Watcher::connect(broker.port, "watch-rec", true, &["heldar/rec/cameras/+/state", "heldar/rec/stats"]).await;
    let mut node = Node::configure(&dir.0, "rec", &broker.url(), &camera_toml("door", &camera.url(), 2, ""));
    let started = Instant::now();
    node.start(&[]);

    support::wait_for(20 * SECOND, "a first indexed segment", || !node.segments("door").is_empty());
    let first_indexed = started.elapsed();
    support::wait_for(20 * SECOND, "4 indexed segments", || node.segments("door").len() >= 4);
    let state = watcher.collect(5 * SECOND, |m| m.iter().any(|m| m.json()["state"] == "recording")).await;
    assert!(state.iter().any(|m| m.json()["state"] == "recording"), "{state:?}");
    let stats = watcher.next_on("heldar/rec/stats", 3 * SECOND).await.expect("stats").json();
    assert_eq!(stats["cameras"]["door"]["state"], "recording", "{stats}");
    let mut late = Watcher::connect(broker.port, "watch-rec-late", true, &["heldar/rec/cameras/door/state"]).await;
    let retained = late.next_on("heldar/rec/cameras/door/state", 2 * SECOND).await.expect("retained state");
    assert!(retained.retain);
    let retained = retained.json();
    assert_eq!(retained["state"], "recording");
    assert!(retained["fps"].as_f64().unwrap_or(0.0) > 5.0, "{retained}");
    assert!(retained["kbps"].as_f64().unwrap_or(0.0) > 0.0, "{retained}");
    assert!(retained["last_segment_end"].is_string(), "{retained}");

    let rows = node.segments("door");
    let native = node.count("SELECT count(*) FROM segments WHERE camera = 'door' AND recorder = 'native'");
    assert_eq!(native as usize, rows.len(), "rtsp:// records natively by default");
    for pair in rows.windows(2) {
        assert!((pair[1].start_ms - pair[0].end_ms).abs() <= 50, "not contiguous: {pair:?}");
    }
    for row in &rows {
        let file = node.segment_file(row);
        let played = support::ffprobe_duration(&file).expect("segment plays");
        let indexed = (row.end_ms - row.start_ms) as f64 / 1000.0;
        assert!((played - indexed).abs() <= indexed * 0.1, "{}: ffprobe {played} s, index {indexed} s", row.path);
        assert_eq!(row.bytes as u64, std::fs::metadata(&file).expect("file").len());
        assert_eq!(row.codec.as_deref(), Some("h264"));
        assert_eq!((row.width, row.height), (Some(320), Some(240)));
        assert!(row.path.starts_with("door/"), "{}", row.path);
    }
    let status = node.terminate(15 * SECOND);
    assert!(status.success());
    let after = node.segments("door");
    let last = after.last().expect("rows");
    assert!(support::plays(&node.segment_file(last)), "the segment closed at stop plays");
    eprintln!("time from run to the first indexed segment: {first_indexed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_gives_one_offline_event_a_gap_and_online_again() {
    let dir = TempDir::new("rtsp-outage");
    let broker = Broker::start(&dir.join("broker"));
    let mut camera = RtspCamera::start();
    let mut watcher = Watcher::connect(broker.port, "watch-outage", true, &["heldar/out/events/#"]).await;
    let mut node = Node::configure(&dir.0, "out", &broker.url(), &camera_toml("yard", &camera.url(), 2, ""));
    node.start(&[]);
    support::wait_for(20 * SECOND, "recording", || node.segments("yard").len() >= 2);

    camera.stop();
    let down = Instant::now();
    let offline = watcher.collect(20 * SECOND, |m| !events(m, "camera_offline").is_empty()).await;
    assert_eq!(events(&offline, "camera_offline").len(), 1, "camera_offline within 20 s");
    let outage = Duration::from_secs(20);
    let mut during = watcher.collect(outage.saturating_sub(down.elapsed()), |_| false).await;
    camera.restart();
    during.extend(watcher.collect(30 * SECOND, |m| !events(m, "recording_gap").is_empty()).await);
    assert!(events(&during, "camera_offline").is_empty(), "one offline event per outage, not per retry");
    assert_eq!(events(&during, "camera_online").len(), 1);
    let gap = events(&during, "recording_gap");
    assert_eq!(gap.len(), 1, "one recording_gap");
    let gap = gap[0].json();
    let seconds = gap["duration_s"].as_f64().expect("duration_s");
    assert!((18.0..=40.0).contains(&seconds), "gap of {seconds} s for a 20 s outage");
    assert_eq!(gap["camera"], "yard");
    let before = node.segments("yard").len();
    support::wait_for(20 * SECOND, "recording again", || node.segments("yard").len() > before);
    assert_eq!(node.count("SELECT count(*) FROM recording_gaps WHERE camera = 'yard'"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_segment_cut_by_kill_9_is_indexed_and_plays_after_restart() {
    let dir = TempDir::new("rtsp-kill");
    let broker = Broker::start(&dir.join("broker"));
    let camera = RtspCamera::start();
    let mut node = Node::configure(&dir.0, "kil", &broker.url(), &camera_toml("gate", &camera.url(), 8, ""));
    node.start(&[]);
    support::wait_for(30 * SECOND, "a first segment", || !node.segments("gate").is_empty());
    std::thread::sleep(5 * SECOND);
    node.kill9();
    // Down for a few seconds, as after a power cut: the timeline gets a real hole.
    std::thread::sleep(4 * SECOND);
    let indexed: Vec<String> = node.segments("gate").into_iter().map(|r| r.path).collect();
    let on_disk = recorded_files(&node);
    let cut: Vec<&String> = on_disk.iter().filter(|f| !indexed.contains(f)).collect();
    assert_eq!(cut.len(), 1, "one segment cut mid-way: disk {on_disk:?}, index {indexed:?}");
    let cut = cut[0].clone();

    node.start(&[]);
    support::wait_for(20 * SECOND, "the cut segment indexed", || node.segments("gate").iter().any(|r| r.path == cut));
    let row = node.segments("gate").into_iter().find(|r| r.path == cut).expect("row");
    let duration = (row.end_ms - row.start_ms) as f64 / 1000.0;
    assert!((3.0..=8.5).contains(&duration), "cut segment of {duration} s");
    assert!(support::plays(&node.segment_file(&row)), "the cut segment plays");
    for path in &indexed {
        assert!(node.segments("gate").iter().any(|r| &r.path == path), "{path} lost");
    }
    support::wait_for(30 * SECOND, "recording again", || node.segments("gate").len() > indexed.len() + 1);
    assert!(node.count("SELECT count(*) FROM recording_gaps WHERE camera = 'gate'") >= 1);
    assert!(node.log().contains("unindexed segment indexed"), "{}", node.log());
}

fn recorded_files(node: &Node) -> Vec<String> {
    let root = node.dir.join("data/recordings");
    let mut files = Vec::new();
    for day in std::fs::read_dir(root.join("gate")).expect("camera dir").filter_map(Result::ok) {
        for file in std::fs::read_dir(day.path()).expect("day dir").filter_map(Result::ok) {
            let path = file.path();
            files.push(path.strip_prefix(&root).expect("under root").to_string_lossy().into_owned());
        }
    }
    files.sort();
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_sources_retry_with_a_clear_state_and_leave_the_others_recording() {
    let dir = TempDir::new("rtsp-bad");
    let broker = Broker::start(&dir.join("broker"));
    let camera = RtspCamera::start();
    let closed = support::free_port();
    let cameras = [
        camera_toml("good", &camera.url(), 2, ""),
        camera_toml("refused", &format!("rtsp://127.0.0.1:{closed}/cam"), 2, ""),
        camera_toml("unauthorized", &format!("rtsp://viewer@127.0.0.1:{}/secure", camera.port + 1), 2, ""),
        camera_toml("missing", &format!("rtsp://127.0.0.1:{}/no-such-stream", camera.port), 2, ""),
        camera_toml("nodevice", "v4l2:///dev/video99", 2, ""),
    ]
    .concat();
    let mut watcher =
        Watcher::connect(broker.port, "watch-bad", true, &["heldar/bad/cameras/+/state", "heldar/bad/events/#"]).await;
    let mut node = Node::configure(&dir.0, "bad", &broker.url(), &cameras);
    node.start(&[]);
    let messages = watcher
        .collect(25 * SECOND, |m| {
            ["refused", "unauthorized", "missing", "nodevice"]
                .iter()
                .all(|c| last_state(m, c).is_some_and(|s| s["state"] == "offline"))
                && node.segments("good").len() >= 3
        })
        .await;
    assert!(node.segments("good").len() >= 3, "the good camera records");
    for (camera, words) in
        [("refused", "Connection refused"), ("unauthorized", "401"), ("missing", "404"), ("nodevice", "/dev/video99")]
    {
        let state = last_state(&messages, camera).unwrap_or_else(|| panic!("no state for {camera}"));
        assert_eq!(state["state"], "offline", "{camera}: {state}");
        let error = state["error"].as_str().unwrap_or_default();
        assert!(error.contains(words), "{camera}: error {error:?} lacks {words:?}");
        let offline: Vec<_> =
            events(&messages, "camera_offline").into_iter().filter(|m| m.json()["camera"] == camera).collect();
        assert_eq!(offline.len(), 1, "{camera}: one camera_offline while retrying");
        assert!(node.log().contains(&format!("camera={camera}")), "{camera} is logged");
    }
}

fn last_state(messages: &[Message], camera: &str) -> Option<serde_json::Value> {
    messages.iter().rev().find(|m| m.topic.ends_with(&format!("/cameras/{camera}/state"))).map(Message::json)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_camera_password_is_spliced_in_and_never_logged() {
    let dir = TempDir::new("rtsp-password");
    let broker = Broker::start(&dir.join("broker"));
    let camera = RtspCamera::start();
    std::fs::write(dir.join("cam.pass"), format!("{}\n", support::RTSP_PASSWORD)).expect("password file");
    let source = format!("rtsp://viewer@127.0.0.1:{}/secure", camera.port + 1);
    let toml = camera_toml("vault", &source, 2, "password_file = \"cam.pass\"\n");
    let mut node = Node::configure(&dir.0, "sec", &broker.url(), &toml);
    node.start(&["--emit-test-events", "0"]);
    support::wait_for(20 * SECOND, "segments from the password-protected camera", || node.segments("vault").len() >= 2);
    // The password stays in the service: no process on the machine but the camera itself
    // (the test server, told its password on its command line) has it in its argv.
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let argv = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let argv = String::from_utf8_lossy(&argv);
        let camera = argv.contains("tests/tools/rtsp_server.py");
        assert!(camera || !argv.contains(support::RTSP_PASSWORD), "the password is in {:?}: {argv}", entry.path());
    }
    node.terminate(15 * SECOND);
    assert!(!node.log().contains(support::RTSP_PASSWORD), "the password leaked into the log:\n{}", node.log());
}

/// A recorder starts at once: launched just after a whole second began, the first segment
/// starts well before the next whole second (the recorder used to wait for it, losing up
/// to a second of every start, because names could repeat within a second); file names
/// carry the run instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorder_starts_at_once_and_runs_never_share_a_file() {
    let dir = TempDir::new("start-at-once");
    let broker = Broker::start(&dir.join("broker"));
    let source = "lavfi:testsrc2=size=160x120:rate=25";
    let mut node = Node::configure(&dir.0, "soon", &broker.url(), &camera_toml("now", source, 2, "sample_fps = 0\n"));
    let now_ms = || heldar_edge::wallclock::UnixMs::now().0;
    // Launch 30..80 ms into a second: waiting for the next whole second would cost ~950 ms.
    while !(30..80).contains(&now_ms().rem_euclid(1000)) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let launched = now_ms();
    node.start(&[]);
    support::wait_for(20 * SECOND, "a first indexed segment", || !node.segments("now").is_empty());
    let first = node.segments("now")[0].clone();
    let delay = first.start_ms - launched;
    eprintln!("launch to the first frame recorded: {delay} ms");
    assert!(delay < 700, "the first segment starts {delay} ms after launch: the recorder waited");
    support::wait_for(20 * SECOND, "3 indexed segments", || node.segments("now").len() >= 3);
    let files: std::collections::BTreeSet<String> = node.segments("now").into_iter().map(|r| r.path).collect();
    assert!(files.iter().all(|f| f.ends_with(".mp4") && f.contains('-')), "{files:?}");
    assert!(node.terminate(15 * SECOND).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deletion_cut_by_a_crash_and_data_a_power_cut_took_back_are_finished_at_start() {
    let dir = TempDir::new("garbage");
    let broker = Broker::start(&dir.join("broker"));
    let source = "lavfi:testsrc2=size=320x240:rate=10";
    let mut node = Node::configure(&dir.0, "gbg", &broker.url(), &camera_toml("gate", source, 2, "sample_fps = 0\n"));
    node.start(&[]);
    support::wait_for(30 * SECOND, "three segments", || node.segments("gate").len() >= 3);
    assert!(node.terminate(20 * SECOND).success());
    let rows = node.segments("gate");
    let (doomed, shrunk) = (&rows[0], &rows[1]);
    // A sweep cut between its two steps: the row moved to `garbage`, the file still there.
    let conn = rusqlite::Connection::open(node.index()).expect("index");
    conn.execute("DELETE FROM segments WHERE path = ?1", [&doomed.path]).expect("row out");
    conn.execute("INSERT INTO garbage (path, camera) VALUES (?1, 'gate')", [&doomed.path]).expect("garbage");
    drop(conn);
    // A power cut that took back the tail of a file its row counted whole.
    let file = std::fs::OpenOptions::new().write(true).open(node.segment_file(shrunk)).expect("open");
    file.set_len(shrunk.bytes as u64 * 2 / 3).expect("truncate");
    drop(file);

    node.start(&[]);
    support::wait_for(30 * SECOND, "reconciliation", || node.log().contains("index and disk reconciled"));
    assert!(!node.segment_file(doomed).exists(), "the garbage file is deleted, not indexed again");
    assert_eq!(node.count("SELECT count(*) FROM garbage"), 0);
    assert!(node.segments("gate").iter().all(|r| r.path != doomed.path));
    let again = node.segments("gate").into_iter().find(|r| r.path == shrunk.path).expect("shrunk file re-indexed");
    let on_disk = std::fs::metadata(node.segment_file(&again)).expect("file").len() as i64;
    assert_eq!(again.bytes, on_disk, "the row follows the disk");
    assert!(again.bytes < shrunk.bytes && again.end_ms < shrunk.end_ms, "{again:?} vs {shrunk:?}");
    assert_eq!(again.start_ms, shrunk.start_ms, "its start is kept");
    assert!(support::plays(&node.segment_file(&again)), "the trimmed segment plays");
    assert!(node.terminate(20 * SECOND).success());
}
