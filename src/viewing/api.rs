//! The JSON API: the cameras a viewer sees, a camera's timeline (recorded runs,
//! gaps, evidence locks) and the event history, each over a bounded window.

use super::auth::Viewer;
use super::routes::{App, Reply, internal, json};
use crate::outbox;
use crate::recording::index::{self, SegmentRow};
use crate::recording::locks;
use crate::wallclock::UnixMs;
use serde_json::{Value, json};

/// Longest window one request may ask for.
pub const MAX_WINDOW_MS: i64 = 7 * 86_400_000;
/// Window when the request names none: the last hour.
const DEFAULT_WINDOW_MS: i64 = 3_600_000;
/// Most segments one timeline reads; a longer window is cut there (`truncated`).
const MAX_TIMELINE_SEGMENTS: usize = 20_000;
/// Segments closer than this are one run.
const RUN_JOIN_MS: i64 = 1_500;

/// `GET /api/v1/cameras`: the configured cameras the viewer sees, with their state.
pub fn cameras(app: &App, viewer: &Viewer) -> Reply {
    let config = app.config.borrow().clone();
    let states = app.cameras.snapshot();
    let cameras: Vec<Value> = config
        .config
        .cameras
        .iter()
        .filter(|c| viewer.sees(&c.id))
        .map(|c| {
            let state = &states[&c.id];
            json!({
                "id": c.id,
                "name": c.name.clone().unwrap_or_else(|| c.id.clone()),
                "state": state.get("state").cloned().unwrap_or_else(|| "connecting".into()),
                "fps": state.get("fps").cloned().unwrap_or(0.into()),
                "kbps": state.get("kbps").cloned().unwrap_or(0.into()),
                "last_segment_end": state.get("last_segment_end").cloned().unwrap_or(Value::Null),
            })
        })
        .collect();
    json(&json!({ "cameras": cameras }))
}

/// `GET /api/v1/cameras/<id>/timeline?from&to`.
pub async fn timeline(app: &App, camera: &str, query: &str) -> Reply {
    let (from, to) = match window(query, UnixMs::now()) {
        Ok(window) => window,
        Err(why) => return super::routes::text(hyper::StatusCode::BAD_REQUEST, &why),
    };
    let camera = camera.to_string();
    let read = app
        .store
        .call(move |conn| {
            let segments = index::camera_window(conn, &camera, from, to, MAX_TIMELINE_SEGMENTS)?;
            let gaps = index::gaps_overlapping(conn, &camera, from, to)?;
            let locks = locks::locks_overlapping(conn, &camera, from, to)?;
            let history = outbox::HistoryQuery { cameras: Some(vec![camera]), kind: None, from, to, limit: MAX_EVENTS };
            Ok((segments, gaps, locks, outbox::history(conn, &history)?))
        })
        .await;
    let (segments, gaps, locks, events) = match read {
        Ok(read) => read,
        Err(e) => return internal(&e),
    };
    let truncated = segments.len() >= MAX_TIMELINE_SEGMENTS;
    json(&json!({
        "from": from.to_rfc3339(),
        "to": to.to_rfc3339(),
        "runs": runs(&segments).iter().map(|(s, e)| json!({"start": s.to_rfc3339(), "end": e.to_rfc3339()})).collect::<Vec<_>>(),
        "gaps": gaps.iter().map(|g| json!({"start": g.start.to_rfc3339(), "end": g.end.to_rfc3339(), "reason": g.reason})).collect::<Vec<_>>(),
        "locks": locks.iter().map(|(id, l)| json!({"id": id, "from": l.from.to_rfc3339(), "to": l.to.to_rfc3339(), "reason": l.reason, "event_id": l.event_id})).collect::<Vec<_>>(),
        "events": payloads(&events),
        "truncated": truncated || events.len() >= MAX_EVENTS,
    }))
}

/// The published payloads of outbox rows, as JSON.
fn payloads(rows: &[outbox::OutboxRow]) -> Vec<Value> {
    rows.iter().map(|r| serde_json::from_str(&r.payload).unwrap_or_else(|_| r.payload.clone().into())).collect()
}

/// Events one request returns at most, and by default.
const MAX_EVENTS: usize = 1_000;
const DEFAULT_EVENTS: usize = 100;

/// `GET /api/v1/events?camera&type&from&to&limit`: the kept events, newest first, of the
/// cameras the viewer sees (node-wide events only for a viewer who sees every camera).
pub async fn events(app: &App, viewer: &Viewer, query: &str) -> Reply {
    let (from, to) = match window(query, UnixMs::now()) {
        Ok(window) => window,
        Err(why) => return super::routes::text(hyper::StatusCode::BAD_REQUEST, &why),
    };
    let param = |name: &str| field(query.as_bytes(), name);
    let limit = match param("limit").map(|l| l.parse::<usize>()) {
        None => DEFAULT_EVENTS,
        Some(Ok(n)) if (1..=MAX_EVENTS).contains(&n) => n,
        Some(_) => return super::routes::text(hyper::StatusCode::BAD_REQUEST, "limit: 1..=1000"),
    };
    let cameras = match (param("camera"), &viewer.cameras) {
        (Some(camera), _) if !viewer.sees(&camera) => {
            return super::routes::text(hyper::StatusCode::FORBIDDEN, "not your camera");
        }
        (Some(camera), _) => Some(vec![camera]),
        (None, scope) => scope.clone(),
    };
    let history = outbox::HistoryQuery { cameras, kind: param("type"), from, to, limit };
    match app.store.call(move |conn| outbox::history(conn, &history)).await {
        Ok(rows) => json(&json!({ "events": payloads(&rows) })),
        Err(e) => internal(&e),
    }
}

