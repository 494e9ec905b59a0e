//! Perception workers: their status, and the detections they send back.

pub mod detections;
pub mod errors;
pub mod intake;
pub mod status;

/// Why an incoming message was refused; published on `P/errors` and counted by `reason`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// Stable reason code (`bad_json`, `unknown_seq`, …).
    pub reason: &'static str,
    /// What exactly is wrong.
    pub message: String,
    /// The worker that sent it, when it could be read.
    pub worker: Option<String>,
}

impl Rejection {
    /// A rejection for `reason`.
    pub fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Self { reason, message: message.into(), worker: None }
    }

    /// The same, naming the worker.
    pub fn by(mut self, worker: Option<&str>) -> Self {
        self.worker = worker.map(str::to_string);
        self
    }
}

/// Parses JSON, telling non-finite numbers (which JSON cannot carry) from other syntax errors.
pub fn parse_json(payload: &[u8]) -> Result<serde_json::Value, Rejection> {
    serde_json::from_slice(payload).map_err(|e| {
        let text = String::from_utf8_lossy(payload);
        if ["NaN", "Infinity"].iter().any(|t| text.contains(t)) {
            Rejection::new("not_finite", "numbers must be finite: NaN and Infinity are not JSON")
        } else {
            Rejection::new("bad_json", format!("not JSON: {e}"))
        }
    })
}
