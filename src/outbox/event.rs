//! Events of the MQTT contract (`P/events/<cam>/<type>`) and their JSON form.

use crate::wallclock::UnixMs;
use serde_json::{Map, Value};

/// Topic level of events that belong to the node, not to one camera.
pub const NODE_LEVEL: &str = "_node";

/// The `type` of an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    /// A track entered a zone.
    ZoneEnter,
    /// A track left a zone.
    ZoneExit,
    /// A track stayed `dwell_s` in a zone.
    ZoneDwell,
    /// A track crossed a line.
    ZoneCross,
    /// Zone occupancy reached or fell below `count_threshold`.
    ZoneCount,
    /// A camera delivers again.
    CameraOnline,
    /// A camera stopped delivering.
    CameraOffline,
    /// A hole in a camera's recorded timeline.
    RecordingGap,
    /// Storage is short and only locked footage is left to delete.
    StoragePressure,
    /// A camera's recorder was paused: the disk was about to fill with locked footage.
    RecordingPaused,
    /// A recorder paused for storage records again.
    RecordingResumed,
    /// The wall clock was stepped (more than 2 s against the boot clock).
    ClockStep,
    /// A backup job finished.
    BackupDone,
    /// A backup job failed.
    BackupFailed,
    /// A worker came online.
    WorkerOnline,
    /// A worker went offline.
    WorkerOffline,
    /// Emitted only by `run --emit-test-events`, to exercise the outbox.
    Test,
}

/// How much an operator should care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// Normal operation.
    Info,
    /// Something degraded.
    Warning,
    /// Footage is at risk.
    Critical,
}

impl EventType {
    /// The `type` string on the wire and in topics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ZoneEnter => "zone_enter",
            Self::ZoneExit => "zone_exit",
            Self::ZoneDwell => "zone_dwell",
            Self::ZoneCross => "zone_cross",
            Self::ZoneCount => "zone_count",
            Self::CameraOnline => "camera_online",
            Self::CameraOffline => "camera_offline",
            Self::RecordingGap => "recording_gap",
            Self::StoragePressure => "storage_pressure",
            Self::RecordingPaused => "recording_paused",
            Self::RecordingResumed => "recording_resumed",
            Self::ClockStep => "clock_step",
            Self::BackupDone => "backup_done",
            Self::BackupFailed => "backup_failed",
            Self::WorkerOnline => "worker_online",
            Self::WorkerOffline => "worker_offline",
            Self::Test => "test",
        }
    }

    /// The default severity of this type.
    pub fn severity(self) -> Severity {
        match self {
            Self::CameraOffline | Self::RecordingGap | Self::BackupFailed | Self::WorkerOffline | Self::ClockStep => {
                Severity::Warning
            }
            Self::StoragePressure | Self::RecordingPaused => Severity::Critical,
            _ => Severity::Info,
        }
    }
}

impl Severity {
    /// The `severity` string on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Warning => "warning",
            Self::Critical => "critical",
        }
    }
}

/// An event before the outbox gave it an `id` and `seq`.
#[derive(Clone, Debug)]
pub struct NewEvent {
    /// Its type.
    pub kind: EventType,
    /// The camera it concerns; `None` for node events.
    pub camera: Option<String>,
    /// When it happened.
    pub ts: UnixMs,
    /// Type-specific fields (`zone`, `label`, `track_id`, `bbox`, …).
    pub fields: Map<String, Value>,
}

impl NewEvent {
    /// An event of `kind` at `ts` with no extra fields.
    pub fn new(kind: EventType, camera: Option<&str>, ts: UnixMs) -> Self {
        Self { kind, camera: camera.map(str::to_string), ts, fields: Map::new() }
    }

    /// Adds one type-specific field.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.fields.insert(key.to_string(), value.into());
        self
    }

    /// The topic level under `P/events/`.
    pub fn topic_level(&self) -> &str {
        self.camera.as_deref().unwrap_or(NODE_LEVEL)
    }

    /// The JSON published for this event once it has `id` and `seq`.
    pub fn payload(&self, id: &str, seq: i64) -> String {
        let mut body = self.fields.clone();
        body.insert("v".into(), 1.into());
        body.insert("id".into(), id.into());
        body.insert("seq".into(), seq.into());
        body.insert("type".into(), self.kind.as_str().into());
        if let Some(camera) = &self.camera {
            body.insert("camera".into(), camera.as_str().into());
        }
        body.insert("ts".into(), self.ts.to_rfc3339().into());
        body.insert("severity".into(), self.kind.severity().as_str().into());
        Value::Object(body).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_carries_the_contract_fields() {
        let event = NewEvent::new(EventType::ZoneEnter, Some("front"), UnixMs(0)).with("zone", "driveway");
        let json: Value = serde_json::from_str(&event.payload("abc", 7)).expect("json");
        assert_eq!(json["v"], 1);
        assert_eq!(json["id"], "abc");
        assert_eq!(json["seq"], 7);
        assert_eq!(json["type"], "zone_enter");
        assert_eq!(json["camera"], "front");
        assert_eq!(json["ts"], "1970-01-01T00:00:00.000Z");
        assert_eq!(json["zone"], "driveway");
        assert_eq!(json["severity"], "info");
    }

    #[test]
    fn node_events_have_no_camera_and_their_own_level() {
        let event = NewEvent::new(EventType::StoragePressure, None, UnixMs(0));
        assert_eq!(event.topic_level(), NODE_LEVEL);
        let json: Value = serde_json::from_str(&event.payload("x", 1)).expect("json");
        assert!(json.get("camera").is_none());
        assert_eq!(json["severity"], "critical");
    }
}