/// `GET /api/v1/me`: who is logged in, what they may do and see.
pub fn me(viewer: &Viewer) -> Reply {
    json(
        &json!({ "name": viewer.name, "allow": viewer.allow, "cameras": viewer.cameras.clone().unwrap_or_else(|| vec!["*".into()]) }),
    )
}

/// `POST /api/v1/cameras/<id>/locks` with the form fields `from`, `to` and an optional
/// `reason`: an evidence lock over the window (at most 7 days), for a user with `lock`.
pub async fn lock(app: &App, viewer: &Viewer, camera: &str, form: &[u8]) -> Reply {
    let field = |name: &str| field(form, name);
    let known = app.config.borrow().config.cameras.iter().any(|c| c.id == camera);
    if !known {
        return super::routes::text(hyper::StatusCode::NOT_FOUND, "no such camera");
    }
    let query = format!("from={}&to={}", field("from").unwrap_or_default(), field("to").unwrap_or_default());
    let (from, to) = match (field("from").is_some() && field("to").is_some(), window(&query, UnixMs::now())) {
        (true, Ok(window)) => window,
        (false, _) => return super::routes::text(hyper::StatusCode::BAD_REQUEST, "from and to are required"),
        (_, Err(why)) => return super::routes::text(hyper::StatusCode::BAD_REQUEST, &why),
    };
    let reason = field("reason").unwrap_or_else(|| format!("locked by {} over HTTP", viewer.name));
    if reason.chars().count() > 200 {
        return super::routes::text(hyper::StatusCode::BAD_REQUEST, "reason: at most 200 characters");
    }
    let lock = locks::NewLock { camera: camera.to_string(), from, to, event_id: None, reason };
    match app.store.call(move |conn| locks::insert_lock(conn, &lock, UnixMs::now())).await {
        Ok(id) => {
            tracing::info!(camera = %camera, user = %viewer.name, id, "footage locked over HTTP");
            let mut reply =
                json(&json!({"id": id, "camera": camera, "from": from.to_rfc3339(), "to": to.to_rfc3339()}));
            *reply.status_mut() = hyper::StatusCode::CREATED;
            reply
        }
        Err(e) => internal(&e),
    }
}

/// The value of `name` in a query string or a URL-encoded form.
pub fn field(encoded: &[u8], name: &str) -> Option<String> {
    form_urlencoded::parse(encoded).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

/// Recorded runs: segments by start time merged where they touch.
pub fn runs(segments: &[SegmentRow]) -> Vec<(UnixMs, UnixMs)> {
    let mut runs: Vec<(UnixMs, UnixMs)> = Vec::new();
    for s in segments.iter().map(|r| &r.segment) {
        match runs.last_mut() {
            Some((_, end)) if s.start.0 - end.0 <= RUN_JOIN_MS => *end = (*end).max(s.end),
            _ => runs.push((s.start, s.end)),
        }
    }
    runs
}

/// The window `from`/`to` of a query (Unix ms or RFC 3339): the last hour when absent,
/// at most `MAX_WINDOW_MS`.
pub fn window(query: &str, now: UnixMs) -> Result<(UnixMs, UnixMs), String> {
    let param = |name: &str| field(query.as_bytes(), name);
    let time = |name: &str| -> Result<Option<UnixMs>, String> {
        let Some(text) = param(name) else { return Ok(None) };
        let parsed = match text.parse::<i64>() {
            Ok(ms) => Some(UnixMs(ms)),
            Err(_) => UnixMs::parse_rfc3339(&text),
        };
        parsed.map(Some).ok_or_else(|| format!("{name}: {text:?} is neither Unix ms nor RFC 3339"))
    };
    let to = time("to")?.unwrap_or(now);
    let from = time("from")?.unwrap_or(UnixMs(to.0 - DEFAULT_WINDOW_MS));
    if from >= to {
        return Err("from must come before to".into());
    }
    if to.0 - from.0 > MAX_WINDOW_MS {
        return Err(format!("the window is at most {} days", MAX_WINDOW_MS / 86_400_000));
    }
    Ok((from, to))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(start: i64, end: i64) -> SegmentRow {
        crate::recording::index::test_row(0, "c", "", (start, end))
    }

    #[test]
    fn touching_segments_make_one_run_and_a_hole_starts_another() {
        let rows = [row(0, 10_000), row(10_020, 20_000), row(30_000, 40_000)];
        assert_eq!(runs(&rows), [(UnixMs(0), UnixMs(20_000)), (UnixMs(30_000), UnixMs(40_000))]);
        assert!(runs(&[]).is_empty());
    }

    #[test]
    fn a_window_is_read_in_ms_or_rfc_3339_and_bounded() {
        let now = UnixMs(1_700_000_000_000);
        assert_eq!(window("", now), Ok((UnixMs(now.0 - 3_600_000), now)));
        assert_eq!(window("from=1000&to=2000", now), Ok((UnixMs(1000), UnixMs(2000))));
        let rfc = "from=2023-11-14T22:13:20Z&to=2023-11-14T22:13:30.5%2B00:00";
        assert_eq!(window(rfc, now), Ok((UnixMs(1_700_000_000_000), UnixMs(1_700_000_010_500))));
        assert!(window("from=2000&to=1000", now).is_err());
        assert!(window("from=yesterday", now).unwrap_err().contains("from"));
        assert!(window("from=0&to=999999999999", now).unwrap_err().contains("7 days"));
    }
}
