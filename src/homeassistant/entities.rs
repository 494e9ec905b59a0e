//! The entities of one camera's Home Assistant device: its recording state,
//! connectivity, frame rate and bit rate, snapshot image and camera, its
//! events, (when HA may command it) a recording switch and a snapshot button,
//! and occupancy and count per zone and label. Pure: built from the config.

use crate::config::schema::{CameraConfig, ZoneConfig};
use crate::protocol::topics::Topics;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Recording states as a person reads them, in the order HA lists them.
const STATES: [(&str, &str); 5] = [
    ("connecting", "Connecting"),
    ("recording", "Recording"),
    ("offline", "Offline"),
    ("disabled", "Disabled"),
    ("paused", "Paused"),
];

/// Event types a camera's `event` entity fires.
pub const CAMERA_EVENTS: [&str; 10] = [
    "zone_enter",
    "zone_exit",
    "zone_dwell",
    "zone_cross",
    "zone_count",
    "camera_online",
    "camera_offline",
    "recording_gap",
    "recording_paused",
    "recording_resumed",
];

/// What HA accepts in object ids and unique ids: `[a-zA-Z0-9_-]`.
pub fn object_id(text: &str) -> String {
    text.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' }).collect()
}

/// `front_door` → `Front door`: an id in a person's words.
pub fn title(id: &str) -> String {
    let words = id.replace(['_', '-'], " ");
    let mut chars = words.chars();
    chars.next().map(|first| first.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

/// The name HA shows for a camera.
pub fn camera_name(camera: &CameraConfig) -> String {
    camera.name.clone().unwrap_or_else(|| title(&camera.id))
}

fn zone_name(zone: &ZoneConfig) -> String {
    zone.name.clone().unwrap_or_else(|| title(&zone.id))
}

/// Entities being collected for one device, by component id.
pub struct Components {
    /// The prefix of every unique id (`heldar_<node>`).
    pub prefix: String,
    /// The entities so far.
    pub out: BTreeMap<String, Value>,
}

impl Components {
    /// Adds an entity of `platform` under `key`, with `p`, `unique_id`, `object_id` and QoS 1
    /// (HA takes `qos` per entity only: a device-level one is not passed down).
    pub fn add(&mut self, key: &str, platform: &str, mut entity: Value) {
        let id = format!("{}_{key}", self.prefix);
        entity["p"] = platform.into();
        entity["unique_id"] = id.clone().into();
        entity["object_id"] = id.clone().into();
        entity["qos"] = 1.into();
        self.out.insert(id, entity);
    }
}

/// A request template whose id is fresh per press (`ha-<camera>-<action>-<ms>`), as the
/// command contract asks; `args` may use `{{ value }}`.
fn request_template(camera: &str, action: &str, args: &str) -> String {
    format!(
        "{{\"v\": 2, \"id\": \"ha-{}-{action}-{{{{ (now().timestamp() * 1000) | int }}}}\", \"args\": {args}}}",
        object_id(camera)
    )
}

/// The entities of `camera`'s device; `topics` are the node's, `commands` whether HA may send
/// `record` and `snapshot`.
pub fn camera_components(c: &mut Components, topics: &Topics, camera: &CameraConfig, commands: bool) {
    let state = topics.camera_state(&camera.id);
    let map: Vec<String> = STATES.iter().map(|(k, v)| format!("'{k}': '{v}'")).collect();
    c.add(
        "recording",
        "sensor",
        json!({"name": "Recording", "state_topic": state, "device_class": "enum",
               "value_template": format!("{{{{ {{{}}}[value_json.state] | default(value_json.state) }}}}", map.join(", ")),
               "options": STATES.iter().map(|(_, v)| *v).collect::<Vec<_>>(), "icon": "mdi:cctv"}),
    );
    c.add(
        "connected",
        "binary_sensor",
        json!({"name": "Connected", "state_topic": state, "device_class": "connectivity", "entity_category": "diagnostic",
               "value_template": "{{ 'ON' if value_json.state == 'recording' else 'OFF' }}"}),
    );
    c.add(
        "fps",
        "sensor",
        json!({"name": "Frame rate", "state_topic": state, "value_template": "{{ value_json.fps }}",
               "unit_of_measurement": "fps", "state_class": "measurement", "entity_category": "diagnostic"}),
    );
    c.add(
        "bitrate",
        "sensor",
        json!({"name": "Bit rate", "state_topic": state, "value_template": "{{ value_json.kbps }}",
               "device_class": "data_rate", "unit_of_measurement": "kbit/s", "state_class": "measurement",
               "entity_category": "diagnostic"}),
    );
    let snapshots = topics.snapshot(&camera.id);
    c.add("snapshot", "image", json!({"name": "Snapshot", "image_topic": snapshots, "content_type": "image/jpeg"}));
    c.add("camera", "camera", json!({"name": null, "topic": snapshots}));
    c.add(
        "events",
        "event",
        json!({"name": "Events", "state_topic": topics.event(&camera.id, "+"), "event_types": CAMERA_EVENTS,
               "value_template": "{{ dict(value_json, event_type=value_json.type) | to_json }}"}),
    );
    if commands {
        c.add(
            "record",
            "switch",
            json!({"name": "Record", "command_topic": topics.command("record"),
                   "payload_on": "on", "payload_off": "off",
                   "command_template": request_template(&camera.id, "record", &format!("{{\"camera\": \"{}\", \"mode\": \"{{{{ value }}}}\"}}", camera.id)),
                   "state_topic": state, "state_on": "ON", "state_off": "OFF",
                   "value_template": "{{ 'OFF' if value_json.state == 'disabled' else 'ON' }}", "icon": "mdi:record-rec"}),
        );
        c.add(
            "take_snapshot",
            "button",
            json!({"name": "Take snapshot", "command_topic": topics.command("snapshot"),
                   "command_template": request_template(&camera.id, "snapshot", &format!("{{\"camera\": \"{}\"}}", camera.id)),
                   "icon": "mdi:camera"}),
        );
    }
    object_components(c, topics, camera);
    for zone in &camera.zones {
        zone_components(c, topics, camera, zone);
    }
}

/// Occupancy and count of the camera's whole frame, for `all` and every label its zones count.
fn object_components(c: &mut Components, topics: &Topics, camera: &CameraConfig) {
    let labels =
        crate::zones::objects::frame_labels(std::slice::from_ref(camera)).remove(&camera.id).unwrap_or_default();
    for label in labels {
        let topic = topics.objects(&camera.id, &label);
        let (key, name) = match label.as_str() {
            "all" => ("objects".to_string(), "Object".to_string()),
            label => (format!("objects_{}", object_id(label)), title(label)),
        };
        occupancy_and_count(c, &key, &name, &topic);
    }
}

/// Occupancy and count of a zone, for every label it counts and `all`.
fn zone_components(c: &mut Components, topics: &Topics, camera: &CameraConfig, zone: &ZoneConfig) {
    let labels = std::iter::once("all").chain(zone.labels.iter().map(String::as_str));
    for label in labels {
        let topic = topics.zone_count(&camera.id, &zone.id, label);
        let key = format!("{}_{}", object_id(&zone.id), object_id(label));
        let name = match label {
            "all" => zone_name(zone),
            label => format!("{} {label}", zone_name(zone)),
        };
        occupancy_and_count(c, &key, &name, &topic);
    }
}

/// An occupancy `binary_sensor` and a count `sensor` read from one count topic.
fn occupancy_and_count(c: &mut Components, key: &str, name: &str, topic: &str) {
    c.add(
        &format!("{key}_occupied"),
        "binary_sensor",
        json!({"name": format!("{name} occupancy"), "state_topic": topic, "device_class": "occupancy",
               "value_template": "{{ 'ON' if (value | int(0)) > 0 else 'OFF' }}"}),
    );
    c.add(
        &format!("{key}_count"),
        "sensor",
        json!({"name": format!("{name} count"), "state_topic": topic, "state_class": "measurement",
               "value_template": "{{ value | int(0) }}", "icon": "mdi:counter"}),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_read_as_words() {
        assert_eq!(title("front_door"), "Front door");
        assert_eq!(title("drive-way"), "Drive way");
        assert_eq!(title(""), "");
        assert_eq!(object_id("nvr.01"), "nvr_01");
    }

    #[test]
    fn a_request_id_is_fresh_per_press() {
        let template = request_template("front", "snapshot", "{\"camera\": \"front\"}");
        assert_eq!(
            template,
            "{\"v\": 2, \"id\": \"ha-front-snapshot-{{ (now().timestamp() * 1000) | int }}\", \"args\": {\"camera\": \"front\"}}"
        );
    }
}
