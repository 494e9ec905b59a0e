//! Commands over MQTT (DESIGN §4): requests on `P/cmd/<name>`, one reply each
//! on `P/replies/<id>`, authorized per key with HMAC-SHA256 signatures.

pub mod auth;
pub mod client;
pub mod exec;
pub mod journal;
pub mod queue;
pub mod reply;
pub mod request;
pub mod router;
pub mod share;
