//! The shell around the zone engines: detection batches in, zone events out
//! through the durable outbox, retained occupancy topics, evidence locks.

use super::engine::{Observation, TrackId, ZoneEngine, ZoneEvent, ZoneEventKind};
use super::objects::FrameObjects;
use crate::mqtt::MqttHandle;
use crate::outbox::{EventSink, EventType, NewEvent};
use crate::recording::locks::{self, NewLock};
use crate::store::Store;
use crate::wallclock::UnixMs;
use crate::workers::detections::DetectionBatch;
use crate::workers::intake::LatestDetections;
use embassy_time::Instant;
use rumqttc::QoS;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::mpsc;

/// Labels per zone whose occupancy is published; more distinct labels are counted in `all` only.
const LABELS_PER_ZONE: usize = 32;
/// How often an ongoing visit's lock is pushed forward.
const LOCK_EXTEND_EVERY: Duration = Duration::from_secs(5);

/// Zone events published, locks taken, counters.
#[derive(Debug, Default, Clone, Copy)]
pub struct ZoneCounters {
    /// Zone events emitted.
    pub events: u64,
    /// Locks recorded.
    pub locks: u64,
}

/// The zone engines of every camera with zones.
pub struct ZoneService {
    /// Engines by camera.
    pub engines: BTreeMap<String, ZoneEngine>,
    /// Where events go.
    pub events: EventSink,
    /// The index (locks).
    pub store: Store,
    /// The broker session (occupancy).
    pub mqtt: MqttHandle,
    /// Footage locked before an event.
    pub pre_roll: Duration,
    /// Footage locked after an event.
    pub post_roll: Duration,
    /// Latest batch per camera, for `P/stats`.
    pub latest: LatestDetections,
    /// Shared counters for `P/stats`.
    pub stats: std::sync::Arc<std::sync::Mutex<ZoneCounters>>,
    /// Wall-clock steps: the engines' timelines move with each.
    pub clock_steps: tokio::sync::watch::Receiver<crate::sys::clock::Steps>,
    /// Objects in each camera's whole frame.
    pub frame: FrameObjects,
}

/// A reload's change to the zone engines: per camera a new engine (its tracks start over) or
/// none (no zones left), and the lock rolls in force.
pub struct ZoneUpdate {
    /// Engines to replace or remove, by camera.
    pub engines: Vec<(String, Option<ZoneEngine>)>,
    /// `[events] pre_roll_s` and `post_roll_s`.
    pub rolls: (Duration, Duration),
    /// The labels counted in each camera's whole frame.
    pub frame_labels: BTreeMap<String, Vec<String>>,
}

/// Occupancy published, by (camera, zone, label).
type Published = BTreeMap<(String, String, String), u32>;

/// Visits of lock zones in progress: (camera, zone, track) → (lock id, last extension).
type Visits = BTreeMap<(String, usize, TrackId), (i64, std::time::Instant)>;

fn ms(instant: Instant) -> UnixMs {
    UnixMs(instant.as_millis() as i64)
}

fn instant(ts: UnixMs) -> Instant {
    Instant::from_millis(ts.0.max(0) as u64)
}

