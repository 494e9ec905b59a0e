//! Analysis independent of recording, with a real mosquitto and ffmpeg, on
//! the ffmpeg path (a lavfi camera) and the native one (an RTSP camera): a
//! camera that does not record still gives workers frames and its zones
//! events; turning recording off by command keeps the frames; a slow rate
//! decodes key frames only, a fast one frames at their own times; a camera's
//! sub-stream feeds its frames, and a hardware decoder that fails falls back
//! to software.

mod support;

use heldar_edge::wallclock::UnixMs;
use serde_json::{Value, json};
use std::time::Duration;
use support::{Broker, Message, Node, RtspCamera, TempDir, Watcher};

const SECOND: Duration = Duration::from_secs(1);

/// A lavfi camera at 10 fps: the board's encoder makes a key frame every 2 s.
const LAVFI: &str = "lavfi:testsrc2=size=320x240:rate=10";

/// An RTSP camera like `LAVFI` (10 fps, a key frame every 2 s), for the native recorder.
fn rtsp_camera() -> RtspCamera {
    RtspCamera::start_options("320x240", false, &["--fps", "10", "--gop", "20"])
}

fn camera(id: &str, source: &str, lines: &str) -> String {
    format!("\n[[camera]]\nid = \"{id}\"\nsource = \"{source}\"\nsegment_s = 4\nsample_width = 160\n{lines}")
}

fn header(message: &Message) -> Value {
    let newline = message.payload.iter().position(|b| *b == b'\n').expect("header line");
    serde_json::from_slice(&message.payload[..newline]).expect("header JSON")
}

fn frame_times(messages: &[Message], camera: &str) -> Vec<i64> {
    let topic = format!("/frames/{camera}");
    messages
        .iter()
        .filter(|m| m.topic.ends_with(&topic))
        .map(|m| UnixMs::parse_rfc3339(header(m)["ts"].as_str().expect("ts")).expect("RFC 3339").0)
        .collect()
}

async fn publish(watcher: &Watcher, topic: &str, payload: Value) {
    watcher.client.publish(topic, rumqttc::QoS::AtLeastOnce, true, payload.to_string()).await.expect("publish");
}

