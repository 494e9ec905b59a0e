//! Tests of the discovery payloads, against what HA's MQTT integration requires.

use super::*;

fn loaded(extra: &str, cameras: &str) -> LoadedConfig {
    let text = format!("[node]\nid = \"nvr.01\"\n[homeassistant]\ndiscovery = true\n{extra}\n{cameras}");
    crate::config::test_config(&text)
}

const FRONT: &str = "[[camera]]\nid = \"front\"\nname = \"Front door\"\nsource = \"lavfi:testsrc\"\n\
                     [[camera.zone]]\nid = \"drive_way\"\npolygon = [[0, 0], [1, 0], [1, 1]]\nlabels = [\"person\", \"car\"]\n";
const BACK: &str = "[[camera]]\nid = \"back_yard\"\nsource = \"lavfi:testsrc\"\n";

fn device<'a>(devices: &'a [Device], topic: &str) -> &'a Device {
    devices.iter().find(|d| d.topic == topic).unwrap_or_else(|| panic!("no device {topic}"))
}

#[test]
fn a_device_per_camera_via_the_node_and_every_entity_at_qos_1() {
    let config = loaded("", &format!("{FRONT}{BACK}"));
    let devices = devices(&config);
    assert_eq!(devices.len(), 3);
    let node = device(&devices, "homeassistant/device/heldar_nvr_01/config");
    for sensor in ["storage_free", "storage_free_bytes", "uptime", "version", "outbox_depth", "workers_online"] {
        assert!(node.components.contains_key(&format!("heldar_nvr_01_{sensor}")), "{sensor}");
    }
    let front = device(&devices, "homeassistant/device/heldar_nvr_01_front/config");
    assert_eq!(front.dev["via_device"], "heldar_nvr_01");
    assert_eq!(front.dev["name"], "Front door", "the config's name");
    assert_eq!(device(&devices, "homeassistant/device/heldar_nvr_01_back_yard/config").dev["name"], "Back yard");
    assert_eq!(front.clears, ["heldar/nvr.01/cameras/front/state"]);
    for d in &devices {
        for (id, c) in &d.components {
            assert_eq!(c["unique_id"], id.as_str());
            assert_eq!(c["qos"], 1, "{id}: HA takes qos per entity");
            assert!(c["p"].is_string(), "{id}");
            assert!(id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'), "{id}");
        }
    }
    let cmps = &front.components;
    assert_eq!(cmps["heldar_nvr_01_front_camera"]["topic"], "heldar/nvr.01/snapshots/front");
    assert_eq!(cmps["heldar_nvr_01_front_events"]["state_topic"], "heldar/nvr.01/events/front/+");
    assert_eq!(cmps["heldar_nvr_01_front_connected"]["device_class"], "connectivity");
    assert_eq!(cmps["heldar_nvr_01_front_recording"]["options"][1], "Recording");
    for label in ["all", "person", "car"] {
        let occupied = &cmps[&format!("heldar_nvr_01_front_drive_way_{label}_occupied")];
        assert_eq!(occupied["state_topic"], format!("heldar/nvr.01/zones/front/drive_way/{label}"));
    }
    assert_eq!(cmps["heldar_nvr_01_front_drive_way_person_occupied"]["name"], "Drive way person occupancy");
    assert_eq!(
        cmps["heldar_nvr_01_front_objects_person_occupied"]["state_topic"],
        "heldar/nvr.01/objects/front/person"
    );
    assert_eq!(cmps["heldar_nvr_01_front_objects_person_occupied"]["name"], "Person occupancy");
    assert_eq!(cmps["heldar_nvr_01_front_objects_count"]["state_topic"], "heldar/nvr.01/objects/front/all");
    assert!(!cmps.values().any(|c| c["p"] == "switch"), "HA cannot sign: no switch by default");
    let payload = payload(&config, front, &BTreeMap::new());
    assert_eq!(payload["availability_topic"], "heldar/nvr.01/status");
    assert_eq!(payload["o"]["name"], "heldar-edge");
}

#[test]
fn the_switch_reads_its_state_and_each_press_gets_a_fresh_id() {
    let config = loaded("[commands]\nauth = \"none\"\nallow = [\"record\", \"snapshot\"]\n", FRONT);
    let devices = devices(&config);
    let cmps = &device(&devices, "homeassistant/device/heldar_nvr_01_front/config").components;
    let switch = &cmps["heldar_nvr_01_front_record"];
    assert_eq!((switch["state_on"].as_str(), switch["state_off"].as_str()), (Some("ON"), Some("OFF")));
    assert_eq!((switch["payload_on"].as_str(), switch["payload_off"].as_str()), (Some("on"), Some("off")));
    let template = switch["command_template"].as_str().expect("command_template");
    assert!(template.contains("now().timestamp()") && template.contains("\"mode\": \"{{ value }}\""), "{template}");
    // Rendered as HA would: the request is valid JSON with an id of the allowed characters.
    let rendered =
        template.replace("{{ (now().timestamp() * 1000) | int }}", "1733140000123").replace("{{ value }}", "off");
    let request: Value = serde_json::from_str(&rendered).expect("JSON");
    assert_eq!(request["id"], "ha-front-record-1733140000123");
    assert_eq!(request["args"], json!({"camera": "front", "mode": "off"}));
    let button = &cmps["heldar_nvr_01_front_take_snapshot"];
    assert!(button["command_template"].as_str().is_some_and(|t| t.contains("now()")));
}

#[test]
fn a_gone_camera_is_removed_before_its_state_is_cleared_and_gone_entities_keep_their_platform() {
    let both = loaded("switches = true\n", &format!("{FRONT}{BACK}"));
    let before = advertised(&devices(&both));
    let front_only = loaded("", FRONT);
    let now = devices(&front_only);
    let plan = plan(&front_only, &before, &now);
    let gone_at =
        plan.iter().position(|p| *p == Publish::Empty("homeassistant/device/heldar_nvr_01_back_yard/config".into()));
    let cleared_at = plan.iter().position(|p| *p == Publish::Empty("heldar/nvr.01/cameras/back_yard/state".into()));
    assert!(gone_at.is_some() && cleared_at.is_some() && gone_at < cleared_at, "{plan:?}");
    let front = plan.iter().find_map(|p| match p {
        Publish::Config(topic, payload) if topic.ends_with("heldar_nvr_01_front/config") => Some(payload),
        _ => None,
    });
    let front = front.expect("front's config");
    assert_eq!(front["cmps"]["heldar_nvr_01_front_record"], json!({"p": "switch"}), "the switch went");
    assert_eq!(removal(&before).len(), 3);
}
