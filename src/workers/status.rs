//! `P/workers/<worker>/status`: who is online to take frames, and how many.

use super::{Rejection, parse_json};
use crate::offers::WorkerSummary;
use crate::protocol::rules::is_worker_id;
use std::collections::BTreeMap;

/// Largest status message read; larger ones are refused (`too_large`) unread.
pub const STATUS_MAX_BYTES: usize = 4096;
/// Labels a status may list.
pub const STATUS_MAX_LABELS: usize = 64;

/// A worker's announced status.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkerStatus {
    /// `state: online` (anything else, or an empty retained message, is offline).
    pub online: bool,
    /// The most frames per second it takes, if it said.
    pub max_fps: Option<f64>,
    /// Labels it produces, if it said.
    pub labels: Vec<String>,
    /// Its model, if it said.
    pub model: Option<String>,
}

/// Parses a status payload; an empty payload (a cleared retained message) means offline.
pub fn parse_status(payload: &[u8]) -> Result<WorkerStatus, Rejection> {
    let offline = WorkerStatus { online: false, max_fps: None, labels: Vec::new(), model: None };
    if payload.is_empty() {
        return Ok(offline);
    }
    let value = parse_json(payload)?;
    if value.get("v").and_then(serde_json::Value::as_u64) != Some(1) {
        return Err(Rejection::new("bad_version", "\"v\" must be 1"));
    }
    let state = value.get("state").and_then(serde_json::Value::as_str);
    let online = match state {
        Some("online") => true,
        Some("offline") => false,
        _ => return Err(Rejection::new("bad_state", "\"state\" must be \"online\" or \"offline\"")),
    };
    let max_fps = match value.get("max_fps") {
        None | Some(serde_json::Value::Null) => None,
        Some(v) => match v.as_f64() {
            Some(fps) if fps.is_finite() && fps > 0.0 => Some(fps),
            _ => return Err(Rejection::new("bad_max_fps", "\"max_fps\" must be a number above 0")),
        },
    };
    let labels = match value.get("labels") {
        None | Some(serde_json::Value::Null) => Vec::new(),
        Some(serde_json::Value::Array(items)) => {
            let labels: Option<Vec<String>> = items
                .iter()
                .map(|l| l.as_str().filter(|l| crate::protocol::rules::is_label(l)).map(str::to_string))
                .collect();
            let labels =
                labels.ok_or_else(|| Rejection::new("bad_label", "\"labels\" must be labels of [a-z0-9_ -]{1,64}"))?;
            if labels.len() > STATUS_MAX_LABELS {
                return Err(Rejection::new("bad_label", format!("at most {STATUS_MAX_LABELS} labels")));
            }
            labels
        }
        Some(_) => return Err(Rejection::new("bad_label", "\"labels\" must be a list")),
    };
    let model = value.get("model").and_then(serde_json::Value::as_str).map(|m| m.chars().take(128).collect());
    Ok(WorkerStatus { online, max_fps, labels, model })
}

/// A worker came or went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WorkerChange {
    /// It is online now.
    Online(String),
    /// It went offline (or its status was cleared).
    Offline(String),
}

/// The online workers, at most `max` of them.
#[derive(Clone, Debug)]
pub struct WorkerRegistry {
    online: BTreeMap<String, WorkerStatus>,
    max: usize,
}

impl WorkerRegistry {
    /// A registry of at most `max` online workers.
    pub fn new(max: usize) -> Self {
        Self { online: BTreeMap::new(), max }
    }

    /// Applies `worker`'s new status; returns the change it makes, if any.
    pub fn apply(&mut self, worker: &str, status: WorkerStatus) -> Result<Option<WorkerChange>, Rejection> {
        if !is_worker_id(worker) {
            return Err(Rejection::new("bad_worker", "the worker id in the topic must be [A-Za-z0-9_-]{1,64}"));
        }
        if !status.online {
            return Ok(self.online.remove(worker).map(|_| WorkerChange::Offline(worker.to_string())));
        }
        if !self.online.contains_key(worker) && self.online.len() >= self.max {
            return Err(Rejection::new(
                "too_many_workers",
                format!("{} workers are online, the board's max_workers", self.max),
            )
            .by(Some(worker)));
        }
        let was_online = self.online.insert(worker.to_string(), status).is_some();
        Ok((!was_online).then(|| WorkerChange::Online(worker.to_string())))
    }

    /// How many are online and what they take.
    pub fn summary(&self) -> WorkerSummary {
        // No worker online: no cap, so `P/tasks` still shows what a worker would be offered.
        let cap_fps = if self.online.is_empty() { None } else { self.online.values().map(|s| s.max_fps).sum() };
        WorkerSummary { online: self.online.len(), cap_fps }
    }

    /// Ids of the online workers.
    pub fn online_ids(&self) -> impl Iterator<Item = &str> {
        self.online.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn online(max_fps: Option<f64>) -> WorkerStatus {
        WorkerStatus { online: true, max_fps, labels: Vec::new(), model: None }
    }

    #[test]
    fn parses_status_messages() {
        let status =
            parse_status(br#"{"v":1,"state":"online","max_fps":5,"labels":["person"],"model":"m"}"#).expect("ok");
        assert_eq!(
            status,
            WorkerStatus { online: true, max_fps: Some(5.0), labels: vec!["person".into()], model: Some("m".into()) }
        );
        assert!(!parse_status(br#"{"v":1,"state":"offline"}"#).expect("ok").online);
        assert!(!parse_status(b"").expect("cleared").online);
        assert_eq!(parse_status(br#"{"v":2,"state":"online"}"#).unwrap_err().reason, "bad_version");
        assert_eq!(parse_status(br#"{"v":1,"state":"busy"}"#).unwrap_err().reason, "bad_state");
        assert_eq!(parse_status(br#"{"v":1,"state":"online","max_fps":-1}"#).unwrap_err().reason, "bad_max_fps");
        assert_eq!(parse_status(b"{nope").unwrap_err().reason, "bad_json");
    }

    #[test]
    fn tracks_transitions_and_the_fps_cap() {
        let mut r = WorkerRegistry::new(2);
        assert_eq!(r.apply("a", online(Some(2.0))), Ok(Some(WorkerChange::Online("a".into()))));
        assert_eq!(r.apply("a", online(Some(3.0))), Ok(None), "a repeated online is no change");
        assert_eq!(
            r.apply("b", online(Some(1.5))),
            Ok(None).map(|_: Option<()>| Some(WorkerChange::Online("b".into())))
        );
        assert_eq!(r.summary(), WorkerSummary { online: 2, cap_fps: Some(4.5) });
        assert_eq!(r.apply("c", online(None)).unwrap_err().reason, "too_many_workers");
        let offline = WorkerStatus { online: false, max_fps: None, labels: Vec::new(), model: None };
        assert_eq!(r.apply("a", offline.clone()), Ok(Some(WorkerChange::Offline("a".into()))));
        assert_eq!(r.apply("a", offline), Ok(None));
        assert_eq!(r.apply("c", online(None)), Ok(Some(WorkerChange::Online("c".into()))));
        assert_eq!(r.summary(), WorkerSummary { online: 2, cap_fps: None });
        assert_eq!(r.apply("bad/id", online(None)).unwrap_err().reason, "bad_worker");
    }
}
