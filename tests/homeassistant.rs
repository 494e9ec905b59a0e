//! Home Assistant discovery against a real mosquitto and the real service:
//! the retained device config, sent again on HA's birth message, updated on
//! reload with removed entities dropped, and the recording switch that HA
//! (which cannot sign) may use when the config trusts the broker for it.

mod support;

use rumqttc::QoS;
use serde_json::{Value, json};
use std::time::Duration;
use support::{Broker, Message, Node, TempDir, Watcher};

const SECOND: Duration = Duration::from_secs(1);
const DISCOVERY: &str = "homeassistant/device/heldar_ha/config";

fn config(zone: bool) -> String {
    let mut text = "[homeassistant]\ndiscovery = true\nswitches = true\n\
                    [[commands.key]]\nid = \"ops\"\nsecret_file = \"ops.key\"\nallow = [\"reload\"]\n\
                    [[camera]]\nid = \"yard\"\nsource = \"lavfi:testsrc2=size=160x120:rate=5\"\nsegment_s = 2\nsample_fps = 2\nsample_width = 160\n"
        .to_string();
    if zone {
        text.push_str("[[camera.zone]]\nid = \"gate\"\npolygon = [[0, 0], [1, 0], [1, 1]]\nlabels = [\"person\"]\n");
    }
    text
}

