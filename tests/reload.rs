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
    let camera = |id: &str| {
        format!(
            "[[camera]]\nid = \"{id}\"\nsource = \"lavfi:testsrc2=size=160x120:rate=5\"\nsegment_s = 2\nsample_fps = 0\n"
        )
    };
    let mut text = "[commands]\nauth = \"none\"\nallow = [\"reload\", \"status\"]\n".to_string();
    text.push_str(&camera("a"));
    text.push_str(&format!("[[camera.zone]]\nid = \"{a_zone}\"\npolygon = [[0, 0], [1, 0], [1, 1]]\n"));
    if with_b {
        text.push_str(&camera("b"));
    }
    if with_c {
        text.push_str(&camera("c"));
    }
    text
}

/// Sends `reload` as request `id`; returns the reply and everything that arrived with it.
async fn reload(watcher: &mut Watcher, id: &str) -> (Value, Vec<Message>) {
    let request = json!({"v": 1, "id": id}).to_string();
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
