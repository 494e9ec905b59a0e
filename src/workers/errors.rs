//! `P/errors` and the per-reason reject counters of `P/stats`.

use super::Rejection;
use crate::mqtt::MqttHandle;
use rumqttc::QoS;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Publishes rejections and counts them by reason (a fixed set of codes).
#[derive(Clone)]
pub struct ErrorReporter {
    mqtt: MqttHandle,
    counts: Arc<Mutex<BTreeMap<&'static str, u64>>>,
}

impl ErrorReporter {
    /// A reporter publishing through `mqtt`.
    pub fn new(mqtt: MqttHandle) -> Self {
        Self { mqtt, counts: Arc::default() }
    }

    /// Publishes `{v, topic, error, worker?}` on `P/errors` and counts the reason.
    pub fn reject(&self, topic: &str, rejection: &Rejection) {
        *self.counts.lock().unwrap_or_else(|p| p.into_inner()).entry(rejection.reason).or_insert(0) += 1;
        tracing::debug!(topic, reason = rejection.reason, message = %rejection.message, "message rejected");
        let mut body = serde_json::json!({
            "v": 1,
            "topic": topic,
            "error": format!("{}: {}", rejection.reason, rejection.message),
        });
        if let Some(worker) = &rejection.worker {
            body["worker"] = worker.as_str().into();
        }
        let errors = self.mqtt.topics().errors();
        self.mqtt.publish(errors, body.to_string(), QoS::AtMostOnce, false);
    }

    /// Counts by reason, for `P/stats`.
    pub fn snapshot(&self) -> serde_json::Value {
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        serde_json::Value::Object(counts.iter().map(|(k, v)| (k.to_string(), (*v).into())).collect())
    }
}
