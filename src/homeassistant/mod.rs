//! Home Assistant MQTT discovery: the node and each camera appear in HA as
//! devices without a custom integration. The configs are retained and sent
//! again once when HA announces itself (`online` on `<prefix>/status`) and
//! after a reload. What was advertised is kept in the index, so whatever a
//! reload or an edit made while the service was stopped took away is removed
//! from HA (before a removed camera's retained state is cleared).

pub mod discovery;
pub mod entities;

use crate::capture::CameraStates;
use crate::config::LoadedConfig;
use crate::mqtt::{IncomingMessage, MqttHandle};
use crate::stats::StatsSources;
use crate::store::Store;
use crate::workers::Rejection;
use crate::workers::errors::ErrorReporter;
use discovery::{Advertised, Publish};
use rumqttc::QoS;
use rusqlite::Connection;
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
    /// The index, where what was advertised is kept.
    pub store: Store,
}

impl HomeAssistant {
    /// Runs until the config watch ends.
    pub async fn run(mut self) {
        let mut advertised = match self.store.call(load_advertised).await {
            Ok(advertised) => advertised,
            Err(e) => {
                tracing::warn!(error = %e, "what Home Assistant was told before is unknown");
                BTreeMap::new()
            }
        };
        loop {
            let config = self.config.borrow_and_update().clone();
            self.publish(&config, &mut advertised).await;
            loop {
                tokio::select! {
                    changed = self.config.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        break;
                    }
                    Some(birth) = self.births.recv() => self.on_birth(&config, &birth, &mut advertised).await,
                }
            }
        }
    }

    /// HA's birth (`online`) brings the configs and the states once again; its last will
    /// (`offline`) brings nothing.
    async fn on_birth(
        &self,
        config: &LoadedConfig,
        birth: &IncomingMessage,
        advertised: &mut BTreeMap<String, Advertised>,
    ) {
        if let Some(size) = birth.oversize() {
            let why = format!("{size} bytes: Home Assistant's status is `online` or `offline`");
            self.errors.reject(&birth.topic, &Rejection::new("too_large", why));
            return;
        }
        if birth.payload.as_ref() != b"online" || !config.config.homeassistant.discovery {
            return;
        }
        tracing::info!("Home Assistant is online: discovery and states sent again");
        self.publish(config, advertised).await;
        self.send_states(config).await;
    }

    /// Publishes the discovery configs of `config`, removing what was advertised and is gone
    /// (everything when discovery is off), and remembers what is advertised now.
    async fn publish(&self, config: &LoadedConfig, advertised: &mut BTreeMap<String, Advertised>) {
        let (publishes, now) = if config.config.homeassistant.discovery {
            let devices = discovery::devices(config);
            (discovery::plan(config, advertised, &devices), discovery::advertised(&devices))
        } else {
            (discovery::removal(advertised), BTreeMap::new())
        };
        for publish in publishes {
            match publish {
                Publish::Config(topic, payload) => {
                    self.mqtt.publish(topic, payload.to_string(), QoS::AtLeastOnce, true)
                }
                Publish::Empty(topic) => self.mqtt.publish(topic, Vec::new(), QoS::AtLeastOnce, true),
            };
        }
        if now != *advertised {
            let rows = now.clone();
            if let Err(e) = self.store.call(move |conn| save_advertised(conn, &rows)).await {
                tracing::warn!(error = %e, "what Home Assistant was told is not remembered");
            }
            *advertised = now;
        }
    }

    async fn send_states(&self, config: &LoadedConfig) {
        let topics = self.mqtt.topics();
        if let Value::Object(states) = self.cameras.snapshot() {
            for (camera, state) in states {
                self.mqtt.publish(topics.camera_state(&camera), state.to_string(), QoS::AtLeastOnce, true);
            }
        }
        let report = self.stats.report((&config.node_id, &config.config.node.board), self.started.elapsed()).await;
        self.mqtt.publish(topics.stats(), report.to_string(), QoS::AtMostOnce, false);
    }
}

/// What was advertised, by device topic.
fn load_advertised(conn: &Connection) -> rusqlite::Result<BTreeMap<String, Advertised>> {
    let mut stmt = conn.prepare("SELECT topic, components, clears FROM ha_advertised")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)))?;
    let mut advertised = BTreeMap::new();
    for row in rows {
        let (topic, components, clears) = row?;
        let components = serde_json::from_str(&components).unwrap_or_default();
        let clears = serde_json::from_str(&clears).unwrap_or_default();
        advertised.insert(topic, Advertised { components, clears });
    }
    Ok(advertised)
}

/// Replaces what is remembered as advertised.
fn save_advertised(conn: &Connection, advertised: &BTreeMap<String, Advertised>) -> rusqlite::Result<()> {
    conn.execute("DELETE FROM ha_advertised", [])?;
    let mut stmt = conn.prepare("INSERT INTO ha_advertised (topic, components, clears) VALUES (?1, ?2, ?3)")?;
    for (topic, a) in advertised {
        let components = serde_json::to_string(&a.components).unwrap_or_default();
        let clears = serde_json::to_string(&a.clears).unwrap_or_default();
        stmt.execute(rusqlite::params![topic, components, clears])?;
    }
    Ok(())
}
