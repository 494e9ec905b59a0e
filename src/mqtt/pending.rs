//! Publishes held while rumqttc's queue is full (a burst of replies, say):
//! kept in order, bounded by count and by bytes, the oldest dropped first.
//! Urgent ones (the replies to authorized commands) go out before the rest
//! and are never dropped: few are ever in flight.

use rumqttc::QoS;
use std::collections::VecDeque;

/// Publishes held at most, by count.
pub const PENDING_MAX: usize = 4096;
/// Publishes held at most, by payload bytes.
pub const PENDING_MAX_BYTES: usize = 8 << 20;

/// A publish waiting for room in rumqttc's queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    /// Its topic.
    pub topic: String,
    /// Its payload.
    pub payload: Vec<u8>,
    /// Its QoS.
    pub qos: QoS,
    /// Retained.
    pub retain: bool,
    /// Goes out before the others.
    pub urgent: bool,
}

/// The held publishes.
#[derive(Debug)]
pub struct PendingQueue {
    urgent: VecDeque<Pending>,
    items: VecDeque<Pending>,
    bytes: usize,
    max: usize,
    max_bytes: usize,
}

impl PendingQueue {
    /// An empty queue of at most `max` publishes and `max_bytes` payload bytes.
    pub fn new(max: usize, max_bytes: usize) -> Self {
        Self { urgent: VecDeque::new(), items: VecDeque::new(), bytes: 0, max, max_bytes }
    }

    /// Holds `publish` behind the others; returns how many of the oldest were dropped to
    /// stay within the limits.
    pub fn push(&mut self, publish: Pending) -> u64 {
        self.bytes += publish.payload.len();
        if publish.urgent {
            self.urgent.push_back(publish);
            return 0;
        }
        self.items.push_back(publish);
        let mut dropped = 0;
        while self.len() > self.max || self.bytes > self.max_bytes {
            let Some(oldest) = self.items.pop_front() else { break };
            self.bytes -= oldest.payload.len();
            dropped += 1;
        }
        dropped
    }

    /// The oldest urgent publish, else the oldest other one, taken out.
    pub fn pop(&mut self) -> Option<Pending> {
        let publish = self.urgent.pop_front().or_else(|| self.items.pop_front())?;
        self.bytes -= publish.payload.len();
        Some(publish)
    }

    /// Puts back a publish that could not be sent, first in line.
    pub fn put_back(&mut self, publish: Pending) {
        self.bytes += publish.payload.len();
        if publish.urgent { self.urgent.push_front(publish) } else { self.items.push_front(publish) }
    }

    /// Drops everything; returns how many were not retained (the retained ones go out again
    /// on the next connection).
    pub fn clear(&mut self) -> u64 {
        self.bytes = 0;
        self.urgent.drain(..).chain(self.items.drain(..)).filter(|p| !p.retain).count() as u64
    }

    /// Publishes held.
    pub fn len(&self) -> usize {
        self.urgent.len() + self.items.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.urgent.is_empty() && self.items.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publish(topic: &str, bytes: usize, retain: bool) -> Pending {
        Pending { topic: topic.into(), payload: vec![0; bytes], qos: QoS::AtLeastOnce, retain, urgent: false }
    }

    #[test]
    fn keeps_order_and_drops_the_oldest_by_count_and_bytes() {
        let mut q = PendingQueue::new(3, 100);
        for t in ["a", "b", "c"] {
            assert_eq!(q.push(publish(t, 10, false)), 0);
        }
        assert_eq!(q.push(publish("d", 10, false)), 1, "over the count");
        assert_eq!(q.pop().map(|p| p.topic), Some("b".into()));
        assert_eq!(q.push(publish("big", 95, false)), 2, "over the bytes: c and d go");
        assert_eq!(q.len(), 1);
        assert_eq!(q.pop().map(|p| p.topic), Some("big".into()));
        assert!(q.is_empty());
    }

    #[test]
    fn a_publish_put_back_goes_first_and_clear_counts_only_the_unretained() {
        let mut q = PendingQueue::new(10, 1000);
        q.push(publish("state", 5, true));
        q.push(publish("frame", 5, false));
        let first = q.pop().expect("one");
        q.put_back(first);
        assert_eq!(q.pop().map(|p| p.topic), Some("state".into()));
        q.put_back(publish("state", 5, true));
        assert_eq!(q.clear(), 1);
        assert!(q.is_empty());
        assert_eq!(q.push(publish("x", 1000, false)), 0, "the bytes were reset");
    }

    #[test]
    fn urgent_publishes_overtake_and_are_not_dropped() {
        let mut q = PendingQueue::new(2, 1000);
        q.push(publish("a", 1, false));
        q.push(publish("b", 1, false));
        let reply = Pending { urgent: true, ..publish("reply", 1, false) };
        assert_eq!(q.push(reply.clone()), 0);
        assert_eq!(q.push(publish("c", 1, false)), 2, "over the count: the oldest others go, not the reply");
        assert_eq!(q.pop().map(|p| p.topic), Some("reply".into()));
        q.put_back(reply);
        assert_eq!(q.pop().map(|p| p.topic), Some("reply".into()), "put back first in its lane");
        assert_eq!(q.pop().map(|p| p.topic), Some("c".into()));
    }
}
