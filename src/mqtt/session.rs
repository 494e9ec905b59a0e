//! The MQTT session: one broker connection for the whole node. It announces
//! the node (`P/status` birth and last will), reconnects forever with capped
//! backoff, restores subscriptions and retained state after each reconnect,
//! and drains the durable outbox in `seq` order, marking events sent on PUBACK.
//! Everything else talks to it through a bounded channel and never waits on
//! the network.

use super::drain::OutboxDrain;
use super::driver::{self, Driver, DriverEvent, SharedLink, Tag};
use super::handle::{IncomingMessage, MqttHandle, Request, SESSION_QUEUE, SessionStats, Subscription};
use super::pending::{PENDING_MAX, PENDING_MAX_BYTES, Pending, PendingQueue};
use super::settings::{SessionSettings, authenticate, no_delay};
use crate::outbox::{self, OutboxRow};
use crate::protocol::topics::{Topics, topic_matches};
use crate::store::Store;
use crate::sys::backoff::Backoff;
use crate::wallclock::UnixMs;
use anyhow::Result;
use rumqttc::{AsyncClient, LastWill, MqttOptions, QoS};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::Instant;

/// Reports the driver may queue for the session.
const DRIVER_QUEUE: usize = 256;
/// Publishes rumqttc may hold in flight (outbox window plus state and stats).
const MQTT_INFLIGHT: u16 = 64;
/// Retained topics the session restores after a reconnect.
const RETAINED_MAX: usize = 1024;
/// How long shutdown waits for the broker to take `offline`.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// The session task's state.
pub struct Session {
    client: AsyncClient,
    driver: Option<Driver>,
    link: SharedLink,
    driver_events: mpsc::Receiver<DriverEvent>,
    requests: mpsc::Receiver<Request>,
    topics: Topics,
    store: Store,
    outbox_wake: Arc<Notify>,
    subscriptions: Vec<Subscription>,
    stats: Arc<SessionStats>,
    retained: BTreeMap<String, Vec<u8>>,
    pending: PendingQueue,
    connected: bool,
    drain: OutboxDrain,
    fetch: Option<oneshot::Receiver<Result<Vec<OutboxRow>>>>,
}

/// Builds the session and its handle; run the session with `Session::run`.
pub fn session(
    settings: &SessionSettings,
    topics: Topics,
    store: Store,
    outbox_wake: Arc<Notify>,
    subscriptions: Vec<Subscription>,
) -> Result<(Session, MqttHandle)> {
    let mut options = MqttOptions::new(&settings.client_id, &settings.url.host, settings.url.port);
    options
        .set_keep_alive(settings.keepalive)
        .set_clean_session(true)
        .set_inflight(MQTT_INFLIGHT)
        .set_max_packet_size(settings.max_incoming_bytes, settings.max_packet_bytes)
        .set_last_will(LastWill::new(topics.status(), "offline", QoS::AtLeastOnce, true));
    authenticate(&mut options, settings)?;
    let (client, mut eventloop) = AsyncClient::new(options, MQTT_INFLIGHT as usize);
    no_delay(&mut eventloop);
    let link = SharedLink::default();
    let (driver_tx, driver_events) = mpsc::channel(DRIVER_QUEUE);
    let backoff = Backoff::new(settings.backoff.0, settings.backoff.1);
    let driver = Driver::new(eventloop, MQTT_INFLIGHT, link.clone(), driver_tx, backoff);
    let (tx, requests) = mpsc::channel(SESSION_QUEUE);
    let stats = Arc::new(SessionStats::default());
    let handle = MqttHandle::new(tx, stats.clone(), topics.clone());
    let session = Session {
        client,
        driver: Some(driver),
        link,
        driver_events,
        requests,
        topics,
        store,
        outbox_wake,
        subscriptions,
        stats,
        retained: BTreeMap::new(),
        pending: PendingQueue::new(PENDING_MAX, PENDING_MAX_BYTES),
        connected: false,
        drain: OutboxDrain::default(),
        fetch: None,
    };
    Ok((session, handle))
}

