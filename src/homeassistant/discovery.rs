//! Home Assistant MQTT discovery payloads (device-based form): one retained
//! config for the node's device and one per camera (`via_device` the node),
//! each with the `o` origin block and its entities under `cmps`; and what to
//! publish to go from what was advertised before to what the config says now.
//! Pure: built from the config and the advertised record alone.

use super::entities::{self, Components, object_id};
use crate::config::LoadedConfig;
use crate::config::schema::AuthMode;
use crate::protocol::topics::Topics;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// One device's discovery config.
#[derive(Clone, Debug, PartialEq)]
pub struct Device {
    /// Its retained config topic.
    pub topic: String,
    /// The `dev` block.
    pub dev: Value,
    /// Its entities by component id.
    pub components: BTreeMap<String, Value>,
    /// Retained state topics to clear once the device is removed (a camera's state).
    pub clears: Vec<String>,
}

/// What was advertised on one device topic.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Advertised {
    /// Component id → platform.
    pub components: BTreeMap<String, String>,
    /// Retained state topics to clear once the device is removed.
    pub clears: Vec<String>,
}

/// One publish, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Publish {
    /// A device config (retained).
    Config(String, Value),
    /// An empty retained payload: removes the device from HA, or clears a state topic.
    Empty(String),
}

/// Whether the node offers command entities (a recording switch, a snapshot button per camera).
/// HA cannot sign commands, so only when commands need no signature anyway (`auth = "none"`
/// allowing `record`), or when `[homeassistant] switches = true` trusts the broker's ACL.
pub fn command_entities(config: &LoadedConfig) -> bool {
    let commands = &config.config.commands;
    config.config.homeassistant.switches
        || (commands.auth == AuthMode::None && commands.allow.iter().any(|c| c == "record"))
}

fn device_topic(config: &LoadedConfig, object: &str) -> String {
    format!("{}/device/{object}/config", config.config.homeassistant.prefix)
}

/// The node's device topic (the node's own sensors).
pub fn node_topic(config: &LoadedConfig) -> String {
    device_topic(config, &format!("heldar_{}", object_id(&config.node_id)))
}

/// Every device of `config`: the node first, then one per camera.
pub fn devices(config: &LoadedConfig) -> Vec<Device> {
    let topics = Topics::new(config.topic_root());
    let node = format!("heldar_{}", object_id(&config.node_id));
    let model = format!("heldar-edge ({})", config.board.description);
    let version = env!("CARGO_PKG_VERSION");
    let mut c = Components { prefix: node.clone(), out: BTreeMap::new() };
    node_components(&mut c, &topics.stats());
    let mut devices = vec![Device {
        topic: node_topic(config),
        dev: json!({"ids": [node], "name": format!("heldar {}", config.node_id), "mf": "heldar", "mdl": model, "sw": version}),
        components: c.out,
        clears: Vec::new(),
    }];
    let commands = command_entities(config);
    for camera in &config.config.cameras {
        let id = format!("{node}_{}", object_id(&camera.id));
        let mut c = Components { prefix: id.clone(), out: BTreeMap::new() };
        entities::camera_components(&mut c, &topics, camera, commands);
        devices.push(Device {
            topic: device_topic(config, &id),
            dev: json!({"ids": [id], "name": entities::camera_name(camera), "mf": "heldar", "mdl": "camera",
                        "via_device": node}),
            components: c.out,
            clears: vec![topics.camera_state(&camera.id)],
        });
    }
    devices
}

