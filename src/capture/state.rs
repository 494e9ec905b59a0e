//! A camera's retained state message: what it is doing and delivering.

use super::health::{CameraHealth, CameraState};
use super::modes::InForce;
use crate::config::schema::V4l2Config;
use crate::wallclock::UnixMs;
use serde_json::json;

/// What a camera delivers, for its state message.
#[derive(Clone, Debug, Default)]
pub struct Measures {
    /// Frames per second ffmpeg reported.
    pub fps: f64,
    /// Bit rate of the last segment.
    pub kbps: f64,
    /// The format a V4L2 device agreed to.
    pub format: Option<V4l2Config>,
    /// The recording mode in force, the schedule window, the next change.
    pub mode: Option<InForce>,
}

/// The retained `P/cameras/<cam>/state` payload.
pub fn state_payload(health: &CameraHealth, measures: &Measures) -> serde_json::Value {
    let (fps, kbps) = (measures.fps, measures.kbps);
    let recording = health.state() == CameraState::Recording;
    let mut value = json!({
        "v": 1,
        "state": health.state().as_str(),
        "since": health.since().to_rfc3339(),
        "fps": if recording { (fps * 10.0).round() / 10.0 } else { 0.0 },
        "kbps": if recording { kbps.round() } else { 0.0 },
        "last_segment_end": health.last_segment_end().map(UnixMs::to_rfc3339),
        "reconnects": health.reconnects(),
    });
    match (health.last_error(), health.state()) {
        (Some(why), CameraState::Paused) => value["reason"] = why.into(),
        (Some(error), state) if state != CameraState::Recording => value["error"] = error.into(),
        _ => {}
    }
    if let Some(mode) = &measures.mode {
        value["record"] = mode.mode.name().into();
        value["schedule"] = mode.window.clone().into();
        value["next_change"] = match mode.next {
            Some((at, then)) => json!({"at": at.to_rfc3339(), "record": then.name()}),
            None => serde_json::Value::Null,
        };
    }
    if let Some(format) = &measures.format {
        value["v4l2"] = json!({
            "width": format.width,
            "height": format.height,
            "fps": format.fps,
            "format": format!("{:?}", format.format).to_uppercase(),
        });
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::schema::PixelFormat;

    #[test]
    fn state_payload_shows_error_only_when_not_recording() {
        let mut health = CameraHealth::new(UnixMs(0), None, false);
        health.on_error("401 Unauthorized");
        health.on_failure(UnixMs(1000), "exit");
        let offline = state_payload(&health, &Measures { fps: 15.0, kbps: 900.0, format: None, mode: None });
        assert_eq!(offline["state"], "offline");
        assert_eq!(offline["error"], "401 Unauthorized");
        assert_eq!(offline["fps"], 0.0);
        health.on_segment(UnixMs(2000), UnixMs(4000));
        let format = V4l2Config { width: 640, height: 480, fps: 15, format: PixelFormat::Yuyv };
        let mode = InForce {
            mode: crate::config::schema::RecordMode::Continuous,
            by: super::super::modes::By::Schedule,
            window: Some("daily 22:00–06:00 continuous".into()),
            next: Some((UnixMs(6000), crate::config::schema::RecordMode::Off)),
        };
        let measures = Measures { fps: 14.96, kbps: 812.4, format: Some(format), mode: Some(mode) };
        let recording = state_payload(&health, &measures);
        assert_eq!(recording["state"], "recording");
        assert_eq!(recording["fps"], 15.0);
        assert_eq!(recording["kbps"], 812.0);
        assert_eq!(recording["last_segment_end"], "1970-01-01T00:00:04.000Z");
        assert!(recording.get("error").is_none());
        assert_eq!(recording["v4l2"]["format"], "YUYV");
        assert_eq!(recording["v4l2"]["width"], 640);
        assert_eq!(recording["record"], "continuous");
        assert_eq!(recording["schedule"], "daily 22:00–06:00 continuous");
        assert_eq!(recording["next_change"], json!({"at": "1970-01-01T00:00:06.000Z", "record": "off"}));
    }
}
