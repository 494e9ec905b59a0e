//! Home Assistant discovery against a real mosquitto and the real service, as
//! HA's MQTT integration reads it: a retained device config for the node and
//! one per camera, every entity at QoS 1, sent again once per HA birth and
//! never on its last will; the recording switch and the snapshot button HA
//! renders with a fresh request id; zone and whole-frame labels at 0 from the
//! start, then counting what a worker detects; a
//! camera removed by a reload leaves HA before its state is cleared, and one
//! removed while the service was stopped leaves at the next start.

mod support;

use rumqttc::QoS;
use serde_json::{Value, json};
use std::time::Duration;
use support::{Broker, Message, Node, TempDir, Watcher};

const SECOND: Duration = Duration::from_secs(1);
const NODE_DEVICE: &str = "homeassistant/device/heldar_ha/config";
const YARD_DEVICE: &str = "homeassistant/device/heldar_ha_yard/config";

fn camera(id: &str, sample_fps: u32) -> String {
    format!(
        "[[camera]]\nid = \"{id}\"\nsource = \"lavfi:testsrc2=size=160x120:rate=5\"\nsegment_s = 2\n\
         sample_fps = {sample_fps}\nsample_width = 160\n"
    )
}

const ZONE: &str = "[[camera.zone]]\nid = \"gate\"\npolygon = [[0, 0], [1, 0], [1, 1]]\nlabels = [\"person\"]\n";

fn config(cameras: &str) -> String {
    format!(
        "[homeassistant]\ndiscovery = true\nswitches = true\n\
         [[commands.key]]\nid = \"ops\"\nsecret_file = \"ops.key\"\nallow = [\"reload\"]\n{cameras}"
    )
}

/// Device configs seen (non-empty), by topic, in order.
fn configs(messages: &[Message]) -> Vec<(&str, Value)> {
    messages
        .iter()
        .filter(|m| m.topic.starts_with("homeassistant/device/") && !m.payload.is_empty())
        .map(|m| (m.topic.as_str(), m.json()))
        .collect()
}

fn position(messages: &[Message], topic: &str, empty: bool) -> Option<usize> {
    messages.iter().position(|m| m.topic == topic && m.payload.is_empty() == empty)
}