/// The node's sensors, read from `P/stats`.
fn node_components(c: &mut Components, stats: &str) {
    let sensor = |name: &str, template: &str, extra: Value| {
        let mut entity = json!({"name": name, "state_topic": stats, "value_template": template});
        if let (Value::Object(entity), Value::Object(extra)) = (&mut entity, extra) {
            entity.extend(extra);
        }
        entity
    };
    let diagnostic = |extra: Value| {
        let mut extra = extra;
        extra["entity_category"] = "diagnostic".into();
        extra
    };
    c.add(
        "storage_free",
        "sensor",
        sensor(
            "Free storage",
            "{{ value_json.storage.free_percent }}",
            diagnostic(json!({"unit_of_measurement": "%", "state_class": "measurement", "icon": "mdi:harddisk"})),
        ),
    );
    c.add(
        "storage_free_bytes",
        "sensor",
        sensor(
            "Free storage bytes",
            "{{ value_json.storage.free_bytes }}",
            diagnostic(json!({"device_class": "data_size", "unit_of_measurement": "B", "state_class": "measurement"})),
        ),
    );
    c.add(
        "recordings_bytes",
        "sensor",
        sensor(
            "Recordings",
            "{{ value_json.storage.recordings_bytes }}",
            diagnostic(json!({"device_class": "data_size", "unit_of_measurement": "B", "state_class": "measurement"})),
        ),
    );
    c.add(
        "uptime",
        "sensor",
        sensor(
            "Uptime",
            "{{ value_json.uptime_s }}",
            diagnostic(json!({"device_class": "duration", "unit_of_measurement": "s", "state_class": "measurement"})),
        ),
    );
    c.add("version", "sensor", sensor("Version", "{{ value_json.version }}", diagnostic(json!({"icon": "mdi:tag"}))));
    c.add(
        "outbox_depth",
        "sensor",
        sensor(
            "Events waiting",
            "{{ value_json.outbox.depth }}",
            diagnostic(json!({"state_class": "measurement", "icon": "mdi:tray-full"})),
        ),
    );
    c.add(
        "workers_online",
        "sensor",
        sensor(
            "Workers online",
            "{{ value_json.workers.online }}",
            json!({"state_class": "measurement", "icon": "mdi:robot"}),
        ),
    );
}

/// A device's config payload; `gone` are components advertised before and absent now (id →
/// platform), sent with their platform only, which is how HA drops a component.
pub fn payload(config: &LoadedConfig, device: &Device, gone: &BTreeMap<String, String>) -> Value {
    let version = env!("CARGO_PKG_VERSION");
    let mut cmps: Map<String, Value> = device.components.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    for (id, platform) in gone {
        cmps.insert(id.clone(), json!({"p": platform}));
    }
    json!({
        "dev": device.dev,
        "o": {"name": "heldar-edge", "sw": version},
        "availability_topic": Topics::new(config.topic_root()).status(),
        "payload_available": "online",
        "payload_not_available": "offline",
        "cmps": cmps,
    })
}

/// What `devices` advertise, to remember.
pub fn advertised(devices: &[Device]) -> BTreeMap<String, Advertised> {
    devices
        .iter()
        .map(|d| {
            let components = d
                .components
                .iter()
                .map(|(id, c)| (id.clone(), c["p"].as_str().unwrap_or("sensor").to_string()))
                .collect();
            (d.topic.clone(), Advertised { components, clears: d.clears.clone() })
        })
        .collect()
}

/// The publishes that take HA from `before` to `devices`: every device's config (with the
/// components it lost), then, for each device gone, its removal followed by clearing its
/// states (so HA never renders a cleared state of an entity it still has).
pub fn plan(config: &LoadedConfig, before: &BTreeMap<String, Advertised>, devices: &[Device]) -> Vec<Publish> {
    let mut out = Vec::new();
    for device in devices {
        let gone: BTreeMap<String, String> = before
            .get(&device.topic)
            .map(|b| b.components.iter().filter(|(id, _)| !device.components.contains_key(*id)))
            .into_iter()
            .flatten()
            .map(|(id, p)| (id.clone(), p.clone()))
            .collect();
        out.push(Publish::Config(device.topic.clone(), payload(config, device, &gone)));
    }
    for (topic, advertised) in before {
        if devices.iter().any(|d| &d.topic == topic) {
            continue;
        }
        out.push(Publish::Empty(topic.clone()));
        out.extend(advertised.clears.iter().cloned().map(Publish::Empty));
    }
    out
}

/// The publishes that remove everything in `before` (discovery turned off).
pub fn removal(before: &BTreeMap<String, Advertised>) -> Vec<Publish> {
    before.keys().cloned().map(Publish::Empty).collect()
}

#[cfg(test)]
#[path = "discovery_tests.rs"]
mod tests;
