//! Live reload against the real service: the config file is rewritten and the
//! `reload` command (or SIGHUP) applies it camera by camera. A camera whose
//! zones change keeps recording without a gap, a removed one closes and
//! indexes its segment, a new one starts; an invalid file changes nothing.

mod support;

use heldar_edge::wallclock::UnixMs;
use rumqttc::QoS;
use serde_json::{Value, json};
use std::time::Duration;
use support::{Broker, Message, Node, TempDir, Watcher};

const SECOND: Duration = Duration::from_secs(1);

fn cameras(a_zone: &str, with_b: bool, with_c: bool) -> String {
    let camera = |id: &str, sample_fps: u32| {
        format!(
            "[[camera]]\nid = \"{id}\"\nsource = \"lavfi:testsrc2=size=160x120:rate=5\"\nsegment_s = 2\n\
             sample_fps = {sample_fps}\nsample_width = 160\n"
        )
    };
    // z1 covers the top left of the picture, z2 the bottom right.
    let polygon = match a_zone {
        "z1" => "[[0, 0], [0.3, 0], [0.3, 0.3], [0, 0.3]]",
        _ => "[[0.5, 0.5], [1, 0.5], [1, 1], [0.5, 1]]",
    };
    let mut text = "[commands]\nauth = \"none\"\nallow = [\"reload\", \"status\"]\n".to_string();
    text.push_str(&camera("a", 2));
    text.push_str(&format!("[[camera.zone]]\nid = \"{a_zone}\"\npolygon = {polygon}\n"));
    if with_b {
        text.push_str(&camera("b", 0));
    }
    if with_c {
        text.push_str(&camera("c", 0));
    }
    text
}

/// Answers the next `frames` frames of camera `a` with a person whose feet are at `(x, y)`.
async fn walk(watcher: &mut Watcher, frames: usize, (x, y): (f64, f64)) {
    for _ in 0..frames {
        let frame = watcher.next_on("heldar/rl/frames/a", 20 * SECOND).await.expect("a frame of a");
        let newline = frame.payload.iter().position(|b| *b == b'\n').expect("header");
        let header: Value = serde_json::from_slice(&frame.payload[..newline]).expect("header json");
        let detections = json!({"v": 1, "worker": "w", "camera": "a", "seq": header["seq"], "ts": header["ts"],
            "detections": [{"label": "person", "confidence": 0.9, "bbox": [x - 0.05, y - 0.2, 0.1, 0.2], "track_id": "p"}]});
        watcher
            .client
            .publish("heldar/rl/detections/a", QoS::AtLeastOnce, false, detections.to_string())
            .await
            .expect("detections");
    }
}

