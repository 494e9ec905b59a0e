//! The zone engine of one camera: its zones and the tracks it remembers, in
//! tables of fixed capacity, turned into zone events. Pure: the clock (the
//! frames' capture time) is passed in; events go to a callback.

use super::geometry::{self, Pt};
use super::steps::{ZoneState, line_step, polygon_step};
use crate::capacity::{MAX_TRACKS_PER_CAMERA, MAX_ZONE_POINTS, MAX_ZONES_PER_CAMERA};
use crate::config::schema::{LineDirection, ZoneConfig};
use embassy_time::{Duration, Instant};
use heapless::{String as HString, Vec as HVec};

/// A track not seen for this long leaves its zones (with an exit) and is forgotten.
pub const TRACK_TIMEOUT: Duration = Duration::from_secs(10);
/// A detection without `track_id` continues the same-label track whose last box overlaps it
/// most, if that overlap (IoU) is at least this.
pub const ASSOCIATION_IOU: f64 = 0.3;

/// A track id: the worker's, or `auto-<n>` given by association.
pub type TrackId = HString<64>;

/// What a zone is. Inline points, no heap: the zone table is fixed after start.
#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant)]
enum Shape {
    Polygon(HVec<Pt, MAX_ZONE_POINTS>),
    Line { a: Pt, b: Pt, direction: LineDirection },
}

/// A zone as the engine uses it (built once from the config).
#[derive(Clone, Debug)]
pub struct Zone {
    /// Zone id.
    pub id: String,
    shape: Shape,
    labels: Vec<String>,
    min_confidence: f64,
    /// Observations before inside/outside (or a side of a line) flips.
    pub(super) inertia: u32,
    /// Time inside before a dwell event.
    pub(super) dwell: Option<Duration>,
    count_threshold: u32,
    /// Lock footage around this zone's events.
    pub lock: bool,
}

impl Zone {
    /// The labels it counts (empty: every label).
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// Builds a zone from a validated config entry.
    pub fn from_config(config: &ZoneConfig) -> Self {
        let points = |list: &Option<Vec<crate::config::schema::Point>>| -> Vec<Pt> {
            list.as_ref().map(|l| l.iter().map(|p| p.0).collect()).unwrap_or_default()
        };
        let shape = match &config.line {
            Some(_) => {
                let line = points(&config.line);
                Shape::Line { a: line[0], b: line[1], direction: config.direction.unwrap_or_default() }
            }
            None => Shape::Polygon(points(&config.polygon).into_iter().take(MAX_ZONE_POINTS).collect()),
        };
        Self {
            id: config.id.clone(),
            shape,
            labels: config.labels.clone(),
            min_confidence: config.min_confidence,
            inertia: config.inertia.max(1),
            dwell: (config.dwell_s > 0).then(|| Duration::from_secs(config.dwell_s)),
            count_threshold: config.count_threshold,
            lock: config.lock,
        }
    }

    fn sees(&self, label: &str, confidence: f64) -> bool {
        confidence >= self.min_confidence && (self.labels.is_empty() || self.labels.iter().any(|l| l == label))
    }
}

/// One detection, as the engine needs it.
#[derive(Clone, Copy, Debug)]
pub struct Observation<'a> {
    /// The worker's track id, if it tracks.
    pub track_id: Option<&'a str>,
    /// What it is.
    pub label: &'a str,
    /// How sure.
    pub confidence: f64,
    /// `[x, y, w, h]`.
    pub bbox: [f64; 4],
}

/// What happened in a zone.
#[derive(Clone, Debug, PartialEq)]
pub enum ZoneEventKind {
    /// A track entered (after `inertia` observations inside).
    Enter,
    /// A track left (after `inertia` observations outside, or timed out); time spent inside.
    Exit {
        /// How long it was inside.
        dwell: Duration,
    },
    /// A track has been inside for the zone's `dwell_s` (once per visit).
    Dwell {
        /// How long it has been inside.
        dwell: Duration,
    },
    /// A track crossed a line; `true`: from its left to its right (`ab`).
    Cross {
        /// `ab` or `ba`.
        ab: bool,
    },
    /// Occupancy reached (`true`) or fell below (`false`) the count threshold.
    Count {
        /// Tracks inside now.
        count: u32,
        /// Reached (`true`) or fell below.
        reached: bool,
    },
}

/// A zone event, to publish.
#[derive(Clone, Debug, PartialEq)]
pub struct ZoneEvent {
    /// Index of the zone in the camera's zone list.
    pub zone: usize,
    /// What happened.
    pub kind: ZoneEventKind,
    /// When (a frame's capture time).
    pub at: Instant,
    /// The track, for track events.
    pub track: Option<TrackSnapshot>,
}

/// The track an event is about, as last seen.
#[derive(Clone, Debug, PartialEq)]
pub struct TrackSnapshot {
    /// Its id.
    pub id: TrackId,
    /// Its label.
    pub label: HString<64>,
    /// Its last confidence.
    pub confidence: f64,
    /// Its last box.
    pub bbox: [f64; 4],
}

