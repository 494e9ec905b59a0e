//! Zones end to end over a real mosquitto: a scripted worker answers the
//! node's frames with a person walking through a zone and across a line;
//! the node publishes the zone events with their fields and contiguous seq,
//! keeps the occupancy topics, and records evidence locks in the index.

mod support;

use serde_json::{Value, json};
use std::time::Duration;
use support::{Broker, Message, Node, TempDir, Watcher};

const SECOND: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_walk_through_a_zone_and_across_a_line_gives_events_occupancy_and_locks() {
    let dir = TempDir::new("zones");
    let broker = Broker::start(&dir.join("broker"));
    let toml = "\n[events]\npre_roll_s = 5\npost_roll_s = 7\n\n[[camera]]\nid = \"lab\"\n\
                source = \"lavfi:testsrc2=size=320x240:rate=10\"\nsegment_s = 4\nsample_fps = 4\nsample_width = 160\n\n\
                [[camera.zone]]\nid = \"yard\"\npolygon = [[0.2, 0.2], [0.6, 0.2], [0.6, 0.6], [0.2, 0.6]]\n\
                labels = [\"person\"]\ninertia = 2\nlock = true\n\n\
                [[camera.zone]]\nid = \"gate\"\nline = [[0.7, 0.1], [0.7, 0.9]]\ninertia = 2\n";
    let mut node = Node::configure(&dir.0, "zn", &broker.url(), toml);
    let mut watcher = Watcher::connect(
        broker.port,
        "watch-zones",
        true,
        &["heldar/zn/frames/+", "heldar/zn/events/#", "heldar/zn/zones/#", "heldar/zn/errors"],
    )
    .await;
    node.start(&[]);
    watcher
        .client
        .publish("heldar/zn/workers/walker/status", rumqttc::QoS::AtLeastOnce, true, r#"{"v":1,"state":"online"}"#)
        .await
        .expect("status");

    // Bottom centre of the person's box, frame by frame: outside, into the yard, out, across the gate.
    let path: Vec<(f64, f64)> = vec![
        (0.1, 0.4),
        (0.1, 0.4),
        (0.3, 0.4),
        (0.35, 0.4),
        (0.4, 0.45),
        (0.45, 0.45),
        (0.5, 0.5),
        (0.65, 0.5),
        (0.66, 0.5),
        (0.75, 0.5),
        (0.8, 0.5),
        (0.85, 0.5),
        (0.85, 0.5),
    ];
    let mut seen: Vec<Message> = Vec::new();
    let mut step = 0;
    while step < path.len() {
        let message = tokio::time::timeout(20 * SECOND, watcher.next_any()).await.expect("frames").expect("open");
        if !message.topic.ends_with("/frames/lab") {
            seen.push(message);
            continue;
        }
        let frame = message;
        let newline = frame.payload.iter().position(|b| *b == b'\n').expect("header");
        let header: Value = serde_json::from_slice(&frame.payload[..newline]).expect("json");
        let (x, y) = path[step];
        let detections = json!({"v": 1, "worker": "walker", "camera": "lab", "seq": header["seq"], "ts": header["ts"],
            "detections": [{"label": "person", "confidence": 0.9, "bbox": [x - 0.05, y - 0.2, 0.1, 0.2], "track_id": "p1"}]});
        watcher
            .client
            .publish("heldar/zn/detections/lab", rumqttc::QoS::AtLeastOnce, false, detections.to_string())
            .await
            .expect("detections");
        step += 1;
    }
    seen.extend(watcher.collect(5 * SECOND, |m| m.iter().any(|m| m.topic.ends_with("/zone_cross"))).await);
    let errors: Vec<&Message> = seen.iter().filter(|m| m.topic.ends_with("/errors")).collect();
    assert!(errors.is_empty(), "detections refused: {:?}", errors.iter().map(|m| m.text()).collect::<Vec<_>>());
    let events: Vec<Value> = seen.iter().filter(|m| m.topic.contains("/events/lab/zone_")).map(Message::json).collect();
    let kinds: Vec<(&str, &str)> =
        events.iter().map(|e| (e["type"].as_str().unwrap_or(""), e["zone"].as_str().unwrap_or(""))).collect();
    assert_eq!(kinds, [("zone_enter", "yard"), ("zone_exit", "yard"), ("zone_cross", "gate")], "{events:#?}");
    let (enter, exit, cross) = (&events[0], &events[1], &events[2]);
    assert_eq!(enter["label"], "person");
    assert_eq!(enter["track_id"], "p1");
    assert_eq!(enter["camera"], "lab");
    assert!(enter["bbox"].as_array().is_some_and(|b| b.len() == 4));
    assert!(exit["dwell_s"].as_f64().is_some_and(|d| d > 0.0), "{exit}");
    assert_eq!(cross["direction"], "ba", "left to right across a top-to-bottom line: {cross}");
    let seqs: Vec<i64> = events.iter().map(|e| e["seq"].as_i64().expect("seq")).collect();
    assert!(seqs.windows(2).all(|w| w[1] > w[0]), "{seqs:?}");

    let occupancy: Vec<(String, String)> = seen
        .iter()
        .filter(|m| m.topic.starts_with("heldar/zn/zones/lab/yard/"))
        .map(|m| (m.topic.rsplit('/').next().unwrap_or("").to_string(), m.text()))
        .collect();
    let values =
        |label: &str| -> Vec<String> { occupancy.iter().filter(|(l, _)| l == label).map(|(_, v)| v.clone()).collect() };
    assert_eq!(values("person"), ["0", "1", "0"], "every configured label starts at 0: {occupancy:?}");
    assert_eq!(values("all"), ["0", "1", "0"], "all starts at 0: {occupancy:?}");

    let status = node.terminate(15 * SECOND);
    assert!(status.success());
    let index = rusqlite::Connection::open(node.index()).expect("index");
    let locks: Vec<(i64, i64, Option<String>, String)> = index
        .prepare("SELECT from_ms, to_ms, event_id, reason FROM evidence_locks WHERE camera = 'lab'")
        .expect("prepare")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(locks.len(), 1, "one lock for the visit (the gate zone does not lock): {locks:?}");
    let (from, to, event_id, reason) = &locks[0];
    let entered = heldar_edge::wallclock::UnixMs::parse_rfc3339(enter["ts"].as_str().expect("ts")).expect("ts").0;
    let exited = heldar_edge::wallclock::UnixMs::parse_rfc3339(exit["ts"].as_str().expect("ts")).expect("ts").0;
    assert_eq!(*from, entered - 5_000, "pre_roll before the enter");
    assert_eq!(*to, exited + 7_000, "post_roll after the exit");
    assert_eq!(event_id.as_deref(), enter["id"].as_str());
    assert!(reason.contains("yard"), "{reason}");
}