/// Sends `reload` as request `id`; returns the reply and everything that arrived with it.
async fn reload(watcher: &mut Watcher, id: &str) -> (Value, Vec<Message>) {
    let request = json!({"v": 2, "id": id}).to_string();
    watcher.client.publish("heldar/rl/cmd/reload", QoS::AtLeastOnce, false, request).await.expect("publish");
    let topic = format!("heldar/rl/replies/{id}");
    let seen = watcher.collect(60 * SECOND, |m| m.iter().any(|m| m.topic == topic)).await;
    let reply = seen.iter().find(|m| m.topic == topic).expect("reply").json();
    (reply, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_changes_only_what_changed_and_an_invalid_file_nothing() {
    let dir = TempDir::new("reload");
    let broker = Broker::start(&dir.join("broker"));
    let mut node = Node::configure(&dir.0, "rl", &broker.url(), &cameras("z1", true, false));
    let original = std::fs::read_to_string(&node.config).expect("config");
    let mut watcher = Watcher::connect(
        broker.port,
        "watch-rl",
        true,
        &["heldar/rl/replies/+", "heldar/rl/cameras/+/state", "heldar/rl/zones/#"],
    )
    .await;
    let mut worker = Watcher::connect(broker.port, "worker-rl", true, &["heldar/rl/frames/a"]).await;
    // Apart from the frames, which the walks skip through: an event between two frames stays.
    let mut events = Watcher::connect(broker.port, "events-rl", true, &["heldar/rl/events/a/+"]).await;
    worker
        .client
        .publish("heldar/rl/workers/w/status", QoS::AtLeastOnce, true, r#"{"v":1,"state":"online"}"#)
        .await
        .expect("online");
    node.start(&[]);
    support::wait_for(30 * SECOND, "both cameras record", || {
        node.segments("a").len() >= 2 && node.segments("b").len() >= 2
    });

    std::fs::write(&node.config, original.replace(&cameras("z1", true, false), &cameras("z2", false, true)))
        .expect("new config");
    let reloaded_at = UnixMs::now();
    let (reply, mut seen) = reload(&mut watcher, "r1").await;
    assert_eq!(reply["ok"], true, "{reply}");
    let changed = &reply["result"]["cameras"];
    assert_eq!(changed["removed"], json!(["b"]), "{reply}");
    assert_eq!(changed["added"], json!(["c"]), "{reply}");
    assert_eq!(changed["zones"], json!(["a"]), "{reply}");
    assert_eq!(changed["restarted"], json!([]), "{reply}");

    // b closed and indexed its last segment; its retained state is cleared; c records.
    let b_last = node.segments("b").last().cloned().expect("b segments");
    assert!(b_last.end_ms >= reloaded_at.0 - 2_500, "b's open segment was indexed at the stop: {b_last:?}");
    let done = |m: &[Message]| {
        m.iter().any(|m| m.topic.ends_with("/cameras/c/state") && m.json()["state"] == "recording")
            && m.iter().any(|m| m.topic.ends_with("/cameras/b/state") && m.payload.is_empty())
            && m.iter().any(|m| m.topic.ends_with("/zones/a/z1/all") && m.payload.is_empty())
            && m.iter().any(|m| m.topic.ends_with("/zones/a/z2/all") && m.text() == "0")
    };
    if !done(&seen) {
        let more = watcher.collect(30 * SECOND, |m| done(&[seen.as_slice(), m].concat())).await;
        seen.extend(more);
    }
    assert!(
        seen.iter().any(|m| m.topic.ends_with("/cameras/c/state") && m.json()["state"] == "recording"),
        "{:?}",
        seen.iter().map(|m| (m.topic.clone(), m.text())).collect::<Vec<_>>()
    );
    assert!(
        seen.iter().any(|m| m.topic.ends_with("/cameras/b/state") && m.payload.is_empty()),
        "b's state cleared: {:?}",
        seen.iter().filter(|m| m.topic.contains("/b/")).map(|m| m.text()).collect::<Vec<_>>()
    );
    assert!(seen.iter().any(|m| m.topic.ends_with("/zones/a/z1/all") && m.payload.is_empty()), "z1 cleared");
    support::wait_for(20 * SECOND, "c records", || node.segments("c").len() >= 2);

    // The next detections use the new zone: feet in the bottom right enter z2.
    walk(&mut worker, 3, (0.75, 0.9)).await;
    let entered = events.next_on("heldar/rl/events/a/zone_enter", 10 * SECOND).await.expect("zone_enter");
    assert_eq!(entered.json()["zone"], "z2", "{}", entered.text());

    // Two more reloads that change another camera only.
    for (id, retain) in [("r4", 3), ("r5", 7)] {
        let text = std::fs::read_to_string(&node.config).unwrap();
        let c = "[[camera]]\nid = \"c\"\n";
        let text = match text.contains("retain_days = 3") {
            true => text.replace("retain_days = 3", &format!("retain_days = {retain}")),
            false => text.replace(c, &format!("{c}retain_days = {retain}\n")),
        };
        std::fs::write(&node.config, text).unwrap();
        let (reply, _) = reload(&mut watcher, id).await;
        assert_eq!(reply["result"]["cameras"]["retention"], json!(["c"]), "{reply}");
        assert!(reply["result"]["cameras"]["unchanged"].as_array().unwrap().contains(&json!("a")), "{reply}");
    }

    // An invalid file: SIGHUP and reload both refuse it with the key, and nothing changes.
    std::fs::write(&node.config, original.replace("segment_s = 2", "segment_s = 1")).expect("invalid config");
    support::signal_pid(node.pid(), "HUP");
    let (reply, _) = reload(&mut watcher, "r2").await;
    assert_eq!(reply["error"]["code"], "failed", "{reply}");
    let message = reply["error"]["message"].as_str().unwrap();
    assert!(message.contains("camera[0].segment_s") && message.contains("nothing was changed"), "{message}");
    support::wait_for(10 * SECOND, "the SIGHUP refusal in the log", || {
        node.log().matches("camera[0].segment_s").count() >= 2
    });
    // A change that needs a restart is refused as a whole.
    std::fs::write(
        &node.config,
        original
            .replace(&cameras("z1", true, false), &cameras("z2", true, true))
            .replace("stats_interval_s = 1", "stats_interval_s = 2"),
    )
    .expect("mqtt change");
    let (reply, _) = reload(&mut watcher, "r3").await;
    let message = reply["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("changes to mqtt need a restart"), "{reply}");
    let c_count = node.segments("c").len();
    support::wait_for(20 * SECOND, "c still records", || node.segments("c").len() >= c_count + 2);
    assert!(node.segments("b").last().is_some_and(|s| s.path == b_last.path), "b stayed stopped");

    // a recorded through all of it without a hole.
    assert!(node.terminate(20 * SECOND).success());
    let a = node.segments("a");
    let holes: Vec<_> = a.windows(2).filter(|w| w[1].start_ms - w[0].end_ms > 500).collect();
    assert!(holes.is_empty(), "a's timeline has holes: {holes:?}");
    assert_eq!(node.count("SELECT count(*) FROM recording_gaps WHERE camera = 'a'"), 0);
}
