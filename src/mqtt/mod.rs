//! The node's MQTT connection: one session, driven by its own task, that
//! announces the node, reconnects, restores state and drains the outbox.

pub mod ack_tracker;
pub mod drain;
pub mod driver;
pub mod pending;
pub mod session;
pub mod settings;

pub use session::{IncomingMessage, MqttHandle, Session, SessionStats, Subscription};
pub use settings::SessionSettings;
