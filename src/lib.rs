//! heldar-edge: an NVR kernel for ARM edge boards. It records cameras,
//! samples frames for perception workers, turns their detections into zone
//! events and publishes them over MQTT through a durable outbox.
//!
//! The modules form layers (see `docs/development.md`); a module only uses
//! modules of lower layers, which `tests/layers.rs` checks.

pub mod backup;
pub mod capacity;
pub mod capture;
pub mod cli;
pub mod commands;
pub mod config;
pub mod heartbeat;
pub mod homeassistant;
pub mod logging;
pub mod mqtt;
pub mod offers;
pub mod outbox;
pub mod protocol;
pub mod recording;
pub mod sampler;
pub mod service;
pub mod stats;
pub mod store;
pub mod sys;
pub mod viewing;
pub mod wallclock;
pub mod workers;
pub mod zones;