fn discovery(messages: &[Message]) -> Vec<Value> {
    messages.iter().filter(|m| m.topic == DISCOVERY && !m.payload.is_empty()).map(Message::json).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_is_retained_resent_on_birth_updated_on_reload_and_the_switch_works() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("homeassistant");
    let broker = Broker::start(&dir.join("broker"));
    std::fs::write(dir.join("ops.key"), "k\n").expect("key");
    std::fs::set_permissions(dir.join("ops.key"), std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let mut node = Node::configure(&dir.0, "ha", &broker.url(), &config(true));
    node.start(&[]);
    let mut ha = Watcher::connect(broker.port, "ha-core", true, &["homeassistant/#", "heldar/ha/#"]).await;
    let first = ha.collect(20 * SECOND, |m| !discovery(m).is_empty()).await;
    let device = discovery(&first).pop().expect("a retained discovery config");
    assert_eq!(device["o"]["name"], "heldar-edge");
    assert_eq!(device["availability_topic"], "heldar/ha/status");
    assert_eq!(device["dev"]["ids"], json!(["heldar_ha"]));
    let cmps = device["cmps"].as_object().expect("cmps");
    for id in [
        "heldar_ha_yard_recording",
        "heldar_ha_yard_snapshot",
        "heldar_ha_yard_record",
        "heldar_ha_yard_gate_person_occupied",
        "heldar_ha_yard_gate_all_count",
        "heldar_ha_storage_free",
        "heldar_ha_outbox_depth",
        "heldar_ha_workers_online",
    ] {
        assert!(cmps.contains_key(id), "{id} missing from {:?}", cmps.keys().collect::<Vec<_>>());
        assert_eq!(cmps[id]["unique_id"], id);
    }
    let ids: std::collections::BTreeSet<&str> = cmps.values().filter_map(|c| c["unique_id"].as_str()).collect();
    assert_eq!(ids.len(), cmps.len(), "unique_ids are unique");
    let mut late = Watcher::connect(broker.port, "ha-late", true, &[DISCOVERY]).await;
    let retained = late.next_on(DISCOVERY, 5 * SECOND).await.expect("the retained config for a late subscriber");
    assert!(retained.retain && retained.json()["cmps"] == device["cmps"]);

    // HA restarts: its birth message brings the config and the camera states again.
    ha.client.publish("homeassistant/status", QoS::AtLeastOnce, false, "online").await.expect("birth");
    let again = ha
        .collect(10 * SECOND, |m| {
            !discovery(m).is_empty() && m.iter().any(|m| m.topic.ends_with("/cameras/yard/state"))
        })
        .await;
    assert_eq!(discovery(&again).len(), 1, "sent again on the birth message");

    // The switch: HA publishes its payload_off unsigned; the camera stops recording.
    let switch = &cmps["heldar_ha_yard_record"];
    let off = switch["payload_off"].as_str().expect("payload_off").to_string();
    ha.client.publish(switch["command_topic"].as_str().unwrap(), QoS::AtLeastOnce, false, off).await.expect("off");
    let replies = ha.collect(10 * SECOND, |m| m.iter().any(|m| m.topic == "heldar/ha/replies/ha-yard-off")).await;
    let reply = replies.iter().find(|m| m.topic == "heldar/ha/replies/ha-yard-off").expect("reply").json();
    assert_eq!(reply["ok"], true, "{reply}");
    let states = ha
        .collect(10 * SECOND, |m| m.iter().any(|m| m.topic.ends_with("/yard/state") && m.json()["state"] == "disabled"))
        .await;
    assert!(states.iter().any(|m| m.json()["state"] == "disabled"));

    // Recording on again; a person enters the zone: the occupancy binary_sensor's topic goes to 1.
    let on = switch["payload_on"].as_str().expect("payload_on").to_string();
    ha.client.publish(switch["command_topic"].as_str().unwrap(), QoS::AtLeastOnce, false, on).await.expect("on");
    ha.client
        .publish("heldar/ha/workers/w/status", QoS::AtLeastOnce, true, r#"{"v":1,"state":"online"}"#)
        .await
        .expect("worker");
    let mut answered = 0;
    let mut seen: Vec<Message> = Vec::new();
    let deadline = tokio::time::Instant::now() + 30 * SECOND;
    while answered < 3 {
        let m = tokio::time::timeout_at(deadline, ha.next_any()).await.expect("frames of yard").expect("open");
        if m.topic == "heldar/ha/frames/yard" {
            let newline = m.payload.iter().position(|b| *b == b'\n').expect("header");
            let header: Value = serde_json::from_slice(&m.payload[..newline]).expect("json");
            let detections = json!({"v": 1, "worker": "w", "camera": "yard", "seq": header["seq"], "ts": header["ts"],
                "detections": [{"label": "person", "confidence": 0.9, "bbox": [0.6, 0.3, 0.1, 0.2], "track_id": "p"}]});
            ha.client
                .publish("heldar/ha/detections/yard", QoS::AtLeastOnce, false, detections.to_string())
                .await
                .expect("detections");
            answered += 1;
        }
        seen.push(m);
    }
    let topic = cmps["heldar_ha_yard_gate_person_occupied"]["state_topic"].as_str().unwrap().to_string();
    seen.extend(ha.collect(10 * SECOND, |m| m.iter().any(|m| m.topic == topic && m.text() == "1")).await);
    assert!(seen.iter().any(|m| m.topic == topic && m.text() == "1"), "occupancy went to 1 on {topic}");
    // The snapshot button, then every entity's topic has carried something.
    let button = &cmps["heldar_ha_yard_take_snapshot"];
    let press = button["payload_press"].as_str().unwrap().to_string();
    ha.client.publish(button["command_topic"].as_str().unwrap(), QoS::AtLeastOnce, false, press).await.expect("press");
    seen.extend(first.iter().chain(&again).cloned());
    seen.extend(ha.collect(15 * SECOND, |m| m.iter().any(|m| m.topic == "heldar/ha/snapshots/yard")).await);
    for (id, c) in cmps {
        for key in ["state_topic", "image_topic"] {
            if let Some(topic) = c[key].as_str() {
                assert!(seen.iter().any(|m| m.topic == topic), "{id}: nothing was published on its {key} {topic}");
            }
        }
    }

    // A reload without the zone drops its entities (platform only), keeps the rest.
    std::fs::write(&node.config, std::fs::read_to_string(&node.config).unwrap().replace(&config(true), &config(false)))
        .unwrap();
    support::signal_pid(node.pid(), "HUP");
    let reloaded = ha.collect(20 * SECOND, |m| !discovery(m).is_empty()).await;
    let device = discovery(&reloaded).pop().expect("discovery after reload");
    assert_eq!(device["cmps"]["heldar_ha_yard_gate_person_occupied"], json!({"p": "binary_sensor"}));
    assert_eq!(device["cmps"]["heldar_ha_yard_gate_all_count"], json!({"p": "sensor"}));
    assert_eq!(device["cmps"]["heldar_ha_yard_recording"]["p"], "sensor");
    assert!(node.terminate(20 * SECOND).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_discovery_off_nothing_is_published_under_the_prefix() {
    let dir = TempDir::new("homeassistant-off");
    let broker = Broker::start(&dir.join("broker"));
    let mut ha = Watcher::connect(broker.port, "ha-off", true, &["homeassistant/#", "heldar/off/status"]).await;
    let mut node = Node::configure(
        &dir.0,
        "off",
        &broker.url(),
        "[[camera]]\nid = \"c\"\nsource = \"lavfi:testsrc\"\nsample_fps = 0\n",
    );
    node.start(&[]);
    let seen = ha.collect(8 * SECOND, |_| false).await;
    assert!(seen.iter().any(|m| m.topic == "heldar/off/status" && m.text() == "online"), "the node ran");
    let under: Vec<&str> =
        seen.iter().filter(|m| m.topic.starts_with("homeassistant/")).map(|m| m.topic.as_str()).collect();
    assert!(under.is_empty(), "published under the prefix: {under:?}");
    assert!(node.terminate(20 * SECOND).success());
}
