//! The node's MQTT connection and the topic layout of the contract.

pub mod ack_tracker;
pub mod backoff;
pub mod driver;
pub mod session;
pub mod topics;
pub mod url;

pub use session::{IncomingMessage, MqttHandle, Session, SessionSettings, SessionStats, Subscription};
pub use topics::Topics;
pub use url::BrokerUrl;
