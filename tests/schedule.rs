//! Schedules on the real binary with a synthetic camera: a window that opens
//! and closes the recorder at its edges (a gap with reason `schedule`, a
//! `record` command overriding the schedule for a while), a reload from
//! `continuous` to a schedule and back that restarts the camera only when the
//! mode in force changes, and periodic snapshots: indexed, decodable at the
//! width asked, published retained, exported, and deleted after their
//! `retain_days`. The tests run side by side (about 2–2.5 min in all).

mod support;

use heldar_edge::wallclock::UnixMs;
use serde_json::{Value, json};
use std::time::Duration;
use support::{Broker, Message, Node, TempDir, Watcher};

const SECOND: Duration = Duration::from_secs(1);
const SOURCE: &str = "lavfi:testsrc2=size=320x240:rate=10";

fn camera(id: &str, extra: &str) -> String {
    format!("[[camera]]\nid = \"{id}\"\nsource = \"{SOURCE}\"\nsegment_s = 2\nsample_fps = 0\n{extra}")
}

/// `HH:MM` of `ms` in UTC.
fn hh_mm(ms: i64) -> String {
    let minutes = ms.rem_euclid(86_400_000) / 60_000;
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

/// Sleeps (without blocking the runtime) until the wall clock reaches `ms`.
async fn sleep_until(ms: i64) {
    let left = ms - UnixMs::now().0;
    if left > 0 {
        tokio::time::sleep(Duration::from_millis(left as u64)).await;
    }
}

fn events(messages: &[Message], kind: &str) -> Vec<Value> {
    messages.iter().filter(|m| m.topic.ends_with(&format!("/events/gate/{kind}"))).map(Message::json).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_starts_and_stops_the_recorder_at_its_edges() {
    let dir = TempDir::new("schedule-window");
    let broker = Broker::start(&dir.join("broker"));
    // The next minute boundary at least 20 s ahead, open for one minute.
    let open = (UnixMs::now().0 + 20_000 + 59_999) / 60_000 * 60_000;
    let close = open + 60_000;
    let schedule = format!(
        "record = \"off\"\n[[camera.schedule]]\nfrom = \"{}\"\nto = \"{}\"\nrecord = \"continuous\"\n",
        hh_mm(open),
        hh_mm(close)
    );
    let mut node = Node::configure(&dir.0, "sched", &broker.url(), "");
    let commands = "[commands]\nauth = \"none\"\nallow = [\"record\"]\n\n";
    write_config(&node, "sched", &broker.url(), &format!("{commands}{}", camera("gate", &schedule)));
    let mut watcher = Watcher::connect(broker.port, "schedule-window", true, &["heldar/sched/#"]).await;
    node.start(&[]);
    sleep_until(close + 3000).await;
    let during = node.segments("gate");
    // A command overrides the schedule for 6 s, then the schedule (off) is back.
    let commanded = UnixMs::now().0;
    let request = json!({"v": 2, "id": "on-6s", "args": {"camera": "gate", "mode": "on", "duration_s": 6}});
    watcher
        .client
        .publish("heldar/sched/cmd/record", rumqttc::QoS::AtLeastOnce, false, request.to_string())
        .await
        .expect("publish");
    sleep_until(commanded + 14_000).await;
    let messages = watcher.collect(Duration::from_millis(200), |_| false).await;
    node.terminate(10 * SECOND);
    let segments = node.segments("gate");

    assert!(!during.is_empty(), "nothing recorded in the window; log:\n{}", node.log());
    let first = &during[0];
    let last = during.last().expect("a segment");
    assert!(
        (open - 1000..open + 1000).contains(&first.start_ms),
        "first segment at {} for a window opening at {open}",
        first.start_ms
    );
    assert!(
        (close - 1000..close + 1000).contains(&last.end_ms),
        "last segment ends at {} for a window closing at {close}",
        last.end_ms
    );
    for pair in during.windows(2) {
        assert!(pair[1].start_ms - pair[0].end_ms < 1000, "a hole inside the window: {pair:?}");
    }
    // ffmpeg may open one more segment in the moment it takes to stop at the close.
    let (tail, after): (Vec<_>, Vec<_>) =
        segments.iter().filter(|s| s.start_ms >= close).partition(|s| s.start_ms < close + 1000);
    for s in &tail {
        assert!(s.end_ms < close + 1000, "recorded on past the window's close: {s:?}");
    }
    assert!(!after.is_empty(), "the record command recorded nothing");
    for s in &after {
        assert!(s.start_ms >= commanded, "a segment after the close and before the command: {s:?}");
        assert!(s.end_ms <= commanded + 8000, "recorded past the override's 6 s: {s:?}");
    }
    let gaps = events(&messages, "recording_gap");
    let scheduled: Vec<&Value> = gaps.iter().filter(|g| g["reason"] == "schedule").collect();
    assert_eq!(scheduled.len(), 2, "gaps before the window and between its close and the command: {gaps:?}");
    let closed = UnixMs::parse_rfc3339(scheduled[1]["from"].as_str().unwrap_or_default()).expect("from");
    assert_eq!(closed.0, last.end_ms, "the second gap starts at the window's last segment");

    let states: Vec<Value> =
        messages.iter().filter(|m| m.topic == "heldar/sched/cameras/gate/state").map(Message::json).collect();
    let window_words = format!("daily {}–{} continuous", hh_mm(open), hh_mm(close));
    let inside = states.iter().find(|s| s["schedule"] == window_words.as_str()).expect("a state naming the window");
    assert_eq!(inside["record"], "continuous");
    assert_eq!(inside["next_change"], json!({"at": UnixMs(close).to_rfc3339(), "record": "off"}));
    let commanded_state = states.iter().find(|s| s["record"] == "continuous" && s["schedule"].is_null());
    assert!(commanded_state.is_some_and(|s| s["next_change"]["record"] == "off"), "the override's state: {states:?}");
    let last_state = states.last().expect("states");
    assert_eq!((&last_state["state"], &last_state["record"]), (&json!("disabled"), &json!("off")));
    support::assert_schema("camera-state.json", &states);
    support::assert_schema("event.json", &gaps);
}

/// Writes `node`'s config: node `id` in UTC on the broker at `url`, then `rest`.
fn write_config(node: &Node, id: &str, url: &str, rest: &str) {
    let config = format!(
        "[node]\nid = \"{id}\"\ndata_dir = \"data\"\ntimezone = \"UTC\"\n\n[mqtt]\nurl = \"{url}\"\nstats_interval_s = 1\n\n{rest}"
    );
    std::fs::write(&node.config, config).expect("config");
}

/// How often `camera`'s recorder was started, per its log.
fn recorder_starts(node: &Node) -> usize {
    node.log().lines().filter(|l| l.contains("starting recorder") && l.contains("gate")).count()
}

async fn state_after(watcher: &mut Watcher, wait: Duration) -> Value {
    let messages = watcher.collect(wait, |_| false).await;
    let state = messages.iter().rev().find(|m| m.topic == "heldar/reload/cameras/gate/state");
    state.map(Message::json).unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_restarts_a_camera_only_when_its_mode_in_force_changes() {
    let dir = TempDir::new("schedule-reload");
    let broker = Broker::start(&dir.join("broker"));
    let mut node = Node::configure(&dir.0, "reload", &broker.url(), "");
    let url = broker.url();
    let write_camera = |node: &Node, lines: &str| write_config(node, "reload", &url, &camera("gate", lines));
    write_camera(&node, "record = \"continuous\"\n");
    let mut watcher = Watcher::connect(broker.port, "schedule-reload", true, &["heldar/reload/cameras/#"]).await;
    node.start(&[]);
    support::wait_for(20 * SECOND, "the first segment", || !node.segments("gate").is_empty());
    let before = state_after(&mut watcher, 2 * SECOND).await;
    assert_eq!((&before["state"], &before["record"]), (&json!("recording"), &json!("continuous")));

    // The same mode by a schedule: a window all day, `off` outside it.
    write_camera(&node, "record = \"off\"\n[[camera.schedule]]\nfrom = \"00:00\"\nto = \"24:00\"\n");
    support::signal_pid(node.pid(), "HUP");
    let same = state_after(&mut watcher, 4 * SECOND).await;
    assert_eq!(same["schedule"], "daily all day continuous", "{same}");
    assert_eq!((&same["state"], &same["since"]), (&json!("recording"), &before["since"]), "the recorder was touched");
    assert_eq!(recorder_starts(&node), 1, "restarted for a reload that kept its mode");

    // A window that is not open now: the schedule turns it off.
    let later = UnixMs::now().0 + 3 * 3_600_000;
    let shut = format!(
        "record = \"off\"\n[[camera.schedule]]\nfrom = \"{}\"\nto = \"{}\"\n",
        hh_mm(later),
        hh_mm(later + 3_600_000)
    );
    write_camera(&node, &shut);
    support::signal_pid(node.pid(), "HUP");
    let off = state_after(&mut watcher, 4 * SECOND).await;
    assert_eq!((&off["state"], &off["record"]), (&json!("disabled"), &json!("off")), "{off}");
    assert_eq!(off["next_change"]["record"], "continuous");

    // Back to continuous without a schedule: started again, once.
    write_camera(&node, "record = \"continuous\"\n");
    support::signal_pid(node.pid(), "HUP");
    support::wait_for(20 * SECOND, "recording again", || recorder_starts(&node) == 2);
    let back = state_after(&mut watcher, 5 * SECOND).await;
    assert_eq!(
        (&back["state"], &back["schedule"], &back["next_change"]),
        (&json!("recording"), &Value::Null, &Value::Null)
    );
    node.terminate(10 * SECOND);
    assert_eq!(recorder_starts(&node), 2, "one start at the beginning, one after the schedule's off");
}

/// The snapshot rows of `camera`: (path, ts_ms, width, height).
fn stills(node: &Node, camera: &str) -> Vec<(String, i64, i64, i64)> {
    let Ok(conn) = rusqlite::Connection::open_with_flags(node.index(), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
    else {
        return Vec::new();
    };
    conn.busy_timeout(2 * SECOND).expect("busy timeout");
    let Ok(mut stmt) =
        conn.prepare("SELECT path, ts_ms, width, height FROM snapshots WHERE camera = ?1 ORDER BY ts_ms")
    else {
        return Vec::new();
    };
    stmt.query_map([camera], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .map(|rows| rows.filter_map(Result::ok).collect())
        .unwrap_or_default()
}

/// Width and height of an image file per ffprobe.
fn probe_size(file: &std::path::Path) -> Option<(i64, i64)> {
    let out = std::process::Command::new(support::system_binary("ffprobe", "ffmpeg"))
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries", "stream=width,height", "-of", "csv=p=0"])
        .arg(file)
        .output()
        .expect("ffprobe");
    let text = String::from_utf8_lossy(&out.stdout);
    let (w, h) = text.trim().split_once(',')?;
    Some((w.parse().ok()?, h.parse().ok()?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_on_a_schedule_are_indexed_published_exported_and_aged_out() {
    let dir = TempDir::new("schedule-stills");
    let broker = Broker::start(&dir.join("broker"));
    let node = Node::configure(&dir.0, "stills", &broker.url(), "");
    let shots = "[[camera.snapshot_schedule]]\nevery_s = 10\nwidth = 160\nretain_days = 1\n";
    // One camera records (its snapshots come from the segment it writes), one does not
    // (they come straight from its source).
    let cameras = format!(
        "{}\n{}",
        camera("yard", &format!("record = \"continuous\"\n{shots}")),
        camera("gate", &format!("record = \"off\"\n{shots}"))
    );
    write_config(&node, "stills", &broker.url(), &cameras);
    let mut node = node;
    let mut watcher = Watcher::connect(broker.port, "schedule-stills", true, &["heldar/stills/snapshots/#"]).await;
    let started = UnixMs::now().0;
    node.start(&[]);
    // Stopped just after both cameras' third snapshot is out, ~9 s before the next is due: a
    // snapshot taken while the node stops would be kept but never published.
    let on = |m: &[Message], id: &str| m.iter().filter(|m| m.topic == format!("heldar/stills/snapshots/{id}")).count();
    let published = watcher.collect(45 * SECOND, |m| on(m, "yard") >= 3 && on(m, "gate") >= 3).await;
    node.terminate(10 * SECOND);

    for id in ["yard", "gate"] {
        let rows = stills(&node, id);
        assert!(rows.len() >= 3, "{id}: {} snapshots kept; log:\n{}", rows.len(), node.log());
        for (path, ts, width, height) in &rows {
            assert_eq!((*width, *height), (160, 120), "{id}: {path}");
            assert!(*ts >= started, "{path} older than the node");
            let file = dir.join("data").join(path);
            assert_eq!(probe_size(&file), Some((160, 120)), "{} does not decode at 160x120", file.display());
        }
        for pair in rows.windows(2) {
            assert!((9_000..11_500).contains(&(pair[1].1 - pair[0].1)), "{id}: not 10 s apart: {pair:?}");
        }
        let on_topic: Vec<&Message> =
            published.iter().filter(|m| m.topic == format!("heldar/stills/snapshots/{id}")).collect();
        assert!(on_topic.len() >= rows.len(), "{id}: {} published for {} kept", on_topic.len(), rows.len());
        assert!(on_topic.iter().all(|m| heldar_edge::sampler::jpeg::dimensions(&m.payload) == Some((160, 120))));
    }
    // The latest is retained: a new subscriber gets it at once.
    let mut late = Watcher::connect(broker.port, "schedule-stills-late", true, &["heldar/stills/snapshots/gate"]).await;
    let retained = late.next_on("heldar/stills/snapshots/gate", 5 * SECOND).await.expect("a retained snapshot");
    assert!(retained.retain, "the snapshot was not retained");

    // Exported with a window: the files and the manifest's list.
    let archive = dir.join("stills.tar");
    let (from, to) = (UnixMs(started - 1000).to_rfc3339(), UnixMs::now().to_rfc3339());
    let export = std::process::Command::new(env!("CARGO_BIN_EXE_heldar-edge"))
        .args(["export", "--camera", "gate", "--from", &from, "--to", &to, "--out"])
        .arg(&archive)
        .arg("-c")
        .arg(&node.config)
        .output()
        .expect("export");
    assert!(export.status.success(), "export: {}", String::from_utf8_lossy(&export.stderr));
    let listed = std::process::Command::new("tar").arg("-tf").arg(&archive).output().expect("tar");
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    let gate = stills(&node, "gate");
    for (path, ..) in &gate {
        assert!(listed.lines().any(|l| l == path), "{path} not in the archive:\n{listed}");
    }
    let manifest =
        std::process::Command::new("tar").arg("-xOf").arg(&archive).arg("manifest.json").output().expect("tar");
    let manifest: Value = serde_json::from_slice(&manifest.stdout).expect("manifest");
    assert_eq!(manifest["snapshots"].as_array().map(Vec::len), Some(gate.len()), "{manifest}");
    assert_eq!(manifest["files"].as_array().map(Vec::len), Some(0), "gate records nothing");

    // Two days later (the rows made older), retention deletes them: rows and files.
    let conn = rusqlite::Connection::open(node.index()).expect("index");
    conn.execute("UPDATE snapshots SET ts_ms = ts_ms - 2 * 86400000", []).expect("age");
    drop(conn);
    let files: Vec<std::path::PathBuf> = ["yard", "gate"]
        .iter()
        .flat_map(|id| stills(&node, id))
        .map(|(path, ..)| dir.join("data").join(path))
        .collect();
    node.start(&[]);
    support::wait_for(20 * SECOND, "aged snapshots deleted", || {
        stills(&node, "yard").iter().chain(stills(&node, "gate").iter()).all(|(_, ts, ..)| *ts > started)
    });
    node.terminate(10 * SECOND);
    assert!(files.iter().all(|f| !f.exists()), "aged snapshot files left");
    assert_eq!(node.count("SELECT count(*) FROM garbage"), 0, "garbage rows left");
}
