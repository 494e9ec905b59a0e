//! A full disk that also holds the index (a small tmpfs mounted by the test as
//! `data_dir`; the suite runs as root), with all footage locked of a camera
//! on ffmpeg and one on the native RTSP recorder: the storage
//! guard pauses the least important recorder, then the next, each with one
//! event and a retained state that says why; with the disk then filled to
//! the last byte, commands and `unlock` still commit; after `unlock` recording resumes by itself and the floor is
//! kept from the write rate.

mod support;

use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::{Broker, Message, Node, RtspCamera, TempDir, Tmpfs, Watcher};

const SECOND: Duration = Duration::from_secs(1);
const DISK: u64 = 48 << 20;

/// Noise, so the disk fills fast.
const NOISE: &str = "lavfi:testsrc2=size=320x240:rate=15,noise=alls=40:allf=t";

fn camera(id: &str, source: &str) -> String {
    format!("[[camera]]\nid = \"{id}\"\nsource = \"{source}\"\nsegment_s = 2\nsample_fps = 0\n")
}

fn events<'a>(messages: &'a [Message], kind: &str) -> Vec<&'a Message> {
    messages.iter().filter(|m| m.topic.contains("/events/") && m.topic.ends_with(&format!("/{kind}"))).collect()
}

/// Sends an unsigned command and waits for its reply.
async fn command(watcher: &mut Watcher, id: &str, name: &str, args: Value) -> Value {
    let payload = json!({"v": 2, "id": id, "args": args}).to_string();
    let topic = format!("heldar/full/cmd/{name}");
    watcher.client.publish(topic, rumqttc::QoS::AtLeastOnce, false, payload).await.expect("publish");
    let reply = watcher.next_on(&format!("heldar/full/replies/{id}"), 30 * SECOND).await;
    reply.unwrap_or_else(|| panic!("no reply to {name}")).json()
}

/// Writes `path` until the file system is full.
fn fill(path: &std::path::Path) -> std::path::PathBuf {
    use std::io::Write;
    let mut file = std::fs::File::create(path).expect("filler");
    let chunk = vec![1u8; 64 << 10];
    while file.write_all(&chunk).is_ok() {}
    path.to_path_buf()
}

