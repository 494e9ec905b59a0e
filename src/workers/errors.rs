//! `P/errors` and the per-reason reject counters of `P/stats`.

use super::Rejection;
use crate::mqtt::MqttHandle;
use crate::sys::rate::TokenBucket;
use rumqttc::QoS;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// `P/errors` messages published at most in a burst…
const PUBLISH_BURST: u32 = 2_000;
/// …and per second after it: a flood of junk costs the node a bounded share of its link.
const PUBLISH_PER_SECOND: u32 = 1_000;

/// Publishes rejections and counts them by reason (a fixed set of codes).
#[derive(Clone)]
pub struct ErrorReporter {
    mqtt: MqttHandle,
    counts: Arc<Mutex<BTreeMap<&'static str, u64>>>,
    budget: Arc<Mutex<TokenBucket>>,
}

impl ErrorReporter {
    /// A reporter publishing through `mqtt`.
    pub fn new(mqtt: MqttHandle) -> Self {
        let budget = TokenBucket::new(PUBLISH_BURST, PUBLISH_PER_SECOND, std::time::Instant::now());
        Self { mqtt, counts: Arc::default(), budget: Arc::new(Mutex::new(budget)) }
    }

    /// Publishes `{v, topic, error, worker?}` on `P/errors` (within the rate; beyond it only
    /// counted, as `unpublished`) and counts the reason.
    pub fn reject(&self, topic: &str, rejection: &Rejection) {
        self.count(rejection.reason);
        tracing::debug!(topic, reason = rejection.reason, message = %rejection.message, "message rejected");
        if !self.budget.lock().unwrap_or_else(|p| p.into_inner()).take(std::time::Instant::now()) {
            self.count("unpublished");
            return;
        }
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

    /// Counts `reason` without publishing anything (what went unanswered in a flood).
    pub fn count(&self, reason: &'static str) {
        *self.counts.lock().unwrap_or_else(|p| p.into_inner()).entry(reason).or_insert(0) += 1;
    }

    /// Counts by reason, for `P/stats`.
    pub fn snapshot(&self) -> serde_json::Value {
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        serde_json::Value::Object(counts.iter().map(|(k, v)| (k.to_string(), (*v).into())).collect())
    }
}