impl ZoneService {
    /// Runs until the detection seam closes; `updates` brings a reload's new engines.
    pub async fn run(mut self, mut batches: mpsc::Receiver<DetectionBatch>, mut updates: mpsc::Receiver<ZoneUpdate>) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut visits = Visits::new();
        let mut published = Published::new();
        let mut stepped = self.clock_steps.borrow_and_update().total_delta_ms;
        loop {
            let mut out: Vec<(String, ZoneEvent)> = Vec::new();
            let mut latest_ts = None;
            tokio::select! {
                batch = batches.recv() => {
                    let Some(batch) = batch else { return };
                    self.latest.record(&batch);
                    let counts = self.frame.batch(&batch.camera, UnixMs::now().0, batch.detections.iter().map(|d| d.label.as_str()));
                    self.publish_objects(counts);
                    let Some(engine) = self.engines.get_mut(&batch.camera) else { continue };
                    let observations: Vec<Observation<'_>> = batch
                        .detections
                        .iter()
                        .map(|d| Observation { track_id: d.track_id.as_deref(), label: &d.label, confidence: d.confidence, bbox: d.bbox })
                        .collect();
                    engine.observe(instant(batch.ts), &observations, &mut |e| out.push((batch.camera.clone(), e)));
                    latest_ts = Some((batch.camera.clone(), batch.ts));
                }
                _ = tick.tick() => {
                    let counts = self.frame.tick(UnixMs::now().0);
                    self.publish_objects(counts);
                    let now = instant(UnixMs::now());
                    for (camera, engine) in &mut self.engines {
                        engine.tick(now, &mut |e| out.push((camera.clone(), e)));
                    }
                }
                Some(update) = updates.recv() => self.apply(update, &mut visits, &mut published),
                Ok(()) = self.clock_steps.changed() => {
                    // Frames after a step carry the new time: the tracks follow, so a step back
                    // does not make every frame stale and a step forward expires nobody.
                    let total = self.clock_steps.borrow_and_update().total_delta_ms;
                    for engine in self.engines.values_mut() {
                        engine.shift(total - stepped);
                    }
                    stepped = total;
                }
            }
            for (camera, event) in out {
                self.handle(&camera, event, &mut visits).await;
            }
            if let Some((camera, ts)) = latest_ts {
                self.extend_visits(&camera, ts, &mut visits).await;
            }
            self.publish_occupancy(&mut published);
        }
    }

    /// Takes a reload's engines; occupancy of zones that are gone is cleared on the broker.
    fn apply(&mut self, update: ZoneUpdate, visits: &mut Visits, published: &mut Published) {
        (self.pre_roll, self.post_roll) = update.rolls;
        let (counts, gone) = self.frame.reconfigure(update.frame_labels);
        self.publish_objects(counts);
        for (camera, label) in gone {
            let topic = self.mqtt.topics().objects(&camera, &label);
            self.mqtt.publish(topic, Vec::new(), QoS::AtLeastOnce, true);
        }
        for (camera, engine) in update.engines {
            let kept: Vec<String> =
                engine.as_ref().map(|e| e.zones().iter().map(|z| z.id.clone()).collect()).unwrap_or_default();
            published.retain(|(c, zone, label), _| {
                let gone = *c == camera && !kept.contains(zone);
                if gone {
                    let topic = self.mqtt.topics().zone_count(&camera, zone, label);
                    self.mqtt.publish(topic, Vec::new(), QoS::AtLeastOnce, true);
                }
                !gone
            });
            visits.retain(|(c, _, _), _| *c != camera);
            tracing::info!(camera = %camera, zones = kept.len(), "zones reloaded");
            match engine {
                Some(engine) => self.engines.insert(camera, engine),
                None => self.engines.remove(&camera),
            };
        }
    }

    async fn handle(&self, camera: &str, event: ZoneEvent, visits: &mut Visits) {
        let Some(engine) = self.engines.get(camera) else { return };
        let Some(zone) = engine.zones().get(event.zone) else { return };
        let ts = ms(event.at);
        let new = zone_event(camera, &zone.id, &event, ts);
        let visit = event.track.as_ref().map(|t| (camera.to_string(), event.zone, t.id.clone()));
        let until = UnixMs(ts.0 + self.post_roll.as_millis() as i64);
        let ongoing = matches!(event.kind, ZoneEventKind::Exit { .. } | ZoneEventKind::Dwell { .. })
            && visit.as_ref().is_some_and(|v| visits.contains_key(v));
        // A lock zone's event and the lock it takes are one fact: one transaction.
        let lock = (zone.lock && !ongoing).then(|| NewLock {
            camera: camera.to_string(),
            from: UnixMs(ts.0 - self.pre_roll.as_millis() as i64),
            to: until,
            event_id: None,
            reason: format!("{} in zone {}", kind_name(&event.kind), zone.id),
        });
        let emitted = self
            .events
            .emit_with(new, move |conn, stored| match lock {
                Some(mut lock) => {
                    lock.event_id = Some(stored.id.clone());
                    locks::insert_lock(conn, &lock, UnixMs::now()).map(Some)
                }
                None => Ok(None),
            })
            .await;
        let lock_id = match emitted {
            Ok((_, lock_id)) => lock_id,
            Err(e) => {
                tracing::error!(camera, zone = %zone.id, error = %e, "zone event and its lock not stored");
                return;
            }
        };
        self.count(|c| c.events += 1);
        if let Some(id) = lock_id {
            self.count(|c| c.locks += 1);
            if let (ZoneEventKind::Enter, Some(visit)) = (&event.kind, visit) {
                visits.insert(visit, (id, std::time::Instant::now()));
            }
        } else if ongoing && let Some(visit) = visit {
            let lock = if matches!(event.kind, ZoneEventKind::Exit { .. }) {
                visits.remove(&visit).map(|(id, _)| id)
            } else {
                visits.get(&visit).map(|(id, _)| *id)
            };
            if let Some(id) = lock {
                self.extend(id, until).await;
            }
        }
    }

    /// Pushes the locks of visits still going on (tracks inside lock zones) to `ts + post_roll`.
    async fn extend_visits(&self, camera: &str, ts: UnixMs, visits: &mut Visits) {
        let Some(engine) = self.engines.get(camera) else { return };
        let until = UnixMs(ts.0 + self.post_roll.as_millis() as i64);
        let mut due = Vec::new();
        for ((visit_camera, zone, track), (id, extended)) in visits.iter_mut() {
            let inside = visit_camera == camera && engine.inside(*zone).any(|t| t == track);
            if inside && extended.elapsed() >= LOCK_EXTEND_EVERY {
                *extended = std::time::Instant::now();
                due.push(*id);
            }
        }
        for id in due {
            self.extend(id, until).await;
        }
    }

    async fn extend(&self, id: i64, until: UnixMs) {
        if let Err(e) = self.store.call(move |conn| locks::extend_lock(conn, id, until)).await {
            tracing::error!(lock = id, error = %e, "evidence lock not extended");
        }
    }

    fn count(&self, f: impl FnOnce(&mut ZoneCounters)) {
        f(&mut self.stats.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// Publishes whole-frame object counts (retained).
    fn publish_objects(&self, counts: Vec<super::objects::ObjectCount>) {
        for (camera, label, count) in counts {
            let topic = self.mqtt.topics().objects(&camera, &label);
            self.mqtt.publish(topic, count.to_string(), QoS::AtLeastOnce, true);
        }
    }

    /// Publishes `P/zones/<cam>/<zone>/<label>` and `.../all` (retained) where they changed.
    fn publish_occupancy(&self, published: &mut Published) {
        for (camera, engine) in &self.engines {
            for (z, zone) in engine.zones().iter().enumerate() {
                let mut counts: Vec<(String, u32)> =
                    engine.occupancy_by_label(z).take(LABELS_PER_ZONE).map(|(l, n)| (l.to_string(), n)).collect();
                let total = engine.inside(z).count() as u32;
                counts.push(("all".to_string(), total));
                // Every configured label has a value from the start (0 until it is seen).
                for label in zone.labels() {
                    if !counts.iter().any(|(l, _)| l == label) {
                        counts.push((label.clone(), 0));
                    }
                }
                // Labels gone from the zone go back to 0.
                for ((c, zid, label), count) in published.iter() {
                    if c == camera && *zid == zone.id && *count > 0 && !counts.iter().any(|(l, _)| l == label) {
                        counts.push((label.clone(), 0));
                    }
                }
                for (label, count) in counts {
                    let key = (camera.clone(), zone.id.clone(), label.clone());
                    if published.get(&key) == Some(&count) {
                        continue;
                    }
                    let topic = self.mqtt.topics().zone_count(camera, &zone.id, &label);
                    self.mqtt.publish(topic, count.to_string(), QoS::AtLeastOnce, true);
                    published.insert(key, count);
                }
            }
        }
    }
}

fn kind_name(kind: &ZoneEventKind) -> &'static str {
    match kind {
        ZoneEventKind::Enter => "zone_enter",
        ZoneEventKind::Exit { .. } => "zone_exit",
        ZoneEventKind::Dwell { .. } => "zone_dwell",
        ZoneEventKind::Cross { .. } => "zone_cross",
        ZoneEventKind::Count { .. } => "zone_count",
    }
}

