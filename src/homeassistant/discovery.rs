//! Home Assistant MQTT discovery payloads (device-based form): one retained
//! config per node on `<prefix>/device/<object>/config` with the `o` origin
//! block and every entity under `cmps`. Pure: built from the config alone.

use crate::config::LoadedConfig;
use crate::config::schema::{AuthMode, CameraConfig};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// What HA accepts in object ids and unique ids: `[a-zA-Z0-9_-]`.
fn object_id(text: &str) -> String {
    text.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' }).collect()
}

/// The node's discovery topic.
pub fn topic(config: &LoadedConfig) -> String {
    format!("{}/device/heldar_{}/config", config.config.homeassistant.prefix, object_id(&config.node_id))
}

/// Whether the node offers command entities (a recording switch, a snapshot button per camera).
/// HA cannot sign commands, so only when commands need no signature anyway (`auth = "none"`
/// allowing `record`), or when `[homeassistant] switches = true` trusts the broker's ACL.
pub fn command_entities(config: &LoadedConfig) -> bool {
    let commands = &config.config.commands;
    config.config.homeassistant.switches
        || (commands.auth == AuthMode::None && commands.allow.iter().any(|c| c == "record"))
}

/// Entities being collected, by component id.
struct Components {
    node: String,
    out: BTreeMap<String, Value>,
}

impl Components {
    /// Adds an entity of `platform` under `key`, with its platform `p` and `unique_id`.
    fn add(&mut self, key: String, platform: &str, mut entity: Value) {
        let id = format!("heldar_{}_{key}", self.node);
        entity["p"] = platform.into();
        entity["unique_id"] = id.clone().into();
        entity["object_id"] = id.clone().into();
        self.out.insert(id, entity);
    }
}

/// The entities of the node by component id, each with its platform `p` and `unique_id`.
pub fn components(config: &LoadedConfig) -> BTreeMap<String, Value> {
    let root = config.topic_root();
    let mut c = Components { node: object_id(&config.node_id), out: BTreeMap::new() };
    let stats = format!("{root}/stats");
    c.add(
        "storage_free".into(),
        "sensor",
        json!({"name": "Free storage", "state_topic": stats, "value_template": "{{ value_json.storage.free_percent }}",
               "unit_of_measurement": "%", "state_class": "measurement", "entity_category": "diagnostic", "icon": "mdi:harddisk"}),
    );
    c.add(
        "outbox_depth".into(),
        "sensor",
        json!({"name": "Events waiting", "state_topic": stats, "value_template": "{{ value_json.outbox.depth }}",
               "state_class": "measurement", "entity_category": "diagnostic", "icon": "mdi:tray-full"}),
    );
    c.add(
        "workers_online".into(),
        "sensor",
        json!({"name": "Workers online", "state_topic": stats, "value_template": "{{ value_json.workers.online }}",
               "state_class": "measurement", "icon": "mdi:robot"}),
    );
    let commands = command_entities(config);
    for camera in &config.config.cameras {
        camera_components(&mut c, &root, camera, commands);
    }
    c.out
}

/// A camera's entities: its state, snapshot, (with `commands`) its switch and button, and
/// its zones'.
fn camera_components(c: &mut Components, root: &str, camera: &CameraConfig, commands: bool) {
    let cam = object_id(&camera.id);
    let state = format!("{root}/cameras/{}/state", camera.id);
    c.add(
        format!("{cam}_recording"),
        "sensor",
        json!({"name": format!("{} recording", camera.id), "state_topic": state,
               "value_template": "{{ value_json.state }}", "device_class": "enum",
               "options": ["connecting", "recording", "offline", "disabled", "paused"], "icon": "mdi:cctv"}),
    );
    c.add(
        format!("{cam}_snapshot"),
        "image",
        json!({"name": format!("{} snapshot", camera.id), "image_topic": format!("{root}/snapshots/{}", camera.id),
               "content_type": "image/jpeg"}),
    );
    if commands {
        let request = |id: String, args: Value| json!({"v": 2, "id": id, "args": args}).to_string();
        c.add(
            format!("{cam}_record"),
            "switch",
            json!({"name": format!("{} record", camera.id), "command_topic": format!("{root}/cmd/record"),
                   "payload_on": request(format!("ha-{}-on", cam), json!({"camera": camera.id, "mode": "on"})),
                   "payload_off": request(format!("ha-{}-off", cam), json!({"camera": camera.id, "mode": "off"})),
                   "state_topic": state,
                   "value_template": "{{ 'OFF' if value_json.state == 'disabled' else 'ON' }}", "icon": "mdi:record-rec"}),
        );
        c.add(
            format!("{cam}_take_snapshot"),
            "button",
            json!({"name": format!("{} take snapshot", camera.id), "command_topic": format!("{root}/cmd/snapshot"),
                   "payload_press": request(format!("ha-{}-snapshot", cam), json!({"camera": camera.id})),
                   "icon": "mdi:camera"}),
        );
    }
    for zone in &camera.zones {
        let labels = std::iter::once("all").chain(zone.labels.iter().map(String::as_str));
        for label in labels {
            let topic = format!("{root}/zones/{}/{}/{label}", camera.id, zone.id);
            let key = format!("{cam}_{}_{}", object_id(&zone.id), object_id(label));
            let name = format!("{} {} {label}", camera.id, zone.id);
            c.add(
                format!("{key}_occupied"),
                "binary_sensor",
                json!({"name": format!("{name} occupied"), "state_topic": topic, "device_class": "occupancy",
                       "value_template": "{{ 'ON' if (value | int(0)) > 0 else 'OFF' }}"}),
            );
            c.add(
                format!("{key}_count"),
                "sensor",
                json!({"name": format!("{name} count"), "state_topic": topic, "state_class": "measurement",
                       "value_template": "{{ value | int(0) }}", "icon": "mdi:counter"}),
            );
        }
    }
}

