//! Replies on `P/replies/<id>` and the error codes callers branch on. Pure.

use crate::protocol::ErrorCode;
use serde_json::{Value, json};

/// An error reply's code and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandError {
    /// The code.
    pub code: ErrorCode,
    /// For people: what is wrong.
    pub message: String,
}

impl CommandError {
    /// An error with `code`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }

    /// A `failed` error from whatever went wrong at the shell, with its context chain.
    pub fn failed(error: &anyhow::Error) -> Self {
        Self::new(ErrorCode::Failed, format!("{error:#}"))
    }
}

/// What a command produced.
pub type Outcome = Result<Value, CommandError>;

/// The reply payload for request `id`.
pub fn payload(id: &str, outcome: &Outcome) -> Value {
    match outcome {
        Ok(result) => json!({"v": 1, "id": id, "ok": true, "result": result}),
        Err(e) => json!({"v": 1, "id": id, "ok": false, "error": {"code": e.code.as_str(), "message": e.message}}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_carry_the_result_or_the_error() {
        assert_eq!(payload("a", &Ok(json!({"n": 1}))), json!({"v": 1, "id": "a", "ok": true, "result": {"n": 1}}));
        let refused = payload("b", &Err(CommandError::new(ErrorCode::Stale, "ts is 45 s off")));
        assert_eq!(refused["error"], json!({"code": "stale", "message": "ts is 45 s off"}));
        assert_eq!(refused["ok"], false);
    }
}