/// From `hours` ago to `hours` days ahead.
fn window(hours: i64) -> Value {
    let now = heldar_edge::wallclock::UnixMs::now().0;
    let at = |ms: i64| heldar_edge::wallclock::UnixMs(ms).to_rfc3339();
    json!({"from": at(now - hours * 3_600_000), "to": at(now + hours * 86_400_000)})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_full_of_locked_footage_pauses_recorders_keeps_the_index_working_and_resumes_after_unlock() {
    let dir = TempDir::new("full-disk");
    let broker = Broker::start(&dir.join("broker"));
    // The default layout: the index and the recordings on one small file system.
    let disk = Tmpfs::mount(&dir.join("data"), &format!("{}", DISK));
    // One camera on ffmpeg, one on the native RTSP recorder.
    let rtsp = RtspCamera::start();
    let toml = format!(
        "\n[storage]\nmin_free_percent = 10\nsweep_interval_s = 600\n\n\
         [commands]\nauth = \"none\"\nallow = [\"lock\", \"unlock\"]\n\n{}{}",
        camera("front", NOISE),
        camera("back", &rtsp.url())
    );
    let mut node = Node::configure(&dir.0, "full", &broker.url(), &toml);
    let filters = ["heldar/full/events/#", "heldar/full/cameras/+/state"];
    let mut watcher = Watcher::connect(broker.port, "watch-full", true, &filters).await;
    let mut operator =
        Watcher::connect(broker.port, "operator-full", true, &["heldar/full/replies/+", "heldar/full/status"]).await;
    node.start(&[]);
    while operator.next_on("heldar/full/status", 30 * SECOND).await.expect("a status").text() != "online" {}
    let locked = command(&mut operator, "lock-1", "lock", window(1)).await;
    assert_eq!(locked["ok"], true, "{locked}");

    // Everything is locked: the disk fills until the guard pauses "back", then "front".
    let started = Instant::now();
    let mut seen = watcher.collect(240 * SECOND, |m| events(m, "recording_paused").len() >= 2).await;
    let paused: Vec<Value> = events(&seen, "recording_paused").iter().map(|m| m.json()).collect();
    assert_eq!(paused.len(), 2, "both recorders paused: {:?}", node.log());
    assert_eq!((paused[0]["camera"].as_str(), paused[1]["camera"].as_str()), (Some("back"), Some("front")));
    assert_eq!(paused[0]["severity"], "critical");
    eprintln!("full disk: both paused after {:.0} s, {} bytes free", started.elapsed().as_secs_f64(), disk.free());
    let state = |seen: &[Message], camera: &str| {
        let topic = format!("heldar/full/cameras/{camera}/state");
        seen.iter().rev().find(|m| m.topic == topic).map(Message::json)
    };
    seen.extend(watcher.collect(5 * SECOND, |_| false).await);
    for camera in ["front", "back"] {
        let state = state(&seen, camera).expect("a state");
        assert_eq!(state["state"], "paused", "{state}");
        assert!(state["reason"].as_str().is_some_and(|r| r.contains("storage full")), "{state}");
    }
    assert_eq!(events(&seen, "storage_pressure").len(), 1, "pressure announced once");

    // Something else fills the disk to the last byte: the index still commits (a command,
    // then the unlock that frees the disk), from the reserve it keeps.
    let filler = fill(&disk.0.join("filler"));
    assert!(disk.free() < 64 << 10, "the disk is full: {} bytes free", disk.free());
    let again = command(&mut operator, "lock-2", "lock", window(1)).await;
    assert_eq!(again["ok"], true, "a lock commits on the full disk: {again}");
    assert!(node.log().contains("the index reserve is released"), "{}", node.log());
    let unlocked = command(&mut operator, "unlock-1", "unlock", window(2)).await;
    assert_eq!(unlocked["ok"], true, "{unlocked}");
    assert_eq!(unlocked["result"]["removed"], 4, "two locks of two cameras: {unlocked}");

    std::fs::remove_file(filler).expect("filler out");
    // Recording resumes by itself, and the floor is then kept from the write rate.
    let resumed_at = Instant::now();
    let more = watcher.collect(60 * SECOND, |m| events(m, "recording_resumed").len() >= 2).await;
    assert_eq!(events(&more, "recording_resumed").len(), 2, "both resumed: {:?}", node.log());
    eprintln!("full disk: resumed {:.1} s after the unlock", resumed_at.elapsed().as_secs_f64());
    let floor = DISK / 10;
    let (mut lowest, watch_from) = (u64::MAX, Instant::now());
    while watch_from.elapsed() < 30 * SECOND {
        lowest = lowest.min(disk.free());
        std::thread::sleep(SECOND / 4);
    }
    eprintln!("full disk: lowest free after resuming {lowest} bytes, floor {floor}");
    assert!(lowest >= floor, "free space fell to {lowest} under the floor {floor}");
    let resumed_rows = node.segments("back").len();
    assert!(resumed_rows > 0);

    // Nothing was lost on the way: every event has its seq, every row its file.
    let all: Vec<Message> = seen.into_iter().chain(more).collect();
    let mut seqs: Vec<i64> =
        all.iter().filter(|m| m.topic.contains("/events/")).map(|m| m.json()["seq"].as_i64().expect("seq")).collect();
    seqs.sort();
    seqs.dedup();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "events without a gap in seq: {seqs:?}");
    let log = node.log();
    for bad in ["not stored", "index transaction failed", "database or disk is full", "not indexed"] {
        assert!(!log.contains(bad), "{bad:?} in the log:\n{log}");
    }
    for camera in ["front", "back"] {
        for row in node.segments(camera) {
            let size = std::fs::metadata(node.segment_file(&row)).map(|m| m.len() as i64).unwrap_or(-1);
            assert!(size >= row.bytes, "{} is {size} bytes on disk, {} indexed", row.path, row.bytes);
        }
    }
    assert!(node.terminate(20 * SECOND).success());
}
