//! The rest of the service's way to the broker: the handle that queues
//! publishes for the session, what the session delivers, and its counters.

use super::pending::Pending;
use crate::protocol::topics::Topics;
use rumqttc::QoS;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Requests other tasks may queue for the session before it drops them.
pub const SESSION_QUEUE: usize = 256;
/// How long an urgent publish waits for room in the session's queue.
const SESSION_WAIT: Duration = Duration::from_secs(5);

/// A message received on a subscription.
#[derive(Clone, Debug)]
pub struct IncomingMessage {
    /// Its topic.
    pub topic: String,
    /// Its payload; empty when it was over its subscription's limit.
    pub payload: bytes::Bytes,
    /// The payload's size as sent.
    pub size: usize,
}

impl IncomingMessage {
    /// A message as received.
    pub fn new(topic: String, payload: bytes::Bytes) -> Self {
        let size = payload.len();
        Self { topic, payload, size }
    }

    /// The size sent, when the payload was over its subscription's limit and was dropped
    /// unread.
    pub fn oversize(&self) -> Option<usize> {
        (self.size > self.payload.len()).then_some(self.size)
    }
}

/// A subscription registered before the session starts; re-made after every reconnect.
pub struct Subscription {
    /// Topic filter.
    pub filter: String,
    /// Largest payload passed on; a larger one is passed on empty, with its size, so its
    /// consumer can refuse it without anything being held.
    pub max_bytes: usize,
    /// Where matching messages go (full: dropped and counted).
    pub sink: mpsc::Sender<IncomingMessage>,
}

/// Counters of the session, read by `P/stats`.
#[derive(Debug, Default)]
pub struct SessionStats {
    /// Connected to the broker now.
    pub connected: AtomicBool,
    /// Successful connections since start.
    pub connects: AtomicU64,
    /// Outbox events published (including republishes).
    pub events_published: AtomicU64,
    /// Outbox events acknowledged by the broker.
    pub events_acked: AtomicU64,
    /// Publishes dropped: queue full, or not retained while offline.
    pub publishes_dropped: AtomicU64,
    /// Incoming messages dropped because their consumer was full.
    pub incoming_dropped: AtomicU64,
    /// Beats while the session's loop turns (the systemd watchdog watches it).
    pub heartbeat: crate::heartbeat::Heartbeat,
}

pub(super) enum Request {
    /// Publish this.
    Publish(Pending),
    /// Say `offline`, disconnect, then answer.
    Shutdown(oneshot::Sender<()>),
}

/// The rest of the service's way to the broker; cheap to clone, never blocks.
#[derive(Clone)]
pub struct MqttHandle {
    tx: mpsc::Sender<Request>,
    stats: Arc<SessionStats>,
    topics: Topics,
}

impl MqttHandle {
    /// A handle queueing into `tx`, counting into `stats`.
    pub(super) fn new(tx: mpsc::Sender<Request>, stats: Arc<SessionStats>, topics: Topics) -> Self {
        Self { tx, stats, topics }
    }

    /// Queues a publish; `false` (and counted) when the session's queue is full.
    pub fn publish(&self, topic: String, payload: impl Into<Vec<u8>>, qos: QoS, retain: bool) -> bool {
        let publish = Pending { topic, payload: payload.into(), qos, retain, urgent: false };
        let ok = self.tx.try_send(Request::Publish(publish)).is_ok();
        if !ok {
            self.stats.publishes_dropped.fetch_add(1, Ordering::Relaxed);
        }
        ok
    }

    /// Publishes at QoS 1 ahead of everything waiting (a reply to an authorized command),
    /// waiting for room in the session's queue rather than dropping it; `false` (counted)
    /// only when the session is gone or stays full for `SESSION_WAIT`.
    pub async fn publish_urgent(&self, topic: String, payload: impl Into<Vec<u8>>) -> bool {
        let publish = Pending { topic, payload: payload.into(), qos: QoS::AtLeastOnce, retain: false, urgent: true };
        let sent = tokio::time::timeout(SESSION_WAIT, self.tx.send(Request::Publish(publish))).await;
        let ok = matches!(sent, Ok(Ok(())));
        if !ok {
            self.stats.publishes_dropped.fetch_add(1, Ordering::Relaxed);
        }
        ok
    }

    /// The session's counters.
    pub fn stats(&self) -> &Arc<SessionStats> {
        &self.stats
    }

    /// The node's topics.
    pub fn topics(&self) -> &Topics {
        &self.topics
    }

    /// Publishes `offline`, flushes acknowledgements and disconnects; returns when done.
    pub async fn shutdown(&self) {
        let (done_tx, done_rx) = oneshot::channel();
        if self.tx.send(Request::Shutdown(done_tx)).await.is_ok() {
            let _ = done_rx.await;
        }
    }
}