#[derive(Clone, Debug)]
struct Track {
    snapshot: TrackSnapshot,
    auto: bool,
    last_seen: Instant,
    last_point: Pt,
    zones: HVec<ZoneState, MAX_ZONES_PER_CAMERA>,
}

/// Counters of the engine, for `P/stats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineCounters {
    /// Tracks evicted because the table was full.
    pub evicted: u64,
    /// Batches older than the newest one seen, ignored.
    pub stale: u64,
}

/// One camera's zones and tracks.
pub struct ZoneEngine {
    zones: HVec<Zone, MAX_ZONES_PER_CAMERA>,
    tracks: HVec<Track, MAX_TRACKS_PER_CAMERA>,
    max_tracks: usize,
    newest: Option<Instant>,
    next_auto: u64,
    occupancy: HVec<u32, MAX_ZONES_PER_CAMERA>,
    /// Counters.
    pub counters: EngineCounters,
}

impl ZoneEngine {
    /// An engine for `zones`, remembering at most `max_tracks` tracks (the board's limit).
    pub fn new(zones: &[ZoneConfig], max_tracks: usize) -> Self {
        let zones: HVec<Zone, MAX_ZONES_PER_CAMERA> =
            zones.iter().take(MAX_ZONES_PER_CAMERA).map(Zone::from_config).collect();
        let occupancy = zones.iter().map(|_| 0).collect();
        Self {
            zones,
            tracks: HVec::new(),
            max_tracks: max_tracks.clamp(1, MAX_TRACKS_PER_CAMERA),
            newest: None,
            next_auto: 0,
            occupancy,
            counters: EngineCounters::default(),
        }
    }

    /// The zones.
    pub fn zones(&self) -> &[Zone] {
        &self.zones
    }

    /// Tracks remembered now.
    pub fn track_count(&self) -> usize {
        self.tracks.len()
    }

    /// Occupancy of zone `zone` by label (tracks inside now).
    pub fn occupancy_by_label(&self, zone: usize) -> impl Iterator<Item = (&str, u32)> {
        let mut labels: HVec<(&str, u32), MAX_TRACKS_PER_CAMERA> = HVec::new();
        for track in self.tracks.iter().filter(|t| t.zones.get(zone).is_some_and(|z| z.inside)) {
            let label = track.snapshot.label.as_str();
            match labels.iter_mut().find(|(l, _)| *l == label) {
                Some((_, n)) => *n += 1,
                None => {
                    let _ = labels.push((label, 1));
                }
            }
        }
        labels.into_iter()
    }