fn last_state(messages: &[Message], camera: &str) -> Value {
    let topic = format!("/cameras/{camera}/state");
    messages.iter().rev().find(|m| m.topic.ends_with(&topic)).map(Message::json).unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_camera_that_does_not_record_gives_frames_and_zone_events_and_refuses_locks() {
    privacy_camera(LAVFI, "analysis-privacy").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_native_camera_that_does_not_record_gives_frames_and_zone_events() {
    let rtsp = rtsp_camera();
    privacy_camera(&rtsp.url(), "analysis-privacy-native").await;
}

async fn privacy_camera(source: &str, name: &str) {
    let dir = TempDir::new(name);
    let broker = Broker::start(&dir.join("broker"));
    let zone = "[[camera.zone]]\nid = \"hall\"\npolygon = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]\n\
                labels = [\"person\"]\ninertia = 1\n";
    let toml = format!(
        "\n[commands]\nauth = \"none\"\nallow = [\"lock\"]\n{}",
        camera("privacy", source, &format!("record = \"off\"\nsample_fps = 2\n\n{zone}"))
    );
    let mut node = Node::configure(&dir.0, "priv", &broker.url(), &toml);
    let mut watcher = Watcher::connect(broker.port, "watch-privacy", true, &["heldar/priv/#"]).await;
    node.start(&[]);
    publish(&watcher, "heldar/priv/workers/counter/status", json!({"v": 1, "state": "online", "max_fps": 10})).await;
    let first = watcher.next_on("heldar/priv/frames/privacy", 20 * SECOND).await.expect("frames without recording");
    let mut seen = watcher.collect(10 * SECOND, |_| false).await;
    let times = frame_times(&seen, "privacy");
    let rate = times.len() as f64 / 10.0;
    assert!((1.5..=2.5).contains(&rate), "{} frames in 10 s for 2 fps asked", times.len());

    let frame = header(&first);
    let detections = json!({"v": 1, "worker": "counter", "camera": "privacy", "seq": frame["seq"], "ts": frame["ts"],
        "detections": [{"label": "person", "confidence": 0.9, "bbox": [0.4, 0.3, 0.1, 0.3], "track_id": "p1"}]});
    watcher
        .client
        .publish("heldar/priv/detections/privacy", rumqttc::QoS::AtLeastOnce, false, detections.to_string())
        .await
        .expect("detections");
    seen.extend(watcher.collect(10 * SECOND, |m| m.iter().any(|m| m.topic.ends_with("/zone_enter"))).await);
    let enter = seen.iter().find(|m| m.topic == "heldar/priv/events/privacy/zone_enter").expect("a zone event");
    assert_eq!(enter.json()["zone"], "hall");

    let lock = json!({"v": 2, "id": "lock-1", "args": {"cameras": ["privacy"],
        "from": UnixMs(UnixMs::now().0 - 60_000).to_rfc3339(), "to": UnixMs::now().to_rfc3339()}});
    watcher
        .client
        .publish("heldar/priv/cmd/lock", rumqttc::QoS::AtLeastOnce, false, lock.to_string())
        .await
        .expect("lock");
    let reply = watcher.next_on("heldar/priv/replies/lock-1", 10 * SECOND).await.expect("a reply").json();
    assert_eq!(reply["ok"], false, "{reply}");
    assert_eq!(reply["error"]["code"], "bad_request", "{reply}");
    assert!(reply["error"]["message"].as_str().is_some_and(|m| m.contains("does not record")), "{reply}");

    let mut states = Watcher::connect(broker.port, "privacy-state", true, &["heldar/priv/cameras/+/state"]).await;
    let state = states.next_on("heldar/priv/cameras/privacy/state", 5 * SECOND).await.expect("retained state").json();
    assert_eq!((&state["state"], &state["sampled"]), (&json!("disabled"), &json!(true)), "{state}");
    node.terminate(15 * SECOND);
    assert!(node.segments("privacy").is_empty(), "a camera with record = \"off\" wrote segments");
    let written = walk(&dir.join("node/data/recordings"));
    assert!(written.iter().all(|p| p.extension().is_none_or(|e| e != "mp4")), "files written: {written:?}");
    assert_eq!(node.count("SELECT COUNT(*) FROM evidence_locks"), 0);
    support::assert_schema("camera-state.json", &[state]);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(walk(&path));
        } else {
            found.push(path);
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recording_off_keeps_frames_and_slow_rates_decode_key_frames_only() {
    key_frames_and_record_off(LAVFI, "analysis-keyframes").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_recording_off_keeps_frames_and_slow_rates_decode_key_frames_only() {
    let rtsp = rtsp_camera();
    key_frames_and_record_off(&rtsp.url(), "analysis-keyframes-native").await;
}

async fn key_frames_and_record_off(source: &str, name: &str) {
    let dir = TempDir::new(name);
    let broker = Broker::start(&dir.join("broker"));
    let toml = format!(
        "\n[commands]\nauth = \"none\"\nallow = [\"record\"]\n{}{}",
        camera("slow", source, "sample_fps = 0.5\n"),
        camera("fast", source, "sample_fps = 5\n")
    );
    let mut node = Node::configure(&dir.0, "kf", &broker.url(), &toml);
    let mut watcher = Watcher::connect(broker.port, "watch-kf", true, &["heldar/kf/#"]).await;
    node.start(&[]);
    publish(&watcher, "heldar/kf/workers/w/status", json!({"v": 1, "state": "online", "max_fps": 10})).await;
    support::wait_for(30 * SECOND, "key frames only for the slow camera", || {
        node.log().lines().any(|l| l.contains("sampler decoding") && l.contains("slow") && l.contains("KeyFrames"))
    });
    let seen = watcher.collect(14 * SECOND, |_| false).await;
    let slow = frame_times(&seen, "slow");
    assert!(slow.len() >= 5, "slow frames: {slow:?}");
    // The decoder that started before the key-frame interval was known may give the first.
    for pair in slow[1..].windows(2) {
        assert!((1900..=2100).contains(&(pair[1] - pair[0])), "key frames 2 s apart: {slow:?}");
    }
    let fast = frame_times(&seen, "fast");
    assert!(fast.len() >= 50, "fast frames: {}", fast.len());
    for pair in fast.windows(2) {
        assert!((150..=250).contains(&(pair[1] - pair[0])), "frames 0.2 s apart: {fast:?}");
    }

    let off = json!({"v": 2, "id": "off-1", "args": {"camera": "fast", "mode": "off"}});
    watcher
        .client
        .publish("heldar/kf/cmd/record", rumqttc::QoS::AtLeastOnce, false, off.to_string())
        .await
        .expect("off");
    let mut seen = watcher.collect(10 * SECOND, |m| last_state(m, "fast")["state"] == "disabled").await;
    let stopped = UnixMs::now().0;
    seen.extend(watcher.collect(8 * SECOND, |_| false).await);
    let after: Vec<i64> = frame_times(&seen, "fast").into_iter().filter(|ts| *ts > stopped + 2000).collect();
    assert!(after.len() >= 20, "frames after recording stopped: {}", after.len());
    assert_eq!(last_state(&seen, "fast")["sampled"], true);
    node.terminate(15 * SECOND);
    let late: Vec<_> = node.segments("fast").into_iter().filter(|s| s.start_ms > stopped).collect();
    assert!(late.is_empty(), "segments after recording was turned off: {late:?}");
    assert!(!node.segments("slow").is_empty(), "the slow camera records");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_come_from_the_sample_source_while_the_camera_records_its_main_stream() {
    let dir = TempDir::new("analysis-substream");
    let broker = Broker::start(&dir.join("broker"));
    // The main stream is 4:3, the sub-stream 16:9: the frames' size says which one they come from.
    let toml = "\n[[camera]]\nid = \"door\"\nsource = \"lavfi:testsrc2=size=640x480:rate=10\"\n\
                sample_source = \"lavfi:testsrc2=size=320x180:rate=10\"\nsegment_s = 4\nsample_fps = 2\nsample_width = 160\n";
    let mut node = Node::configure(&dir.0, "sub", &broker.url(), toml);
    // A board naming a hardware decoder this machine does not have: the camera falls back to
    // software.
    let board = dir.join("board.toml");
    let generic = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/board/generic.toml")).expect("board");
    std::fs::write(&board, format!("{generic}h264_decoder = \"h264_v4l2m2m\"\n")).expect("board file");
    let config = std::fs::read_to_string(&node.config).expect("config");
    let config = config.replacen("[node]\n", &format!("[node]\nboard = {:?}\n", board.display().to_string()), 1);
    std::fs::write(&node.config, config).expect("config");
    let mut watcher = Watcher::connect(broker.port, "watch-sub", true, &["heldar/sub/frames/+"]).await;
    node.start(&[]);
    publish(&watcher, "heldar/sub/workers/w/status", json!({"v": 1, "state": "online", "max_fps": 10})).await;
    let first = watcher.next_on("heldar/sub/frames/door", 20 * SECOND).await.expect("frames from the sub-stream");
    let frames = watcher.collect(6 * SECOND, |_| false).await;
    assert!(frames.len() >= 8, "{} frames in 6 s for 2 fps asked", frames.len());
    for frame in std::iter::once(&first).chain(&frames) {
        let h = header(frame);
        assert_eq!((h["width"].as_u64(), h["height"].as_u64()), (Some(160), Some(90)), "{h}");
    }
    assert!(node.log().contains("hardware decoder gave no frame: decoding in software"), "{}", node.log());
    support::wait_for(20 * SECOND, "the main stream recorded", || !node.segments("door").is_empty());
    let segment = node.segments("door").remove(0);
    assert_eq!((segment.width, segment.height), (Some(640), Some(480)));
    node.terminate(15 * SECOND);
}