/// A command template rendered as HA renders it: `now()` as a fresh number, `value` given.
fn render(template: &str, value: &str, n: u64) -> String {
    template
        .replace("{{ (now().timestamp() * 1000) | int }}", &format!("{}", 1_733_140_000_000 + n))
        .replace("{{ value }}", value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_per_camera_once_per_birth_removals_in_order_and_orphans_gone_after_a_restart() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("homeassistant");
    let broker = Broker::start(&dir.join("broker"));
    std::fs::write(dir.join("ops.key"), "k\n").expect("key");
    std::fs::set_permissions(dir.join("ops.key"), std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let all = format!("{}{ZONE}{}{}", camera("yard", 2), camera("shed", 0), camera("barn", 0));
    let mut node = Node::configure(&dir.0, "ha", &broker.url(), &config(&all));
    let mut ha = Watcher::connect(broker.port, "ha-core", true, &["homeassistant/#", "heldar/ha/#"]).await;
    node.start(&[]);
    let labels = [
        "heldar/ha/zones/yard/gate/person",
        "heldar/ha/zones/yard/gate/all",
        "heldar/ha/objects/yard/person",
        "heldar/ha/objects/yard/all",
        "heldar/ha/objects/shed/all",
    ];
    let first = ha
        .collect(30 * SECOND, |m| {
            configs(m).len() >= 4 && labels.iter().all(|l| m.iter().any(|m| m.topic == *l && m.text() == "0"))
        })
        .await;
    let devices: std::collections::BTreeMap<&str, Value> = configs(&first).into_iter().collect();
    assert_eq!(devices.len(), 4, "the node and a device per camera: {:?}", devices.keys());
    for label in labels {
        assert!(first.iter().any(|m| m.topic == label && m.text() == "0"), "{label} starts at 0");
    }
    let yard = &devices[YARD_DEVICE];
    assert_eq!(yard["dev"]["via_device"], "heldar_ha");
    assert_eq!(yard["dev"]["name"], "Yard");
    assert_eq!(yard["availability_topic"], "heldar/ha/status");
    for (topic, device) in &devices {
        for (id, c) in device["cmps"].as_object().expect("cmps") {
            assert_eq!(c["qos"], 1, "{topic} {id}: requests and states at QoS 1");
        }
    }
    let cmps = yard["cmps"].as_object().expect("cmps").clone();
    assert!(devices[NODE_DEVICE]["cmps"].get("heldar_ha_uptime").is_some());

    // HA's birth brings each config once; its last will brings nothing.
    ha.client.publish("homeassistant/status", QoS::AtLeastOnce, false, "online").await.expect("birth");
    let again = ha.collect(6 * SECOND, |_| false).await;
    let mut resent: Vec<&str> = configs(&again).into_iter().map(|(t, _)| t).collect();
    resent.sort();
    assert_eq!(resent.len(), 4, "one config per device per birth: {resent:?}");
    resent.dedup();
    assert_eq!(resent.len(), 4);
    ha.client.publish("homeassistant/status", QoS::AtLeastOnce, false, "offline").await.expect("will");
    assert!(configs(&ha.collect(3 * SECOND, |_| false).await).is_empty(), "nothing on HA's offline");

    // The switch: HA renders its command template (a fresh id each time) and reads the state.
    let switch = &cmps["heldar_ha_yard_record"];
    let (topic, template) = (switch["command_topic"].as_str().unwrap(), switch["command_template"].as_str().unwrap());
    ha.client.publish(topic, QoS::AtLeastOnce, false, render(template, "off", 1)).await.expect("off");
    let off = ha
        .collect(10 * SECOND, |m| m.iter().any(|m| m.topic.ends_with("/yard/state") && m.json()["state"] == "disabled"))
        .await;
    let reply = off.iter().find(|m| m.topic == "heldar/ha/replies/ha-yard-record-1733140000001").expect("reply");
    assert_eq!(reply.json()["ok"], true);
    assert_eq!(switch["state_off"], "OFF", "the value template's OFF is the switch's off state");
    ha.client.publish(topic, QoS::AtLeastOnce, false, render(template, "on", 2)).await.expect("on");

    // A person enters the zone: the occupancy topic goes to 1.
    ha.client
        .publish("heldar/ha/workers/w/status", QoS::AtLeastOnce, true, r#"{"v":1,"state":"online"}"#)
        .await
        .expect("worker");
    let (mut answered, mut seen) = (0, Vec::new());
    let deadline = tokio::time::Instant::now() + 30 * SECOND;
    while answered < 3 {
        let m = tokio::time::timeout_at(deadline, ha.next_any()).await.expect("frames of yard").expect("open");
        if m.topic == "heldar/ha/frames/yard" {
            let newline = m.payload.iter().position(|b| *b == b'\n').expect("header");
            let header: Value = serde_json::from_slice(&m.payload[..newline]).expect("json");
            let detections = json!({"v": 1, "worker": "w", "camera": "yard", "seq": header["seq"], "ts": header["ts"],
                "detections": [{"label": "person", "confidence": 0.9, "bbox": [0.6, 0.3, 0.1, 0.2], "track_id": "p"}]});
            let topic = "heldar/ha/detections/yard";
            ha.client.publish(topic, QoS::AtLeastOnce, false, detections.to_string()).await.expect("detections");
            answered += 1;
        }
        seen.push(m);
    }
    let occupied = cmps["heldar_ha_yard_gate_person_occupied"]["state_topic"].as_str().unwrap().to_string();
    seen.extend(ha.collect(10 * SECOND, |m| m.iter().any(|m| m.topic == occupied && m.text() == "1")).await);
    assert!(seen.iter().any(|m| m.topic == occupied && m.text() == "1"), "occupancy went to 1 on {occupied}");
    let objects = cmps["heldar_ha_yard_objects_person_count"]["state_topic"].as_str().unwrap().to_string();
    assert!(seen.iter().any(|m| m.topic == objects && m.text() == "1"), "the whole frame's person count went to 1");

    // The snapshot button; the snapshot is retained, so HA shows it again after a restart.
    let button = &cmps["heldar_ha_yard_take_snapshot"];
    let press = render(button["command_template"].as_str().unwrap(), "PRESS", 3);
    ha.client.publish(button["command_topic"].as_str().unwrap(), QoS::AtLeastOnce, false, press).await.expect("press");
    ha.collect(15 * SECOND, |m| m.iter().any(|m| m.topic == "heldar/ha/snapshots/yard")).await;
    let mut late = Watcher::connect(broker.port, "ha-late", true, &["heldar/ha/snapshots/yard"]).await;
    let snapshot = late.next_on("heldar/ha/snapshots/yard", 5 * SECOND).await.expect("a retained snapshot");
    assert!(snapshot.retain && snapshot.payload.starts_with(&[0xff, 0xd8]), "a retained JPEG");

    // A reload removes "shed": its device goes before its state is cleared.
    let two = format!("{}{ZONE}{}", camera("yard", 2), camera("barn", 0));
    let text = std::fs::read_to_string(&node.config).expect("config");
    std::fs::write(&node.config, text.replace(&config(&all), &config(&two))).expect("config");
    support::signal_pid(node.pid(), "HUP");
    let shed = "heldar/ha/cameras/shed/state";
    let reloaded = ha.collect(20 * SECOND, |m| position(m, shed, true).is_some()).await;
    let empties: Vec<&str> = reloaded.iter().filter(|m| m.payload.is_empty()).map(|m| m.topic.as_str()).collect();
    let removed = position(&reloaded, "homeassistant/device/heldar_ha_shed/config", true)
        .unwrap_or_else(|| panic!("shed removed: {empties:?}\n{}", node.log()));
    assert!(removed < position(&reloaded, shed, true).expect("state cleared"), "removal first, then the clear");
    assert!(node.terminate(20 * SECOND).success());

    // Stopped, "barn" and the zone leave the config: the next start removes them from HA.
    let text = std::fs::read_to_string(&node.config).expect("config");
    std::fs::write(&node.config, text.replace(&config(&two), &config(&camera("yard", 2)))).expect("config");
    node.start(&[]);
    let barn = "heldar/ha/cameras/barn/state";
    let restarted = ha.collect(20 * SECOND, |m| position(m, barn, true).is_some()).await;
    assert!(
        position(&restarted, "homeassistant/device/heldar_ha_barn/config", true).is_some(),
        "barn's device removed"
    );
    let yard = configs(&restarted).into_iter().find(|(t, _)| *t == YARD_DEVICE).expect("yard's config").1;
    assert_eq!(yard["cmps"]["heldar_ha_yard_gate_person_occupied"], json!({"p": "binary_sensor"}));
    assert_eq!(yard["cmps"]["heldar_ha_yard_recording"]["p"], "sensor");
    let mut states = Watcher::connect(broker.port, "ha-states", true, &["heldar/ha/cameras/+/state"]).await;
    let retained = states.collect(3 * SECOND, |_| false).await;
    let cameras: std::collections::BTreeSet<&str> =
        retained.iter().filter(|m| !m.payload.is_empty()).map(|m| m.topic.as_str()).collect();
    assert_eq!(cameras, ["heldar/ha/cameras/yard/state"].into(), "only the configured camera keeps a retained state");
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
