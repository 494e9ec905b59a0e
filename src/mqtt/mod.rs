//! The node's MQTT connection: one session, driven by its own task, that
//! announces the node, reconnects, restores state and drains the outbox.

pub mod ack_tracker;
pub mod drain;
pub mod driver;
pub mod handle;
pub mod pending;
pub mod session;
pub mod settings;

pub use handle::{IncomingMessage, MqttHandle, SessionStats, Subscription};
pub use session::Session;
pub use settings::SessionSettings;
