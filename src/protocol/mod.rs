//! The wire protocol's names and rules, shared by config validation and the
//! parts that speak MQTT: command names and error codes, the rules for ids,
//! labels and topic levels, the broker URL and the topic builders. A leaf: it
//! depends on nothing else in the crate.

pub mod broker_url;
pub mod commands;
pub mod rules;
pub mod topics;

pub use broker_url::BrokerUrl;
pub use commands::{COMMAND_NAMES, ErrorCode};
pub use topics::{Topics, topic_matches};
