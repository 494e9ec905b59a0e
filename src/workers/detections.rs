//! `P/detections/<cam>`: validation of what workers send back. Pure; every
//! refusal names its reason and the field at fault.

use super::{Rejection, parse_json};
use crate::protocol::rules::is_label;
use crate::protocol::rules::is_worker_id;
use crate::wallclock::UnixMs;
use serde_json::Value;

/// One detected object.
#[derive(Clone, Debug, PartialEq)]
pub struct Detection {
    /// What it is.
    pub label: String,
    /// How sure, 0..1.
    pub confidence: f64,
    /// `[x, y, w, h]`, normalized 0..1, origin top-left.
    pub bbox: [f64; 4],
    /// The worker's track id, when it tracks.
    pub track_id: Option<String>,
}

/// A worker's answer to one frame.
#[derive(Clone, Debug, PartialEq)]
pub struct DetectionBatch {
    /// Camera.
    pub camera: String,
    /// Worker.
    pub worker: String,
    /// The frame's seq.
    pub seq: u64,
    /// The frame's capture time.
    pub ts: UnixMs,
    /// What it found (possibly nothing).
    pub detections: Vec<Detection>,
}

/// What a detection message is checked against.
pub struct Context<'a> {
    /// Configured cameras.
    pub known_camera: &'a dyn Fn(&str) -> bool,
    /// Capture time of an offered frame still remembered.
    pub offered_ts: &'a dyn Fn(&str, u64) -> Option<UnixMs>,
    /// The board's `max_detections_per_message`.
    pub max_detections: usize,
    /// The board's `max_message_bytes`.
    pub max_bytes: usize,
}

/// Validates a message received on `P/detections/<topic_camera>`.
pub fn validate(topic_camera: &str, payload: &[u8], ctx: &Context<'_>) -> Result<DetectionBatch, Rejection> {
    if payload.len() > ctx.max_bytes {
        return Err(Rejection::new(
            "too_large",
            format!("{} bytes, the board's max_message_bytes is {}", payload.len(), ctx.max_bytes),
        ));
    }
    let value = parse_json(payload)?;
    let worker = value.get("worker").and_then(Value::as_str).filter(|w| is_worker_id(w)).map(str::to_string);
    check(&value, topic_camera, ctx, worker.as_deref()).map_err(|r| r.by(worker.as_deref()))
}

fn check(
    value: &Value,
    topic_camera: &str,
    ctx: &Context<'_>,
    worker: Option<&str>,
) -> Result<DetectionBatch, Rejection> {
    if !value.is_object() {
        return Err(Rejection::new("bad_json", "a detection message is a JSON object"));
    }
    if value.get("v").and_then(Value::as_u64) != Some(1) {
        return Err(Rejection::new("bad_version", "\"v\" must be 1"));
    }
    let worker = worker.ok_or_else(|| Rejection::new("bad_worker", "\"worker\" must be [A-Za-z0-9_-]{1,64}"))?;
    if !(ctx.known_camera)(topic_camera) {
        return Err(Rejection::new("unknown_camera", format!("no camera {topic_camera:?} on this node")));
    }
    if value.get("camera").and_then(Value::as_str) != Some(topic_camera) {
        return Err(Rejection::new("camera_mismatch", format!("\"camera\" must be {topic_camera:?}, as in the topic")));
    }
    let seq = value
        .get("seq")
        .and_then(Value::as_u64)
        .ok_or_else(|| Rejection::new("bad_seq", "\"seq\" must be a frame's seq"))?;
    let offered = (ctx.offered_ts)(topic_camera, seq)
        .ok_or_else(|| Rejection::new("unknown_seq", format!("frame {seq} was not offered recently")))?;
    let ts = value.get("ts").and_then(Value::as_str).and_then(UnixMs::parse_rfc3339);
    if ts != Some(offered) {
        return Err(Rejection::new("ts_mismatch", format!("\"ts\" must be frame {seq}'s, {offered}")));
    }
    let items = value
        .get("detections")
        .and_then(Value::as_array)
        .ok_or_else(|| Rejection::new("bad_detections", "\"detections\" must be a list"))?;
    if items.len() > ctx.max_detections {
        return Err(Rejection::new(
            "too_many_detections",
            format!("{} detections, the board's max_detections_per_message is {}", items.len(), ctx.max_detections),
        ));
    }
    let detections = items.iter().enumerate().map(|(i, d)| detection(i, d)).collect::<Result<Vec<_>, _>>()?;
    Ok(DetectionBatch { camera: topic_camera.to_string(), worker: worker.to_string(), seq, ts: offered, detections })
}

