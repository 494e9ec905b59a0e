//! What a camera's supervisor reports: health events through the outbox (a
//! gap also into the index) and its retained state.

use super::health::{CameraHealth, HealthEvent};
use super::state::{Measures, state_payload};
use super::supervisor::CameraSupervisor;
use crate::outbox::{EventType, NewEvent};
use crate::recording::index::{self, Gap};
use crate::wallclock::UnixMs;
use rumqttc::QoS;

impl CameraSupervisor {
    /// Stores and publishes what the health state machine reports.
    pub(super) async fn emit_health(&self, events: &[HealthEvent]) {
        for event in events {
            let now = UnixMs::now();
            let new = match event {
                HealthEvent::Online => {
                    tracing::info!(camera = %self.camera.id.as_str(), "camera online");
                    NewEvent::new(EventType::CameraOnline, Some(self.camera.id.as_str()), now)
                }
                HealthEvent::Offline { reason } => {
                    tracing::warn!(camera = %self.camera.id.as_str(), reason = %reason, "camera offline");
                    NewEvent::new(EventType::CameraOffline, Some(self.camera.id.as_str()), now)
                        .with("reason", reason.as_str())
                }
                HealthEvent::Gap { start, end, reason } => {
                    let gap = Gap {
                        camera: self.camera.id.as_str().to_string(),
                        start: *start,
                        end: *end,
                        reason: reason.clone(),
                    };
                    if let Err(e) = self.store.call(move |conn| index::insert_gap(conn, &gap)).await {
                        tracing::error!(camera = %self.camera.id.as_str(), error = %e, "gap not recorded");
                    }
                    NewEvent::new(EventType::RecordingGap, Some(self.camera.id.as_str()), now)
                        .with("from", start.to_rfc3339())
                        .with("to", end.to_rfc3339())
                        .with("duration_s", (end.0 - start.0) as f64 / 1000.0)
                        .with("reason", reason.as_str())
                }
            };
            if let Err(e) = self.events.emit(new).await {
                tracing::error!(camera = %self.camera.id.as_str(), error = %e, "event not stored");
            }
        }
    }

    /// Publishes the camera's retained state and keeps it for `P/stats`.
    pub(super) fn publish_state(&self, health: &CameraHealth, measures: &Measures) {
        let topic = self.mqtt.topics().camera_state(self.camera.id.as_str());
        let payload = state_payload(health, measures);
        self.mqtt.publish(topic, payload.to_string(), QoS::AtLeastOnce, true);
        self.states.set(self.camera.id.as_str(), payload);
    }
}
