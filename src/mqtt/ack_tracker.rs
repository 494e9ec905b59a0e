//! Matches broker acknowledgements to what was published.
//!
//! rumqttc tells neither the caller of `publish` which packet id it assigned
//! nor which publish a PUBACK answers; it does report, in request order,
//! `Outgoing::Publish(pkid)` (or `AwaitAck(pkid)` on a packet-id collision)
//! for every publish it takes from its channel. The session is the only
//! publisher, so a FIFO of tags pushed at publish time lines up with those
//! reports. On a connection error the session drops rumqttc's whole state and
//! this tracker together, so both restart empty.

use std::collections::{HashMap, VecDeque};

/// Tags of publishes in flight, keyed by packet id once rumqttc assigned one.
#[derive(Debug)]
pub struct AckTracker<T> {
    queued: VecDeque<Option<T>>,
    in_flight: HashMap<u16, T>,
    collided: Option<Option<T>>,
}

impl<T> Default for AckTracker<T> {
    fn default() -> Self {
        Self { queued: VecDeque::new(), in_flight: HashMap::new(), collided: None }
    }
}

impl<T> AckTracker<T> {
    /// A publish was handed to rumqttc; `tag` is what its PUBACK should return (None: not tracked).
    pub fn queued(&mut self, tag: Option<T>) {
        self.queued.push_back(tag);
    }

    /// rumqttc reported `Outgoing::Publish(pkid)`.
    pub fn sent(&mut self, pkid: u16) {
        // A collided publish goes out when its packet id frees, before any new request.
        let tag = match self.collided.take() {
            Some(tag) => tag,
            None => self.queued.pop_front().flatten(),
        };
        if let (Some(tag), true) = (tag, pkid != 0) {
            self.in_flight.insert(pkid, tag);
        }
    }

    /// rumqttc reported `Outgoing::AwaitAck(pkid)`: the publish waits for its packet id.
    pub fn collided(&mut self) {
        self.collided = Some(self.queued.pop_front().flatten());
    }

    /// The broker acknowledged `pkid`; returns the tag of that publish.
    pub fn acked(&mut self, pkid: u16) -> Option<T> {
        self.in_flight.remove(&pkid)
    }

    /// Publishes handed over and not yet acknowledged, tracked or not.
    pub fn outstanding(&self) -> usize {
        self.queued.len() + self.in_flight.len() + usize::from(self.collided.is_some())
    }

    /// Forgets everything (the connection and rumqttc's state are gone).
    pub fn clear(&mut self) {
        self.queued.clear();
        self.in_flight.clear();
        self.collided = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_acks_to_tags_in_request_order() {
        let mut t = AckTracker::default();
        t.queued(Some("e1"));
        t.queued(None);
        t.queued(Some("e2"));
        t.sent(1);
        t.sent(0); // a QoS 0 publish
        t.sent(2);
        assert_eq!(t.acked(2), Some("e2"));
        assert_eq!(t.acked(1), Some("e1"));
        assert_eq!(t.acked(1), None);
        assert_eq!(t.outstanding(), 0);
    }

    #[test]
    fn a_collided_publish_keeps_its_tag() {
        let mut t = AckTracker::default();
        t.queued(Some(1));
        t.queued(Some(2));
        t.sent(5);
        t.collided();
        assert_eq!(t.acked(5), Some(1));
        t.sent(5);
        assert_eq!(t.acked(5), Some(2));
    }

    #[test]
    fn clear_forgets_everything() {
        let mut t = AckTracker::default();
        t.queued(Some(1));
        t.sent(3);
        t.queued(Some(2));
        t.clear();
        assert_eq!(t.outstanding(), 0);
        assert_eq!(t.acked(3), None);
    }
}