impl Session {
    /// Runs until `MqttHandle::shutdown`.
    pub async fn run(mut self) {
        let Some(driver) = self.driver.take() else { return };
        let mut driver_task = tokio::spawn(driver.run());
        let mut flush = tokio::time::interval(Duration::from_millis(100));
        flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // A slow look at the outbox also catches a failed read and rows written by another process.
        let mut recheck = tokio::time::interval(Duration::from_secs(1));
        recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            self.maybe_fetch();
            let fetching = self.fetch.is_some();
            tokio::select! {
                request = self.requests.recv() => match request {
                    Some(Request::Publish(publish)) => self.publish(publish),
                    Some(Request::Shutdown(done)) => {
                        self.shutdown(&mut driver_task).await;
                        let _ = done.send(());
                        return;
                    }
                    None => break,
                },
                event = self.driver_events.recv() => match event {
                    Some(event) => self.on_driver_event(event),
                    None => break,
                },
                rows = async { self.fetch.as_mut().expect("guarded").await }, if fetching => {
                    self.fetch = None;
                    self.on_rows(rows);
                }
                () = self.outbox_wake.notified() => self.drain.wake(),
                _ = flush.tick() => {
                    self.stats.heartbeat.beat();
                    self.flush_acks();
                    self.send_pending();
                }
                _ = recheck.tick() => self.drain.wake(),
            }
        }
        driver_task.abort();
    }

    fn on_driver_event(&mut self, event: DriverEvent) {
        match event {
            DriverEvent::Connected => self.on_connected(),
            DriverEvent::Acked(tag) => {
                self.on_acked(tag);
                self.send_pending();
            }
            DriverEvent::Incoming(message) => self.route(message),
            DriverEvent::Disconnected { error, was_connected, failures, retry_in } => {
                self.connected = false;
                self.stats.connected.store(false, Ordering::Relaxed);
                self.fetch = None;
                self.drain.disconnected();
                self.drop_pending(false);
                let retry_in_ms = retry_in.as_millis() as u64;
                if was_connected {
                    tracing::warn!(error = %error, retry_in_ms, "mqtt connection lost");
                } else if failures.is_power_of_two() {
                    tracing::warn!(error = %error, attempts = failures, retry_in_ms, "mqtt broker unreachable");
                }
            }
            DriverEvent::Closed => {}
        }
    }

    fn publish(&mut self, publish: Pending) {
        if publish.retain {
            if self.retained.len() < RETAINED_MAX || self.retained.contains_key(&publish.topic) {
                self.retained.insert(publish.topic.clone(), publish.payload.clone());
            } else {
                tracing::warn!(topic = %publish.topic, "too many retained topics: not restored after reconnects");
            }
        }
        if !self.connected {
            // Retained state goes out again on the next connection; the rest is lost.
            if !publish.retain {
                self.stats.publishes_dropped.fetch_add(1, Ordering::Relaxed);
            }
            return;
        }
        // Behind anything already waiting (in its lane), so publishes keep their order.
        let dropped = self.pending.push(publish);
        self.stats.publishes_dropped.fetch_add(dropped, Ordering::Relaxed);
        self.send_pending();
    }

    /// Hands waiting publishes to rumqttc while it takes them.
    fn send_pending(&mut self) {
        while let Some(publish) = self.pending.pop() {
            let retain = publish.retain;
            match self.try_send(publish, None) {
                Ok(()) => {}
                Err(Some(publish)) => {
                    self.pending.put_back(publish);
                    return;
                }
                Err(None) => {
                    self.drop_pending(!retain);
                    return;
                }
            }
        }
    }

    /// Drops what waits (disconnected: what is retained goes out again on the next
    /// connection), counting the rest and `one_more` as dropped.
    fn drop_pending(&mut self, one_more: bool) {
        let dropped = self.pending.clear() + u64::from(one_more);
        self.stats.publishes_dropped.fetch_add(dropped, Ordering::Relaxed);
    }

    /// Hands a publish to rumqttc if connected; `false` when it was not taken.
    fn send(&mut self, topic: String, payload: Vec<u8>, qos: QoS, retain: bool, tag: Option<Tag>) -> bool {
        self.try_send(Pending { topic, payload, qos, retain, urgent: false }, tag).is_ok()
    }

    /// Hands a publish to rumqttc if connected; gives it back when rumqttc's queue is full
    /// (`Err(None)`: not connected).
    fn try_send(&mut self, publish: Pending, tag: Option<Tag>) -> Result<(), Option<Pending>> {
        let mut link = driver::lock(&self.link);
        if !link.connected {
            return Err(None);
        }
        let Pending { topic, payload, qos, retain, urgent } = publish;
        match self.client.try_publish(topic, qos, retain, payload) {
            Ok(()) => {
                link.tracker.queued(tag);
                Ok(())
            }
            Err(rumqttc::ClientError::TryRequest(rumqttc::Request::Publish(p))) => {
                tracing::debug!("mqtt request queue full");
                Err(Some(Pending { topic: p.topic, payload: p.payload.to_vec(), qos, retain, urgent }))
            }
            Err(e) => {
                tracing::debug!(error = %e, "mqtt publish not queued");
                Err(None)
            }
        }
    }

    fn on_connected(&mut self) {
        self.connected = true;
        self.stats.connected.store(true, Ordering::Relaxed);
        self.stats.connects.fetch_add(1, Ordering::Relaxed);
        tracing::info!("mqtt connected");
        // Subscriptions go first: the broker takes them before `online`, so whoever sees
        // `online` can send commands at once.
        for subscription in &self.subscriptions {
            if let Err(e) = self.client.try_subscribe(&subscription.filter, QoS::AtLeastOnce) {
                tracing::warn!(filter = %subscription.filter, error = %e, "mqtt subscribe not queued");
            }
        }
        self.send(self.topics.status(), b"online".to_vec(), QoS::AtLeastOnce, true, None);
        let retained: Vec<(String, Vec<u8>)> = self.retained.iter().map(|(t, p)| (t.clone(), p.clone())).collect();
        for (topic, payload) in retained {
            self.send(topic, payload, QoS::AtLeastOnce, true, None);
        }
        // Everything unacknowledged goes out again, in seq order.
        self.drain.connected();
    }

    fn on_acked(&mut self, tag: Tag) {
        if let Tag::Event(seq) = tag {
            self.stats.events_acked.fetch_add(1, Ordering::Relaxed);
            if self.drain.acked(seq) {
                self.flush_acks();
            }
        }
    }

    fn route(&mut self, mut message: IncomingMessage) {
        let Some(subscription) = self.subscriptions.iter().find(|s| topic_matches(&s.filter, &message.topic)) else {
            return;
        };
        if message.payload.len() > subscription.max_bytes {
            message.payload = bytes::Bytes::new();
        }
        if subscription.sink.try_send(message).is_err() {
            self.stats.incoming_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn maybe_fetch(&mut self) {
        let Some((after, limit)) = self.drain.next_fetch(self.connected, self.fetch.is_some()) else { return };
        // Acknowledgements go first so the fetch, queued behind them, does not see those rows again.
        self.flush_acks();
        self.fetch = self.store.try_call(move |conn| outbox::fetch_unsent(conn, after, limit));
        if self.fetch.is_none() {
            // The store queue is full: the next turn tries again.
            self.drain.fetch_not_queued();
        }
    }

    fn on_rows(&mut self, rows: Result<Result<Vec<OutboxRow>>, oneshot::error::RecvError>) {
        let rows = match rows {
            Ok(Ok(rows)) => rows,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "reading the outbox failed");
                return;
            }
            Err(_) => return,
        };
        if !self.connected {
            return;
        }
        self.drain.fetched(rows.len());
        for row in rows {
            let topic = self.topics.event(&row.camera, &row.kind);
            if !self.send(topic, row.payload.into_bytes(), QoS::AtLeastOnce, false, Some(Tag::Event(row.seq))) {
                self.drain.not_published();
                break;
            }
            self.drain.published(row.seq);
            self.stats.events_published.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn flush_acks(&mut self) {
        let seqs = self.drain.take_acks();
        if seqs.is_empty() {
            return;
        }
        let retry = seqs.clone();
        if self.store.try_call(move |conn| outbox::mark_sent(conn, &seqs, UnixMs::now())).is_none() {
            self.drain.keep_acks(retry);
        }
    }

    async fn shutdown(&mut self, driver_task: &mut tokio::task::JoinHandle<()>) {
        let deadline = Instant::now() + SHUTDOWN_GRACE;
        if self.send(self.topics.status(), b"offline".to_vec(), QoS::AtLeastOnce, true, Some(Tag::Offline)) {
            // Wait for the broker to take `offline`, keeping acknowledgements of events that arrive meanwhile.
            while let Ok(Some(event)) = tokio::time::timeout_at(deadline, self.driver_events.recv()).await {
                match event {
                    DriverEvent::Acked(Tag::Offline) => break,
                    DriverEvent::Acked(tag) => self.on_acked(tag),
                    DriverEvent::Disconnected { .. } | DriverEvent::Closed => break,
                    DriverEvent::Connected | DriverEvent::Incoming(_) => {}
                }
            }
            let _ = self.client.try_disconnect();
        }
        let seqs = self.drain.take_acks();
        if !seqs.is_empty() {
            let marked = self.store.call(move |conn| outbox::mark_sent(conn, &seqs, UnixMs::now())).await;
            if let Err(e) = marked {
                tracing::warn!(error = %e, "could not mark the last acknowledged events sent");
            }
        }
        if self.connected {
            let closing =
                tokio::time::timeout_at(deadline.max(Instant::now() + Duration::from_millis(200)), &mut *driver_task);
            if closing.await.is_err() {
                tracing::warn!("mqtt disconnect did not complete in time");
            }
        }
        driver_task.abort();
        self.stats.connected.store(false, Ordering::Relaxed);
        tracing::info!("mqtt session closed");
    }
}
