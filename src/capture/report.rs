//! What a camera's supervisor reports: health events through the outbox (a
//! gap also into the index, in the same transaction) and its retained state.

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
            let camera = self.camera.id.as_str();
            let (new, gap) = match event {
                HealthEvent::Online => {
                    tracing::info!(camera = %camera, "camera online");
                    (NewEvent::new(EventType::CameraOnline, Some(camera), now), None)
                }
                HealthEvent::Offline { reason } => {
                    tracing::warn!(camera = %camera, reason = %reason, "camera offline");
                    (NewEvent::new(EventType::CameraOffline, Some(camera), now).with("reason", reason.as_str()), None)
                }
                HealthEvent::Gap { start, end, reason } => {
                    let event = NewEvent::new(EventType::RecordingGap, Some(camera), now)
                        .with("from", start.to_rfc3339())
                        .with("to", end.to_rfc3339())
                        .with("duration_s", (end.0 - start.0) as f64 / 1000.0)
                        .with("reason", reason.as_str());
                    let gap = Gap { camera: camera.to_string(), start: *start, end: *end, reason: reason.clone() };
                    (event, Some(gap))
                }
            };
            // A gap row and its event are one fact: one transaction.
            let stored =
                self.events.emit_with(new, move |conn, _| gap.map(|g| index::insert_gap(conn, &g)).transpose());
            if let Err(e) = stored.await {
                tracing::error!(camera = %camera, error = %e, "event not stored");
            }
        }
    }

    /// Publishes the camera's retained state and keeps it for `P/stats`.
    pub(super) fn publish_state(&self, health: &CameraHealth, measures: &Measures) {
        let topic = self.mqtt.topics().camera_state(self.camera.id.as_str());
        let mut payload = state_payload(health, measures);
        // Whether the times of what it records now can be trusted (no RTC, no NTP yet: false).
        payload["clock_synchronised"] = crate::sys::clock::synchronised().into();
        // Whether frames are taken for workers now: apart from recording, which `state` says.
        payload["sampled"] = self.frames.as_ref().is_some_and(|rate| *rate.borrow() > 0.0).into();
        self.mqtt.publish(topic, payload.to_string(), QoS::AtLeastOnce, true);
        self.states.set(self.camera.id.as_str(), payload);
    }
}