    /// Takes one frame's detections at `at`; calls `emit` for every zone event.
    pub fn observe(&mut self, at: Instant, detections: &[Observation<'_>], emit: &mut impl FnMut(ZoneEvent)) {
        if self.newest.is_some_and(|newest| at < newest) {
            self.counters.stale += 1;
            return;
        }
        self.newest = Some(at);
        let mut matched: HVec<usize, MAX_TRACKS_PER_CAMERA> = HVec::new();
        for detection in detections {
            let Some(index) = self.track_for(detection, at, &matched, emit) else { continue };
            let _ = matched.push(index);
            self.update_track(index, detection, at, emit);
        }
        self.expire(at, emit);
        self.count(at, emit);
    }

    /// Moves everything the engine remembers by `delta_ms`: the wall clock its frames are
    /// stamped with was stepped, and visits, dwell times and ordering carry on across it.
    pub fn shift(&mut self, delta_ms: i64) {
        let moved = |at: Instant| Instant::from_millis((at.as_millis() as i64).saturating_add(delta_ms).max(0) as u64);
        self.newest = self.newest.map(moved);
        for track in &mut self.tracks {
            track.last_seen = moved(track.last_seen);
            for state in &mut track.zones {
                state.entered = state.entered.map(moved);
            }
        }
    }

    /// Lets tracks not seen for `TRACK_TIMEOUT` leave their zones; call periodically with the
    /// current time so a camera that goes silent still closes its visits.
    pub fn tick(&mut self, now: Instant, emit: &mut impl FnMut(ZoneEvent)) {
        self.expire(now, emit);
        self.count(now, emit);
    }

    /// Finds (or makes room for and creates) the track of `detection`.
    fn track_for(
        &mut self,
        detection: &Observation<'_>,
        at: Instant,
        taken: &[usize],
        emit: &mut impl FnMut(ZoneEvent),
    ) -> Option<usize> {
        let found = match detection.track_id {
            Some(id) => self.tracks.iter().position(|t| !t.auto && t.snapshot.id.as_str() == id),
            None => self
                .tracks
                .iter()
                .enumerate()
                .filter(|(i, t)| t.auto && t.snapshot.label.as_str() == detection.label && !taken.contains(i))
                .map(|(i, t)| (i, geometry::iou(t.snapshot.bbox, detection.bbox)))
                .filter(|(_, overlap)| *overlap >= ASSOCIATION_IOU)
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .map(|(i, _)| i),
        };
        if found.is_some() {
            return found;
        }
        if self.tracks.len() >= self.max_tracks {
            self.evict_oldest(at, emit);
        }
        let (id, auto) = match detection.track_id {
            Some(id) => (id.chars().take(64).collect::<TrackId>(), false),
            None => {
                self.next_auto += 1;
                let mut id = TrackId::new();
                let _ = core::fmt::write(&mut id, format_args!("auto-{}", self.next_auto));
                (id, true)
            }
        };
        let track = Track {
            snapshot: TrackSnapshot {
                id,
                label: detection.label.chars().take(64).collect(),
                confidence: detection.confidence,
                bbox: detection.bbox,
            },
            auto,
            last_seen: at,
            last_point: geometry::anchor(detection.bbox),
            zones: self.zones.iter().map(|_| ZoneState::default()).collect(),
        };
        self.tracks.push(track).ok()?;
        Some(self.tracks.len() - 1)
    }

    fn evict_oldest(&mut self, at: Instant, emit: &mut impl FnMut(ZoneEvent)) {
        let Some(oldest) = self.tracks.iter().enumerate().min_by_key(|(_, t)| t.last_seen).map(|(i, _)| i) else {
            return;
        };
        self.counters.evicted += 1;
        self.leave_all(oldest, at, emit);
        self.tracks.swap_remove(oldest);
    }

    fn update_track(
        &mut self,
        index: usize,
        detection: &Observation<'_>,
        at: Instant,
        emit: &mut impl FnMut(ZoneEvent),
    ) {
        let point = geometry::anchor(detection.bbox);
        let zones = &self.zones;
        let track = &mut self.tracks[index];
        track.snapshot.confidence = detection.confidence;
        track.snapshot.bbox = detection.bbox;
        track.snapshot.label = detection.label.chars().take(64).collect();
        track.last_seen = at;
        let previous = track.last_point;
        track.last_point = point;
        for (z, zone) in zones.iter().enumerate() {
            if !zone.sees(detection.label, detection.confidence) {
                continue;
            }
            let snapshot = &track.snapshot;
            let state = &mut track.zones[z];
            match &zone.shape {
                Shape::Polygon(points) => {
                    let inside = geometry::contains(points, point);
                    polygon_step(z, zone, state, inside, at, snapshot, emit);
                }
                Shape::Line { a, b, direction } => {
                    line_step(z, zone, state, (*a, *b, *direction), (previous, point), at, snapshot, emit);
                }
            }
        }
    }

    fn expire(&mut self, now: Instant, emit: &mut impl FnMut(ZoneEvent)) {
        let mut i = 0;
        while i < self.tracks.len() {
            if now.saturating_duration_since(self.tracks[i].last_seen) >= TRACK_TIMEOUT {
                let last_seen = self.tracks[i].last_seen;
                self.leave_all(i, last_seen, emit);
                self.tracks.swap_remove(i);
            } else {
                i += 1;
            }
        }
    }

    /// Exits track `index` from every zone it is inside, at `at`.
    fn leave_all(&mut self, index: usize, at: Instant, emit: &mut impl FnMut(ZoneEvent)) {
        let track = &mut self.tracks[index];
        for (z, state) in track.zones.iter_mut().enumerate() {
            if state.inside {
                let dwell = state.entered.map_or(Duration::from_ticks(0), |e| at.saturating_duration_since(e));
                *state = ZoneState::default();
                emit(ZoneEvent {
                    zone: z,
                    kind: ZoneEventKind::Exit { dwell },
                    at,
                    track: Some(track.snapshot.clone()),
                });
            }
        }
    }

    fn count(&mut self, at: Instant, emit: &mut impl FnMut(ZoneEvent)) {
        for (z, zone) in self.zones.iter().enumerate() {
            let now = self.tracks.iter().filter(|t| t.zones[z].inside).count() as u32;
            let before = std::mem::replace(&mut self.occupancy[z], now);
            let threshold = zone.count_threshold;
            if threshold == 0 || before == now {
                continue;
            }
            if before < threshold && now >= threshold {
                emit(ZoneEvent { zone: z, kind: ZoneEventKind::Count { count: now, reached: true }, at, track: None });
            } else if before >= threshold && now < threshold {
                emit(ZoneEvent { zone: z, kind: ZoneEventKind::Count { count: now, reached: false }, at, track: None });
            }
        }
    }

    /// Ids of the tracks inside zone `zone` now.
    pub fn inside(&self, zone: usize) -> impl Iterator<Item = &TrackId> {
        self.tracks.iter().filter(move |t| t.zones.get(zone).is_some_and(|z| z.inside)).map(|t| &t.snapshot.id)
    }

    /// Total occupancy of each zone after the last call.
    pub fn occupancy(&self) -> &[u32] {
        &self.occupancy
    }
}