/// The outbox event of a zone event.
fn zone_event(camera: &str, zone: &str, event: &ZoneEvent, ts: UnixMs) -> NewEvent {
    let seconds = |d: &embassy_time::Duration| d.as_millis() as f64 / 1000.0;
    let new = match &event.kind {
        ZoneEventKind::Enter => NewEvent::new(EventType::ZoneEnter, Some(camera), ts),
        ZoneEventKind::Exit { dwell } => {
            NewEvent::new(EventType::ZoneExit, Some(camera), ts).with("dwell_s", seconds(dwell))
        }
        ZoneEventKind::Dwell { dwell } => {
            NewEvent::new(EventType::ZoneDwell, Some(camera), ts).with("dwell_s", seconds(dwell))
        }
        ZoneEventKind::Cross { ab } => {
            NewEvent::new(EventType::ZoneCross, Some(camera), ts).with("direction", if *ab { "ab" } else { "ba" })
        }
        ZoneEventKind::Count { count, reached } => NewEvent::new(EventType::ZoneCount, Some(camera), ts)
            .with("count", *count)
            .with("state", if *reached { "reached" } else { "below" }),
    };
    let new = new.with("zone", zone);
    match &event.track {
        Some(track) => new
            .with("label", track.label.as_str())
            .with("track_id", track.id.as_str())
            .with("confidence", (track.confidence * 1000.0).round() / 1000.0)
            .with("bbox", track.bbox.to_vec()),
        None => new,
    }
}
