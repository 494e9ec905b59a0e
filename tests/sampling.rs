//! Frames for workers and detections back, over a real mosquitto with real
//! ffmpeg: frames only while a worker is online, at the planned rate, as
//! valid JPEG with valid headers; malformed detections are refused on
//! `P/errors` with their reason and counted; good ones are accepted once.

mod support;

use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::{Broker, Message, Node, RtspCamera, TempDir, Watcher};

const SECOND: Duration = Duration::from_secs(1);

fn header(message: &Message) -> (Value, &[u8]) {
    let newline = message.payload.iter().position(|b| *b == b'\n').expect("header line");
    let header: Value = serde_json::from_slice(&message.payload[..newline]).expect("header JSON");
    (header, &message.payload[newline + 1..])
}

async fn announce(watcher: &Watcher, node: &str, worker: &str, status: Value) {
    watcher
        .client
        .publish(format!("heldar/{node}/workers/{worker}/status"), rumqttc::QoS::AtLeastOnce, true, status.to_string())
        .await
        .expect("status");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_flow_only_while_a_worker_is_online_at_the_planned_rate() {
    let dir = TempDir::new("sampling-rate");
    let broker = Broker::start(&dir.join("broker"));
    let camera = RtspCamera::start();
    let toml = format!(
        "\n[[camera]]\nid = \"door\"\nsource = \"{}\"\nsegment_s = 4\nsample_fps = 2\nsample_width = 160\n",
        camera.url()
    );
    let mut node = Node::configure(&dir.0, "smp", &broker.url(), &toml);
    let mut watcher =
        Watcher::connect(broker.port, "watch-frames", true, &["heldar/smp/frames/+", "heldar/smp/tasks"]).await;
    node.start(&[]);
    support::wait_for(20 * SECOND, "recording", || !node.segments("door").is_empty());
    let before = watcher.collect(3 * SECOND, |_| false).await;
    assert!(before.iter().all(|m| !m.topic.contains("/frames/")), "no frames while no worker is online");
    let tasks = before.iter().rev().find(|m| m.topic.ends_with("/tasks")).expect("P/tasks").json();
    assert_eq!(tasks["cameras"][0], json!({"camera": "door", "fps": 2.0, "width": 160, "height": 120}), "{tasks}");

    announce(&watcher, "smp", "w1", json!({"v": 1, "state": "online", "max_fps": 10})).await;
    let first = watcher.next_on("heldar/smp/frames/door", 15 * SECOND).await.expect("frames once a worker is online");
    let started = Instant::now();
    let frames = watcher.collect(20 * SECOND, |_| false).await;
    let elapsed = started.elapsed().as_secs_f64();
    let frames: Vec<&Message> = frames.iter().filter(|m| m.topic.ends_with("/frames/door")).collect();
    let rate = frames.len() as f64 / elapsed;
    assert!((1.6..=2.4).contains(&rate), "{} frames in {elapsed:.1} s = {rate:.2} fps, planned 2", frames.len());

    let mut last_seq = header(&first).0["seq"].as_u64().expect("seq");
    let mut last_ts = 0;
    let sample = dir.join("frame.jpg");
    for message in &frames {
        let (h, jpeg) = header(message);
        assert_eq!(h["v"], 1);
        assert_eq!(h["camera"], "door");
        assert_eq!(h["format"], "jpeg");
        assert_eq!((h["width"].as_u64(), h["height"].as_u64()), (Some(160), Some(120)), "{h}");
        let seq = h["seq"].as_u64().expect("seq");
        assert_eq!(seq, last_seq + 1, "seq increases by one");
        last_seq = seq;
        let ts = heldar_edge::wallclock::UnixMs::parse_rfc3339(h["ts"].as_str().expect("ts")).expect("RFC 3339").0;
        assert!(ts > last_ts, "ts increases");
        last_ts = ts;
        assert!(jpeg.starts_with(&[0xFF, 0xD8]) && jpeg.ends_with(&[0xFF, 0xD9]), "a whole JPEG");
    }
    std::fs::write(&sample, header(frames[frames.len() / 2]).1).expect("write");
    assert!(support::plays(&sample), "the JPEG decodes");

    announce(&watcher, "smp", "w1", json!({"v": 1, "state": "offline"})).await;
    let stopped = Instant::now();
    let mut tail = watcher.collect(4 * SECOND, |_| false).await;
    tail.retain(|m| m.topic.contains("/frames/"));
    let last_after = tail.len();
    assert!(last_after <= 3, "frames stop within a second of the last worker leaving: {last_after} more");
    assert!(stopped.elapsed() >= 3 * SECOND);
    let _ = node.terminate(15 * SECOND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_detections_are_refused_with_a_reason_and_good_ones_accepted_once() {
    let dir = TempDir::new("sampling-detections");
    let broker = Broker::start(&dir.join("broker"));
    let toml = "\n[[camera]]\nid = \"lab\"\nsource = \"lavfi:testsrc2=size=320x240:rate=10\"\nsegment_s = 4\nsample_fps = 2\nsample_width = 160\n";
    let mut node = Node::configure(&dir.0, "det", &broker.url(), toml);
    let mut watcher = Watcher::connect(
        broker.port,
        "watch-det",
        true,
        &["heldar/det/frames/+", "heldar/det/errors", "heldar/det/stats", "heldar/det/events/#"],
    )
    .await;
    node.start(&[]);
    announce(&watcher, "det", "w9", json!({"v": 1, "state": "online"})).await;
    let frame = watcher.next_on("heldar/det/frames/lab", 20 * SECOND).await.expect("a frame");
    let (h, _) = header(&frame);
    let (seq, ts) = (h["seq"].as_u64().expect("seq"), h["ts"].as_str().expect("ts").to_string());
    let good = json!({"v": 1, "worker": "w9", "camera": "lab", "seq": seq, "ts": ts,
        "detections": [{"label": "person", "confidence": 0.8, "bbox": [0.1, 0.1, 0.2, 0.3], "track_id": "a"}]});
    let with = |path: &str, value: Value| {
        let mut message = good.clone();
        let mut target = &mut message;
        let parts: Vec<&str> = path.split('.').collect();
        for part in &parts[..parts.len() - 1] {
            target = match part.parse::<usize>() {
                Ok(i) => &mut target[i],
                Err(_) => &mut target[*part],
            };
        }
        target[parts[parts.len() - 1]] = value;
        message.to_string().into_bytes()
    };
    // Over the board's max_message_bytes (64 KiB), under the broker's packet limit.
    let huge = format!(r#"{{"v":1,"pad":"{}"}}"#, "x".repeat(100 << 10)).into_bytes();
    let nan =
        String::from_utf8(with("detections.0.confidence", json!(0.123456))).expect("utf8").replace("0.123456", "NaN");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("lab", b"{not json".to_vec(), "bad_json"),
        ("lab", with("v", json!(2)), "bad_version"),
        ("nope", good.to_string().into_bytes(), "unknown_camera"),
        ("lab", nan.into_bytes(), "not_finite"),
        ("lab", with("detections.0.bbox", json!([0.9, 0.1, 0.3, 0.3])), "bad_bbox"),
        ("lab", huge, "too_large"),
        ("lab", with("seq", json!(seq + 100_000)), "unknown_seq"),
        ("lab", with("ts", json!("2020-01-01T00:00:00.000Z")), "ts_mismatch"),
    ];
    for (camera, payload, _) in &cases {
        watcher
            .client
            .publish(format!("heldar/det/detections/{camera}"), rumqttc::QoS::AtLeastOnce, false, payload.clone())
            .await
            .expect("publish");
    }
    let errors = watcher
        .collect(15 * SECOND, |m| m.iter().filter(|m| m.topic.ends_with("/errors")).count() >= cases.len())
        .await;
    let errors: Vec<Value> = errors.iter().filter(|m| m.topic.ends_with("/errors")).map(Message::json).collect();
    for (camera, _, reason) in &cases {
        let found = errors.iter().find(|e| e["error"].as_str().is_some_and(|t| t.starts_with(&format!("{reason}:"))));
        let error = found.unwrap_or_else(|| panic!("no {reason} on P/errors: {errors:?}"));
        assert_eq!(error["v"], 1);
        assert_eq!(error["topic"], format!("heldar/det/detections/{camera}"));
    }
    assert!(errors.iter().any(|e| e["worker"] == "w9"), "errors name the worker when readable");

    for _ in 0..3 {
        watcher
            .client
            .publish("heldar/det/detections/lab", rumqttc::QoS::AtLeastOnce, false, good.to_string())
            .await
            .expect("publish");
    }
    let stats = watcher
        .collect(10 * SECOND, |m| {
            m.iter().any(|m| {
                m.topic.ends_with("/stats")
                    && m.json()["detections"]["accepted"] == 1
                    && m.json()["detections"]["repeats"] == 2
            })
        })
        .await;
    let stats = stats.iter().rev().find(|m| m.topic.ends_with("/stats")).expect("stats").json();
    assert_eq!(stats["detections"]["accepted"], 1, "{stats}");
    assert_eq!(stats["detections"]["repeats"], 2, "repeats of (camera, seq, worker) are ignored: {stats}");
    assert_eq!(stats["detections"]["latest"]["lab"]["labels"], json!(["person"]));
    for (_, _, reason) in &cases {
        assert!(stats["rejects"][*reason].as_u64().unwrap_or(0) >= 1, "{reason} counted: {stats}");
    }
    assert_eq!(stats["workers"]["online"], 1);
    let events = watcher.collect(SECOND, |_| false).await;
    let _ = events;
    assert!(node.log().contains("worker status"), "{}", node.log());
    let status = node.terminate(15 * SECOND);
    assert!(status.success(), "the service survived every bad message");
    let segments = node.segments("lab");
    assert!(!segments.is_empty());
    for row in &segments {
        assert!(
            support::plays(&node.segment_file(row)),
            "{} plays (encoded, recorded next to the sampler stream)",
            row.path
        );
    }
}
