//! Drives rumqttc's event loop in a task of its own. `EventLoop::poll` is not
//! cancel-safe while it connects (a dropped poll drops the half-open
//! connection and fires the last will), so it never races other futures here.
//!
//! The driver and the session share one `Link` under a mutex: the session
//! queues a publish and its tag in one critical section, and the driver resets
//! rumqttc's state, drains its request channel and clears the tracker in
//! another, so no tag outlives the requests it belongs to.

use super::ack_tracker::AckTracker;
use super::handle::IncomingMessage;
use crate::sys::backoff::{Backoff, clock_jitter};
use rumqttc::{ConnectionError, Event, EventLoop, MqttState, Outgoing, Packet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::mpsc;

/// What a tracked publish was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tag {
    /// The outbox event with this `seq`.
    Event(i64),
    /// The `offline` status published at shutdown.
    Offline,
}

/// State shared by the session (which publishes) and the driver (which sees acknowledgements).
#[derive(Debug, Default)]
pub struct Link {
    /// A connection is up and rumqttc takes requests for it.
    pub connected: bool,
    /// Tags of publishes handed to rumqttc on this connection.
    pub tracker: AckTracker<Tag>,
}

/// The link, shared.
pub type SharedLink = Arc<Mutex<Link>>;

/// Locks the link; a poisoned lock still holds consistent data (no panics happen under it).
pub fn lock(link: &SharedLink) -> MutexGuard<'_, Link> {
    link.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What the driver tells the session.
#[derive(Debug)]
pub enum DriverEvent {
    /// The broker accepted the connection.
    Connected,
    /// The broker acknowledged a tracked publish.
    Acked(Tag),
    /// A message arrived on a subscription.
    Incoming(IncomingMessage),
    /// The connection is gone or could not be made; the driver retries after `retry_in`.
    Disconnected {
        /// Why.
        error: String,
        /// It had been connected (as opposed to a failed attempt).
        was_connected: bool,
        /// Consecutive failures.
        failures: u32,
        /// Delay before the next attempt.
        retry_in: Duration,
    },
    /// The session's disconnect went out; the driver has stopped.
    Closed,
}

/// Owns the event loop.
pub struct Driver {
    eventloop: EventLoop,
    inflight: u16,
    link: SharedLink,
    events: mpsc::Sender<DriverEvent>,
    backoff: Backoff,
    failures: u32,
}

impl Driver {
    /// A driver for `eventloop` reporting to `events`.
    pub fn new(
        eventloop: EventLoop,
        inflight: u16,
        link: SharedLink,
        events: mpsc::Sender<DriverEvent>,
        backoff: Backoff,
    ) -> Self {
        Self { eventloop, inflight, link, events, backoff, failures: 0 }
    }

    /// Polls until the session disconnects or goes away.
    pub async fn run(mut self) {
        loop {
            let event = self.eventloop.poll().await;
            let (report, retry_in) = self.handle(event);
            let closed = matches!(report, Some(DriverEvent::Closed));
            if let Some(report) = report
                && (self.events.send(report).await.is_err() || closed)
            {
                return;
            }
            if let Some(delay) = retry_in {
                tokio::time::sleep(delay).await;
            }
        }
    }

    fn handle(&mut self, event: Result<Event, ConnectionError>) -> (Option<DriverEvent>, Option<Duration>) {
        let report = match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                lock(&self.link).connected = true;
                self.failures = 0;
                self.backoff.reset();
                Some(DriverEvent::Connected)
            }
            Ok(Event::Incoming(Packet::PubAck(ack))) => {
                lock(&self.link).tracker.acked(ack.pkid).map(DriverEvent::Acked)
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                Some(DriverEvent::Incoming(IncomingMessage::new(publish.topic, publish.payload)))
            }
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                lock(&self.link).tracker.sent(pkid);
                None
            }
            Ok(Event::Outgoing(Outgoing::AwaitAck(_))) => {
                lock(&self.link).tracker.collided();
                None
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => Some(DriverEvent::Closed),
            Ok(_) => None,
            Err(error) => return self.reset(&error),
        };
        (report, None)
    }

    fn reset(&mut self, error: &ConnectionError) -> (Option<DriverEvent>, Option<Duration>) {
        let was_connected = {
            let mut link = lock(&self.link);
            // Drop everything rumqttc still holds (the channel too): the outbox republishes
            // from the index after the next connection, and the session re-sends the rest.
            self.eventloop.clean();
            self.eventloop.pending.clear();
            self.eventloop.state = MqttState::new(self.inflight, false);
            link.tracker.clear();
            std::mem::replace(&mut link.connected, false)
        };
        self.failures = self.failures.saturating_add(1);
        let retry_in = self.backoff.next_delay(clock_jitter());
        let report =
            DriverEvent::Disconnected { error: error.to_string(), was_connected, failures: self.failures, retry_in };
        (Some(report), Some(retry_in))
    }
}
