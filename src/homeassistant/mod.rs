//! Home Assistant MQTT discovery: the node, its cameras and zones appear in
//! HA without a custom integration. The discovery config is retained, sent
//! again with the current states whenever HA announces itself (`online` on
//! `<prefix>/status`), and after a reload, which drops what was removed.

pub mod discovery;

use crate::capture::CameraStates;
use crate::config::LoadedConfig;
use crate::mqtt::{IncomingMessage, MqttHandle};
use crate::stats::StatsSources;
use crate::workers::Rejection;
use crate::workers::errors::ErrorReporter;
use rumqttc::QoS;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};

/// The discovery task's inputs.
pub struct HomeAssistant {
    /// The config in force.
    pub config: watch::Receiver<Arc<LoadedConfig>>,
    /// The broker session.
    pub mqtt: MqttHandle,
    /// Messages on `<prefix>/status` (HA's birth and last will).
    pub births: mpsc::Receiver<IncomingMessage>,
    /// Camera states to send again after HA's birth.
    pub cameras: CameraStates,
    /// `P/stats`, sent again after HA's birth so the node sensors have a value at once.
    pub stats: Arc<StatsSources>,
    /// When the service started.
    pub started: std::time::Instant,
    /// `P/errors`, for a status message over its size limit.
    pub errors: ErrorReporter,
}

impl HomeAssistant {
    /// Runs until the config watch ends.
    pub async fn run(mut self) {
        let mut published: BTreeMap<String, Value> = BTreeMap::new();
        let mut enabled = false;
        loop {
            let config = self.config.borrow_and_update().clone();
            enabled = self.publish(&config, &mut published, enabled);
            tokio::select! {
                changed = self.config.changed() => if changed.is_err() { return },
                Some(birth) = self.births.recv() => {
                    if let Some(size) = birth.oversize() {
                        let why = format!("{size} bytes: Home Assistant's status is `online` or `offline`");
                        self.errors.reject(&birth.topic, &Rejection::new("too_large", why));
                        continue;
                    }
                    if birth.payload.as_ref() != b"online" || !config.config.homeassistant.discovery {
                        continue;
                    }
                    tracing::info!("Home Assistant is online: discovery and states sent again");
                    self.publish(&config, &mut published, enabled);
                    self.send_states(&config).await;
                }
            }
        }
    }

    /// Publishes the discovery config of `config` (or clears it when discovery is off);
    /// returns whether discovery is on.
    fn publish(&self, config: &LoadedConfig, published: &mut BTreeMap<String, Value>, was_enabled: bool) -> bool {
        let topic = discovery::topic(config);
        if !config.config.homeassistant.discovery {
            if was_enabled {
                // An empty retained payload removes the device from HA.
                self.mqtt.publish(topic, Vec::new(), QoS::AtLeastOnce, true);
                published.clear();
            }
            return false;
        }
        let components = discovery::components(config);
        let removed = discovery::removed(published, &components);
        let payload = discovery::payload(config, &components, &removed);
        self.mqtt.publish(topic, payload.to_string(), QoS::AtLeastOnce, true);
        *published = components;
        true
    }

    async fn send_states(&self, config: &LoadedConfig) {
        let root = config.topic_root();
        if let Value::Object(states) = self.cameras.snapshot() {
            for (camera, state) in states {
                self.mqtt.publish(format!("{root}/cameras/{camera}/state"), state.to_string(), QoS::AtLeastOnce, true);
            }
        }
        let report = self.stats.report((&config.node_id, &config.config.node.board), self.started.elapsed()).await;
        self.mqtt.publish(format!("{root}/stats"), report.to_string(), QoS::AtMostOnce, false);
    }
}