fn detection(i: usize, d: &Value) -> Result<Detection, Rejection> {
    let at = |field: &str| format!("detections[{i}].{field}");
    let label = d
        .get("label")
        .and_then(Value::as_str)
        .filter(|l| is_label(l))
        .ok_or_else(|| Rejection::new("bad_label", format!("{} must be 1..64 of [a-z0-9_ -]", at("label"))))?;
    let confidence =
        d.get("confidence").and_then(Value::as_f64).filter(|c| c.is_finite() && (0.0..=1.0).contains(c)).ok_or_else(
            || Rejection::new("bad_confidence", format!("{} must be a number in 0..1", at("confidence"))),
        )?;
    let bbox = d.get("bbox").and_then(Value::as_array).and_then(|b| {
        let numbers: Option<Vec<f64>> = b.iter().map(Value::as_f64).collect();
        let [x, y, w, h] = numbers?[..] else { return None };
        let inside =
            [x, y, w, h].iter().all(|v| v.is_finite() && *v >= 0.0) && x + w <= 1.0 + 1e-9 && y + h <= 1.0 + 1e-9;
        inside.then_some([x, y, w, h])
    });
    let bbox = bbox.ok_or_else(|| {
        Rejection::new("bad_bbox", format!("{} must be [x, y, w, h] inside 0..1 (x+w and y+h at most 1)", at("bbox")))
    })?;
    let track_id = match d.get("track_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 64 => Some(s.clone()),
        Some(Value::Number(n)) if n.is_u64() || n.is_i64() => Some(n.to_string()),
        Some(_) => {
            return Err(Rejection::new(
                "bad_track_id",
                format!("{} must be a string of 1..64 or an integer", at("track_id")),
            ));
        }
    };
    if d.get("attributes").is_some_and(|a| !a.is_object() && !a.is_null()) {
        return Err(Rejection::new("bad_attributes", format!("{} must be an object", at("attributes"))));
    }
    Ok(Detection { label: label.to_string(), confidence, bbox, track_id })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TS: &str = "2026-11-24T10:00:00.000Z";

    fn ctx_validate(camera: &str, payload: &str) -> Result<DetectionBatch, Rejection> {
        let known = |c: &str| c == "front";
        let offered = |c: &str, seq: u64| (c == "front" && seq == 42).then(|| UnixMs::parse_rfc3339(TS).expect("ts"));
        let ctx = Context { known_camera: &known, offered_ts: &offered, max_detections: 3, max_bytes: 2048 };
        validate(camera, payload.as_bytes(), &ctx)
    }

    fn message(detections: &str) -> String {
        format!(r#"{{"v":1,"worker":"w1","camera":"front","seq":42,"ts":"{TS}","detections":[{detections}]}}"#)
    }

    const GOOD: &str = r#"{"label":"person","confidence":0.9,"bbox":[0.1,0.2,0.3,0.4],"track_id":7}"#;

    #[test]
    fn accepts_a_good_batch() {
        let batch = ctx_validate("front", &message(GOOD)).expect("valid");
        assert_eq!(batch.seq, 42);
        assert_eq!(batch.worker, "w1");
        assert_eq!(batch.detections[0].track_id.as_deref(), Some("7"));
        assert_eq!(batch.detections[0].bbox, [0.1, 0.2, 0.3, 0.4]);
        assert!(ctx_validate("front", &message("")).expect("empty is fine").detections.is_empty());
    }

    #[test]
    fn each_bad_field_has_its_reason() {
        let cases: Vec<(String, &str, &str)> = vec![
            ("{not json".into(), "front", "bad_json"),
            (message(GOOD).replace("0.9", "NaN"), "front", "not_finite"),
            ("[1,2]".into(), "front", "bad_json"),
            (message(GOOD).replace(r#""v":1"#, r#""v":2"#), "front", "bad_version"),
            (message(GOOD).replace(r#""w1""#, r#""w 1""#), "front", "bad_worker"),
            (message(GOOD), "back", "unknown_camera"),
            (message(GOOD).replace(r#""camera":"front""#, r#""camera":"back""#), "front", "camera_mismatch"),
            (message(GOOD).replace(r#""seq":42"#, r#""seq":-1"#), "front", "bad_seq"),
            (message(GOOD).replace(r#""seq":42"#, r#""seq":43"#), "front", "unknown_seq"),
            (message(GOOD).replace(TS, "2026-11-24T10:00:00.001Z"), "front", "ts_mismatch"),
            (message(GOOD).replace(r#""label":"person""#, r#""label":"Person!""#), "front", "bad_label"),
            (message(GOOD).replace("0.9", "1.5"), "front", "bad_confidence"),
            (message(GOOD).replace("[0.1,0.2,0.3,0.4]", "[0.8,0.2,0.3,0.4]"), "front", "bad_bbox"),
            (message(GOOD).replace("[0.1,0.2,0.3,0.4]", "[0.1,0.2,0.3]"), "front", "bad_bbox"),
            (message(GOOD).replace("[0.1,0.2,0.3,0.4]", "[-0.1,0.2,0.3,0.4]"), "front", "bad_bbox"),
            (message(GOOD).replace("7}", "[7]}"), "front", "bad_track_id"),
            (message(&[GOOD; 4].join(",")), "front", "too_many_detections"),
            (
                message(&format!(r#"{{"label":"{}","confidence":0.5,"bbox":[0,0,1,1]}}"#, "x".repeat(2000))),
                "front",
                "too_large",
            ),
        ];
        for (payload, camera, reason) in cases {
            let err = ctx_validate(camera, &payload).expect_err(&payload);
            assert_eq!(err.reason, reason, "{payload}: {}", err.message);
        }
    }

    #[test]
    fn a_rejection_names_the_worker_when_it_can_be_read() {
        let err = ctx_validate("front", &message(GOOD).replace("0.9", "2")).expect_err("bad");
        assert_eq!(err.worker.as_deref(), Some("w1"));
        assert!(err.message.contains("detections[0].confidence"), "{}", err.message);
    }
}