/// The device discovery payload: `components`, plus `removed` entities (id → platform) sent
/// with their platform only, which is how HA drops a component from a device.
pub fn payload(
    config: &LoadedConfig,
    components: &BTreeMap<String, Value>,
    removed: &BTreeMap<String, String>,
) -> Value {
    let version = env!("CARGO_PKG_VERSION");
    let mut cmps: Map<String, Value> = components.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    for (id, platform) in removed {
        cmps.insert(id.clone(), json!({"p": platform}));
    }
    json!({
        "dev": {
            "ids": [format!("heldar_{}", object_id(&config.node_id))],
            "name": format!("heldar {}", config.node_id),
            "mf": "heldar",
            "mdl": format!("heldar-edge ({})", config.board.description),
            "sw": version,
        },
        "o": {"name": "heldar-edge", "sw": version},
        "availability_topic": format!("{}/status", config.topic_root()),
        "payload_available": "online",
        "payload_not_available": "offline",
        "qos": 1,
        "cmps": cmps,
    })
}

/// Components published before and absent now, with their platform.
pub fn removed(before: &BTreeMap<String, Value>, now: &BTreeMap<String, Value>) -> BTreeMap<String, String> {
    before
        .iter()
        .filter(|(id, _)| !now.contains_key(*id))
        .map(|(id, c)| (id.clone(), c["p"].as_str().unwrap_or("sensor").to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loaded(extra: &str) -> LoadedConfig {
        let text = format!(
            "[node]\nid = \"nvr.01\"\n[homeassistant]\ndiscovery = true\n{extra}\n\
             [[camera]]\nid = \"front\"\nsource = \"lavfi:testsrc\"\n\
             [[camera.zone]]\nid = \"drive\"\npolygon = [[0, 0], [1, 0], [1, 1]]\nlabels = [\"person\", \"car\"]\n"
        );
        crate::config::test_config(&text)
    }

    #[test]
    fn every_entity_has_a_platform_a_stable_unique_id_and_the_node_topics() {
        let config = loaded("");
        assert_eq!(topic(&config), "homeassistant/device/heldar_nvr_01/config");
        let cmps = components(&config);
        for (id, c) in &cmps {
            assert_eq!(c["unique_id"], id.as_str());
            assert!(c["p"].is_string(), "{id}");
            assert!(id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'), "{id}");
        }
        let recording = &cmps["heldar_nvr_01_front_recording"];
        assert_eq!(recording["state_topic"], "heldar/nvr.01/cameras/front/state");
        assert_eq!(cmps["heldar_nvr_01_front_snapshot"]["image_topic"], "heldar/nvr.01/snapshots/front");
        for label in ["all", "person", "car"] {
            let occupied = &cmps[&format!("heldar_nvr_01_front_drive_{label}_occupied")];
            assert_eq!(occupied["p"], "binary_sensor");
            assert_eq!(occupied["state_topic"], format!("heldar/nvr.01/zones/front/drive/{label}"));
            assert_eq!(cmps[&format!("heldar_nvr_01_front_drive_{label}_count")]["p"], "sensor");
        }
        assert!(!cmps.values().any(|c| c["p"] == "switch"), "HA cannot sign: no switch by default");
        let payload = payload(&config, &cmps, &BTreeMap::new());
        assert_eq!(payload["availability_topic"], "heldar/nvr.01/status");
        assert_eq!(payload["o"]["name"], "heldar-edge");
        assert_eq!(payload["dev"]["ids"], json!(["heldar_nvr_01"]));
    }

    #[test]
    fn command_entities_need_an_unsigned_path_and_removed_ones_keep_only_their_platform() {
        let open = loaded("[commands]\nauth = \"none\"\nallow = [\"record\", \"snapshot\"]\n");
        let cmps = components(&open);
        let switch = &cmps["heldar_nvr_01_front_record"];
        assert_eq!(switch["command_topic"], "heldar/nvr.01/cmd/record");
        let on: Value = serde_json::from_str(switch["payload_on"].as_str().unwrap()).unwrap();
        assert_eq!(on["args"], json!({"camera": "front", "mode": "on"}));
        let before = components(&loaded("switches = true\n"));
        let now = components(&loaded(""));
        let gone = removed(&before, &now);
        assert_eq!(gone.get("heldar_nvr_01_front_record").map(String::as_str), Some("switch"));
        let payload = payload(&open, &now, &gone);
        assert_eq!(payload["cmps"]["heldar_nvr_01_front_record"], json!({"p": "switch"}));
    }
}
